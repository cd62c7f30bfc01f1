"""FlightLLM compression: N:16 weight sparsity, per-layer weight bits, block-sparse attention.

Configured from a TOML file in ``configs/sparsity/`` (see ``flightllm_qk70.toml``, the
artifact's setup). The pass annotates nodes with what the code generator and the timing model
need and rescales the IR's byte and FLOP counts so that the roofline stays a lower bound:

linear nodes
    ``nm_rows``: ``((N, block_rows), ...)`` how many 16-row block-rows of the weight run N:16;
    ``keep``: kept fraction; ``weight_bits``; ``meta_bytes`` (4-bit index per kept weight of a
    sparse block) and ``fsb_bytes`` (one descriptor byte per 16x16 block of a sparse layer);
    ``bias_bytes`` (INT32 per output, models with biases such as OPT).
    ``weight_bytes`` = kept weights at ``weight_bits`` + meta + FSB + bias; ``flops`` scaled by
    keep.
prefill attention matmuls (role qk / pv)
    ``attn_blocks``: kept 64x64 blocks per head; ``attn_elems``: kept score elements per head
    (causal triangle and mask applied); ``attn_rows``: per head, the kept key blocks of each
    64-token query block-row as a bitmask; ``flops`` scaled by kept elements / T².

A keep ratio that is not one of the chain's N/16 is realised as a mix of the two neighbouring
N values over 16-row block-rows (each block-row keeps one N, so a dot product never changes
the chain's cut points); the FSB byte of every block records its N.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mapping.compression import quantize
from models.errors import UserError, read_toml
from models.graph import Graph, Node, OpKind, Phase, dtype_bytes

__all__ = [
    "ATTN_BLOCK",
    "BIAS_BYTES",
    "BLOCK_M",
    "CONFIG_DIR",
    "FSB_BYTES_PER_BLOCK",
    "META_BITS_PER_KEPT",
    "SUPPORTED_N",
    "WEIGHT_BITS",
    "CompressionConfig",
    "LinearRule",
    "apply_compression",
    "block_row_mix",
    "config_from_dict",
    "default_config",
    "load_config",
    "override_config",
    "attention_rows",
    "load_masks",
    "prefill_masks",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "sparsity"
BLOCK_M = 16                 # FlightLLM §4: N:M sparsity with M = 16
SUPPORTED_N = (2, 4, 8, 16)  # FlightLLM §4: the CSD-Chain runs N:16 with N in {2,4,8,16}
META_BITS_PER_KEPT = 4       # FlightLLM: 4-bit sparse index per kept weight (1 of 16)
FSB_BYTES_PER_BLOCK = 1      # FlightLLM: one FSB descriptor byte per 16x16 weight block
BIAS_BYTES = 4               # artifact IR: linear bias dtype int32
WEIGHT_BITS = (2, 3, 4, 8)   # FlightLLM mixed precision: 2/3/4/8-bit weights
ATTN_BLOCK = 64              # FlightLLM / artifact MASK_LAYOUT_BLOCK_SIZE: 64x64 blocks
_RULE_KEYS = {"match", "layers", "keep", "pattern", "bits", "bias"}
_ATTN_KEYS = {"prefill", "masks", "unmatched"}
_TOP_KEYS = {"name", "description", "weight_bits", "act_bits", "kv_bits", "attention", "linear",
             "prefill_logits"}


@dataclass(frozen=True)
class LinearRule:
    """Linears whose module path contains one of ``match``, in ``layers`` (None: all)."""

    match: tuple[str, ...]
    layers: tuple[int, ...] | None = None
    keep: float | None = None     # kept fraction, realised as an N:16 block-row mix
    pattern: int | None = None    # one N for every block-row
    bits: int | None = None
    # True: an INT32 bias per output even where the model has none (the artifact IR gives
    # q/k/v/o_proj one); False: no bias; None: the model's own
    bias: bool | None = None

    def applies(self, node: Node) -> bool:
        if self.layers is not None and node.layer not in self.layers:
            return False
        return any(m in node.module for m in self.match)


@dataclass(frozen=True)
class CompressionConfig:
    name: str
    description: str = ""
    weight_bits: int = 4
    act_bits: int = 8
    kv_bits: int = 8
    prefill_attention: str = "causal"       # "causal" or "masks"
    masks_path: Path | None = None
    # a model the masks do not cover (other heads, more layers): "error" or "causal" (dense
    # causal prefill attention, with a note in the graph's meta)
    unmatched: str = "error"
    rules: tuple[LinearRule, ...] = ()
    source: str = "<config>"
    prefill_logits: str = "last"            # "last" (as traced) or "all" prompt tokens


def _err(where: str, msg: str) -> UserError:
    return UserError(f"{where}: {msg}")


def _bits(where: str, key: str, v: Any, allowed: tuple[int, ...]) -> int:
    if isinstance(v, bool) or v not in allowed:
        raise _err(where, f"{key} = {v!r} is not supported; allowed: "
                   f"{', '.join(map(str, allowed))}")
    return int(v)


def _pattern(where: str, v: Any) -> int:
    text = str(v).strip().lower()
    if text == "dense":
        return BLOCK_M
    head, sep, tail = text.partition(":")
    if sep and tail == str(BLOCK_M) and head.isdigit() and int(head) in SUPPORTED_N:
        return int(head)
    raise _err(where, f"pattern = {v!r} is not supported by the CSD-Chain; allowed: "
               + ", ".join(f"'{n}:16'" for n in SUPPORTED_N) + " or 'dense'")


def _rule(where: str, d: Mapping[str, Any]) -> LinearRule:
    unknown = set(d) - _RULE_KEYS
    if unknown:
        raise _err(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    match = d.get("match")
    match = (match,) if isinstance(match, str) else match
    if not match or not all(isinstance(m, str) for m in match):
        raise _err(where, "match must be a string or a list of module-path substrings")
    layers = d.get("layers", "all")
    if layers != "all" and not (isinstance(layers, list)
                                and all(isinstance(x, int) for x in layers)):
        raise _err(where, f"layers = {layers!r}: expected \"all\" or a list of layer indices")
    if "keep" in d and "pattern" in d:
        raise _err(where, "give either keep or pattern, not both")
    keep = d.get("keep")
    if keep is not None and not (isinstance(keep, int | float)
                                 and min(SUPPORTED_N) / BLOCK_M <= keep <= 1):
        raise _err(where, f"keep = {keep!r}: must be in [{min(SUPPORTED_N) / BLOCK_M}, 1] "
                   f"(the sparsest CSD-Chain pattern is {min(SUPPORTED_N)}:16)")
    bias = d.get("bias")
    if bias is not None and not isinstance(bias, bool):
        raise _err(where, f"bias = {bias!r}: expected true or false")
    return LinearRule(
        match=tuple(match), layers=None if layers == "all" else tuple(layers), bias=bias,
        keep=None if keep is None else float(keep),
        pattern=_pattern(where, d["pattern"]) if "pattern" in d else None,
        bits=_bits(where, "bits", d["bits"], WEIGHT_BITS) if "bits" in d else None)


def config_from_dict(d: Mapping[str, Any], where: str = "<config>",
                     base_dir: Path = CONFIG_DIR) -> CompressionConfig:
    """A validated :class:`CompressionConfig` from a parsed TOML table."""
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise _err(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    attn = d.get("attention", {})
    if not isinstance(attn, Mapping) or set(attn) - _ATTN_KEYS:
        raise _err(where, f"[attention] takes the keys {sorted(_ATTN_KEYS)}")
    unmatched = attn.get("unmatched", "error")
    if unmatched not in ("error", "causal"):
        raise _err(where, f"attention.unmatched = {unmatched!r}; allowed: 'error', 'causal'")
    mode = attn.get("prefill", "causal")
    if mode not in ("causal", "masks"):
        raise _err(where, f"attention.prefill = {mode!r}; allowed: 'causal', 'masks'")
    masks = attn.get("masks")
    if mode == "masks" and not masks:
        raise _err(where, "attention.prefill = 'masks' needs attention.masks = \"file.npz\"")
    rules = tuple(_rule(f"{where} [[linear]] #{i}", r) for i, r in enumerate(d.get("linear", [])))
    logits = d.get("prefill_logits", "last")
    if logits not in ("last", "all"):
        raise _err(where, f"prefill_logits = {logits!r}; allowed: 'last', 'all'")
    return CompressionConfig(
        name=str(d.get("name", Path(where).stem)), description=str(d.get("description", "")),
        weight_bits=_bits(where, "weight_bits", d.get("weight_bits", 4), WEIGHT_BITS),
        act_bits=_bits(where, "act_bits", d.get("act_bits", 8), (8,)),
        kv_bits=_bits(where, "kv_bits", d.get("kv_bits", 8), (8,)),
        prefill_attention=mode, masks_path=(base_dir / masks) if masks else None,
        unmatched=unmatched, rules=rules, source=where, prefill_logits=logits)


def load_config(path: str | Path) -> CompressionConfig:
    """Read a sparsity TOML file; UserError naming the file on any problem."""
    p = Path(path)
    if not p.exists() and (CONFIG_DIR / p.name).exists() and p.parent == Path("."):
        p = CONFIG_DIR / p.name
    data = read_toml(p, "--sparsity file", expected="compression settings: weight_bits, "
                     "[attention], [[linear]] rules (configs/sparsity/flightllm_qk70.toml)")
    return config_from_dict(data, str(p), p.resolve().parent)


def default_config() -> CompressionConfig:
    """The artifact's setup (``configs/sparsity/flightllm_qk70.toml``)."""
    return load_config(CONFIG_DIR / "flightllm_qk70.toml")


def override_config(cfg: CompressionConfig, *, keep: float | None = None,
                    weight_bits: int | None = None, kv_bits: int | None = None,
                    names: Mapping[str, str] | None = None) -> CompressionConfig:
    """``cfg`` with a uniform kept fraction, weight bits or KV bits; UserError naming the
    input (``names``: the flag or key a user wrote for each of them) when the hardware cannot.

    ``keep`` replaces the kept fraction (or N:16 pattern) of every [[linear]] rule that sets
    one (rules that only set bits or a bias stay as they are); ``weight_bits`` the config's
    weight bits; ``kv_bits`` must be the config's (FlightLLM stores the KV cache in one width).
    """
    name = {"keep": "keep", "weight_bits": "weight_bits", "kv_bits": "kv_bits", **(names or {})}
    if keep is not None:
        if not any(r.keep is not None or r.pattern is not None for r in cfg.rules):
            raise UserError(f"{name['keep']} = {keep:g}: {cfg.source} has no [[linear]] rules "
                            "with a keep or pattern whose kept fraction it could set")
        cfg = replace(cfg, rules=tuple(
            replace(r, keep=keep, pattern=None)
            if r.keep is not None or r.pattern is not None else r for r in cfg.rules))
    if weight_bits is not None:
        if weight_bits not in WEIGHT_BITS:
            raise UserError(f"{name['weight_bits']} = {weight_bits} on FlightLLM (its "
                            f"dequantizer takes {', '.join(map(str, WEIGHT_BITS))}-bit weights)")
        cfg = replace(cfg, weight_bits=weight_bits,
                      description=f"{cfg.description}; weights {weight_bits}-bit")
    if kv_bits is not None and kv_bits != cfg.kv_bits:
        raise UserError(f"{name['kv_bits']} = {kv_bits}: {cfg.source} stores the KV cache in "
                        f"{cfg.kv_bits} bits (FlightLLM supports only that)")
    return cfg


@lru_cache(maxsize=4)
def load_masks(path: Path) -> np.ndarray:
    """Block masks ``(layers, heads, q_blocks, k_blocks)`` of bools from a bit-packed npz
    (cached: read-only, the storage table asks for them per bucket and layer)."""
    try:
        d = np.load(path)
    except FileNotFoundError:
        raise UserError(f"attention mask file {str(path)!r} does not exist") from None
    shape = tuple(int(s) for s in d["shape"])
    masks = np.unpackbits(d["packed"])[: math.prod(shape)].reshape(shape).astype(bool)
    masks.flags.writeable = False
    return masks


def block_row_mix(keep: float, block_rows: int) -> tuple[tuple[int, int], ...]:
    """``((N, rows), ...)`` over ``block_rows`` 16-row block-rows whose mean N/16 ≈ ``keep``."""
    target = keep * BLOCK_M
    lo = max(n for n in SUPPORTED_N if n <= target + 1e-9)
    hi = min(n for n in SUPPORTED_N if n >= target - 1e-9)
    if lo == hi:
        return ((lo, block_rows),)
    n_hi = round(block_rows * (target - lo) / (hi - lo))
    mix = ((hi, n_hi), (lo, block_rows - n_hi))
    return tuple((n, r) for n, r in mix if r)


def _linear_setting(cfg: CompressionConfig, node: Node
                    ) -> tuple[float | None, int | None, int, bool]:
    """(keep, pattern, bits, bias) of ``node``: the matching rules in order, later ones win."""
    keep, pattern, bits = None, None, cfg.weight_bits
    bias = any(w.endswith(".bias") for w in node.weights)
    for r in cfg.rules:
        if r.applies(node):
            if r.keep is not None or r.pattern is not None:
                keep, pattern = r.keep, r.pattern
            bits = r.bits if r.bits is not None else bits
            bias = r.bias if r.bias is not None else bias
    return keep, pattern, bits, bias


def _compress_linear(cfg: CompressionConfig, node: Node) -> Node:
    keep, pattern, bits, has_bias = _linear_setting(cfg, node)
    k_in, n_out = node.in_shapes[0][-1], node.out_shape[-1]
    sparse = (keep is not None and keep < 1) or (pattern is not None and pattern < BLOCK_M)
    if sparse and (n_out % BLOCK_M or k_in % BLOCK_M):
        raise UserError(f"layer {node.module} ({node.name}): N:16 sparsity needs in/out "
                        f"features that are multiples of {BLOCK_M}; got {k_in} x {n_out}")
    rows = -(-n_out // BLOCK_M)
    if not sparse:
        mix: tuple[tuple[int, int], ...] = ((BLOCK_M, rows),)
    elif pattern is not None:
        mix = ((pattern, rows),)
    else:
        mix = block_row_mix(keep, rows)
    kept_frac = sum(n * r for n, r in mix) / (BLOCK_M * rows)
    numel = k_in * n_out
    kept = round(numel * kept_frac)
    sparse_kept = sum(n * r * k_in for n, r in mix if n < BLOCK_M)
    meta = -(-sparse_kept * META_BITS_PER_KEPT // 8) if sparse else 0
    fsb = rows * (k_in // BLOCK_M) * FSB_BYTES_PER_BLOCK if sparse else 0
    wbytes = -(-kept * bits // 8)
    # INT32 bias (artifact IR: q/k/v/o_proj bias dtype int32): the model's (OPT) or a rule's
    bias = n_out * BIAS_BYTES if has_bias else 0
    return replace(node, weight_bytes=wbytes + meta + fsb + bias,
                   flops=round(node.flops * kept_frac)).with_attrs(
        nm_rows=mix, keep=kept_frac, weight_bits=bits, meta_bytes=meta, fsb_bytes=fsb,
        bias_bytes=bias, act_bits=cfg.act_bits)


def _block_sizes(t: int) -> np.ndarray:
    nb = -(-t // ATTN_BLOCK)
    return np.minimum(ATTN_BLOCK, t - ATTN_BLOCK * np.arange(nb))


def _attention_blocks(node: Node, t: int, masks: np.ndarray | None
                      ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Kept blocks, kept score elements and the kept key blocks of each query block-row
    (bitmask, bit k = key block k) per head, for a prefill of ``t`` tokens."""
    heads = node.in_shapes[0][1] if len(node.in_shapes[0]) == 4 else 1
    size = _block_sizes(t)
    nb = len(size)
    causal = np.tril(np.ones((nb, nb), dtype=bool))
    if masks is None:
        m = np.broadcast_to(causal, (heads, nb, nb))
    else:
        layers, mh, mq, _ = masks.shape
        if node.layer >= layers or mh != heads:  # prefill_masks checked the whole model
            raise UserError(f"layer {node.layer} ({node.name}) has {heads} heads; the mask "
                            f"file has {layers} layers x {mh} heads")
        if nb > mq:
            raise UserError(f"layer {node.layer} ({node.name}): prefill of {t} tokens needs "
                            f"{nb} blocks of {ATTN_BLOCK}; the masks cover {mq * ATTN_BLOCK}")
        m = masks[node.layer, :, :nb, :nb] & causal  # (heads, q_blocks, k_blocks)
    elems = np.einsum("hqk,q,k->h", m.astype(np.int64), size, size)
    bits = (m.astype(object) * (1 << np.arange(nb, dtype=object))).sum(axis=2)
    rows = tuple(tuple(int(x) for x in h) for h in bits)
    return (tuple(int(x) for x in m.sum(axis=(1, 2))), tuple(int(x) for x in elems), rows)


def attention_rows(node: Node, t: int, masks: np.ndarray | None
                   ) -> tuple[tuple[int, ...], ...]:
    """``attn_rows`` of prefill attention ``node`` (any length) at ``t`` tokens under
    ``masks`` (``prefill_masks``): per head, the kept key blocks of each query block-row (for
    the storage table)."""
    return _attention_blocks(node, t, masks)[2]


def _attention_shape(g: Graph) -> tuple[int, int]:
    """Decoder layers and the most attention heads of any layer of ``g``."""
    qk = [n for n in g.nodes if n.kind is OpKind.MATMUL and n.attr.get("role") == "qk"]
    heads = max((n.in_shapes[0][1] if len(n.in_shapes[0]) == 4 else 1 for n in qk), default=0)
    return max((n.layer + 1 for n in qk), default=0), heads


def prefill_masks(g: Graph, cfg: CompressionConfig) -> tuple[np.ndarray | None, str]:
    """The config's block masks for ``g``'s prefill attention (None: dense causal), and a note
    when the masks do not cover the model and the config says ``unmatched = "causal"``."""
    if cfg.prefill_attention != "masks":
        return None, ""
    assert cfg.masks_path is not None  # config_from_dict requires it
    masks = load_masks(cfg.masks_path)
    (layers, heads), (ml, mh) = _attention_shape(g), masks.shape[:2]
    if layers <= ml and heads in (0, mh):
        return masks, ""
    what = (f"{cfg.name}: its masks ({cfg.masks_path.name}) cover {ml} layers x {mh} heads; "
            f"this model has {layers} x {heads}")
    if cfg.unmatched == "causal":
        return None, f"{what}: its prefill attention is dense causal"
    raise UserError(f"{what}. Pass --sparsity with masks for this model, or with "
                    "[attention] prefill = \"causal\" (e.g. configs/sparsity/dense_int8.toml), "
                    "or set [attention] unmatched = \"causal\"")


def _compress_attention(node: Node, t: int, masks: np.ndarray | None) -> Node:
    blocks, elems, rows = _attention_blocks(node, t, masks)
    heads = len(elems)
    frac = sum(elems) / (heads * t * t)
    return replace(node, flops=round(node.flops * frac)).with_attrs(
        attn_blocks=blocks, attn_elems=elems, attn_rows=rows, act_bits=8)


def _logits_all(node: Node, t: int) -> Node:
    """The output head on all ``t`` prompt tokens instead of the last one (as traced)."""
    (b, rows, k), out = node.in_shapes[0], node.out_shape   # t: tokens per sequence
    if rows != 1 or t == 1:
        return node
    return replace(node, in_shapes=((b, t, k),) + node.in_shapes[1:],
                   out_shape=out[:-2] + (t, out[-1]), flops=node.flops * t,
                   act_bytes=node.act_bytes * t)


def _is_head(g: Graph, node: Node) -> bool:
    """The graph's last linear, outside the decoder layers (the LM head)."""
    last = next((n for n in reversed(g.nodes) if n.kind is OpKind.LINEAR), None)
    return node is last and node.layer < 0


def _scale_act(node: Node, act_bits: int, dtype: str) -> Node:
    scale = act_bits / (8 * dtype_bytes(dtype))
    return replace(node, act_bytes=math.ceil(node.act_bytes * scale))


def apply_compression(g: Graph, cfg: CompressionConfig | None = None) -> Graph:
    """``g`` compressed as ``cfg`` says (default: the artifact's setup)."""
    cfg = cfg or default_config()
    masks, note = prefill_masks(g, cfg) if g.phase is Phase.PREFILL else (None, "")
    g = quantize(g, kv_bits=cfg.kv_bits)
    nodes = []
    for n in g.nodes:
        if g.phase is Phase.PREFILL and cfg.prefill_logits == "all" and _is_head(g, n):
            n = _logits_all(n, g.tokens)
        n = _scale_act(n, cfg.act_bits, g.dtype)
        if n.kind is OpKind.LINEAR and n.weights:
            n = _compress_linear(cfg, n)
        elif (n.kind is OpKind.MATMUL and g.phase is Phase.PREFILL
              and n.attr.get("role") in ("qk", "pv")):
            n = _compress_attention(n, g.tokens, masks)
        nodes.append(n)
    bits = {w: BIAS_BYTES * 8 if w.endswith(".bias") else n.attr["weight_bits"]
            for n in nodes if "weight_bits" in n.attr for w in n.weights}
    params = tuple(replace(p, bits=bits[p.name]) if p.name in bits else p for p in g.params)
    meta = {**dict(g.meta), "compression": cfg.name} | ({"attention_note": note} if note else {})
    return replace(g, nodes=tuple(nodes), params=params,
                   meta=tuple(sorted(meta.items())))

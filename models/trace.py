"""Trace zoo models at ATen level with ``torch.export`` on the ``meta`` device.

No weights exist: the model is built from its config on ``meta``, so a 7B model costs a few
hundred MB and a few seconds. Every phase runs through one wrapper that owns a
``DynamicCache``: prefill starts from an empty cache, decode/verify fill it from flat past K/V
tensors (``torch.export`` rejects a ``DynamicCache`` argument; see shared/ENVIRONMENT.md).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, ever

import torch  # noqa: E402  (HF_HUB_OFFLINE must be set before transformers is imported)
import transformers  # noqa: E402

from models.arch import check_decoder_only, unsupported  # noqa: E402
from models.errors import UserError  # noqa: E402
from models.graph import Graph, OpKind, Phase  # noqa: E402
from models.lower import LoweringError, lower  # noqa: E402
from models.moe import route  # noqa: E402
from models.replicate import replicate_layers  # noqa: E402
from models.request import DTYPES, TraceRequest, tree_depths  # noqa: E402
from models.zoo import ModelEntry, get_model  # noqa: E402

__all__ = [
    "TraceRequest", "build_model", "decoder_layers", "export", "forward_call",
    "replicable_layers", "trace",
]

log = logging.getLogger(__name__)
_DTYPES = {name: getattr(torch, name) for name in DTYPES}


def _config(entry: ModelEntry) -> transformers.PretrainedConfig:
    kwargs = dict(entry.config)
    if entry.config_class.startswith("auto:"):
        kwargs.pop("model_type", None)
        try:
            cfg = transformers.AutoConfig.for_model(entry.config_class[5:], **kwargs)
        except (ValueError, KeyError) as e:
            raise UserError(f"transformers {transformers.__version__} has no model type "
                            f"{entry.config_class[5:]!r}: {e}") from None
    else:
        cfg = getattr(transformers, entry.config_class)(**kwargs)
    check_decoder_only(entry.name, cfg)
    return cfg


def build_model(entry: ModelEntry, dtype: str = "float16", *,
                layers: int | None = None, attn: str = "eager") -> torch.nn.Module:
    """The causal-LM model of ``entry`` on ``meta``, eager attention (FLOPs visible as matmuls;
    ``attn="sdpa"`` as HF runs on GPUs, for counting host calls).

    ``layers`` builds a shallower copy (the first ``layers`` decoder layers). Mixture-of-experts
    models run transformers' ``batched_mm`` experts (static shapes on meta: ``models.lower``);
    the option is inert for dense models.
    """
    cfg = _config(entry)
    if layers is not None:
        text = cfg.get_text_config()
        text.num_hidden_layers = layers
        if getattr(text, "layer_types", None):
            text.layer_types = text.layer_types[:layers]
    with torch.device("meta"):
        try:
            model = _from_config(cfg, attn, _DTYPES[dtype])
        except ValueError as e:
            raise unsupported(entry.name, entry.model_type, "build",
                              f"transformers {transformers.__version__} cannot build it: {e}"
                              ) from None
    return model.eval()


def _from_config(cfg: transformers.PretrainedConfig, attn: str,
                 dtype: torch.dtype) -> torch.nn.Module:
    # experts as batched matmuls: fixed shapes on meta whatever the routing (models/lower.py)
    kw = {"dtype": dtype, "experts_implementation": "batched_mm"}
    try:
        return transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, **kw)
    except ValueError as e:
        # a model without SDPA support (Gemma-2) runs eager in HF, as we build it then
        if attn == "eager" or "attention implementation" not in str(e):
            raise
        return transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                             **kw)


class _CachedForward(torch.nn.Module):
    """forward(ids, *past_kv) -> logits, with the cache built inside (export-friendly).

    A token tree (verify) passes its 4D additive attention mask and depth-based positions as
    buffers: transformers uses a 4D mask as given, so each node sees the cache and its ancestors.
    """

    def __init__(self, model: torch.nn.Module, logits_to_keep: int,
                 mask: torch.Tensor | None = None, positions: torch.Tensor | None = None):
        super().__init__()
        self.m = model
        self.logits_to_keep = logits_to_keep
        self.register_buffer("tree_mask", mask)
        self.register_buffer("tree_positions", positions)

    def forward(self, ids: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        cache = transformers.DynamicCache(config=self.m.config)
        for i in range(len(past) // 2):
            cache.update(past[2 * i], past[2 * i + 1], i)
        extra = {}
        if self.tree_mask is not None:
            extra = {"attention_mask": self.tree_mask, "position_ids": self.tree_positions}
        out = self.m(input_ids=ids, past_key_values=cache, use_cache=True,
                     logits_to_keep=self.logits_to_keep, **extra)
        return out.logits


def _tree_inputs(req: TraceRequest, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive mask (batch, 1, k, context + k) and positions (batch, k) of a token tree."""
    assert req.tree is not None
    k, c = len(req.tree), req.context
    allowed = torch.zeros(k, c + k, dtype=torch.bool)
    allowed[:, :c] = True
    for i, parent in enumerate(req.tree):
        allowed[i, c + i] = True
        if parent >= 0:
            allowed[i, c:] |= allowed[parent, c:]
    mask = torch.zeros(k, c + k, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    pos = torch.tensor([c - 1 + d for d in tree_depths(req.tree)], dtype=torch.long)
    mask = mask.expand(req.batch, 1, k, c + k).to("meta")
    return mask, pos.expand(req.batch, k).to("meta")


def _past_shapes(model: torch.nn.Module, batch: int, context: int,
                 dtype: torch.dtype) -> list[torch.Tensor]:
    """Past K/V tensors (layer by layer) shaped as the model's own cache stores them.

    One meta forward of a single token fills a ``DynamicCache``; reading its tensors back
    covers GQA/MQA, per-layer head dims and configs that name their KV heads differently.
    """
    probe = transformers.DynamicCache(config=model.config)
    ids = torch.zeros(batch, 1, dtype=torch.long, device="meta")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        model(input_ids=ids, past_key_values=probe, use_cache=True, logits_to_keep=1)
    past = []
    for layer in probe.layers:
        for t in (layer.keys, layer.values):
            shape = list(t.shape)  # (batch, kv_heads, 1, head_dim)
            shape[-2] = context
            past.append(torch.zeros(shape, dtype=dtype, device="meta"))
    return past


def decoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    """The ModuleList holding the decoder layers, and its path in ``model``."""
    n = model.config.get_text_config().num_hidden_layers
    for path, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n and n > 0:
            return path, mod
    return None


def _signature(layer: torch.nn.Module) -> list[tuple[Any, ...]]:
    """What makes two decoder layers trace alike: classes, parameter shapes, attention type."""
    return [(name, type(m).__name__,
             tuple((p, tuple(t.shape), t.dtype) for p, t in m.named_parameters(recurse=False)),
             getattr(m, "layer_type", None), getattr(m, "sliding_window", None),
             getattr(m, "is_sliding", None), getattr(m, "attention_type", None))
            for name, m in layer.named_modules()]


def replicable_layers(entry: ModelEntry, dtype: str) -> tuple[str, int] | None:
    """(container path, layer count) when all decoder layers are alike, else None."""
    model = build_model(entry, dtype)
    found = decoder_layers(model)
    if found is None or len(found[1]) <= 2:
        return None
    path, layers = found
    types = getattr(model.config.get_text_config(), "layer_types", None)
    if types and len(set(types)) > 1:
        return None
    first = _signature(layers[0])
    if any(_signature(layer) != first for layer in layers[1:]):
        return None
    return path, len(layers)


def forward_call(entry: ModelEntry, req: TraceRequest, *, layers: int | None = None
                 ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """The module and meta inputs of one forward pass; ``module(*args)`` runs it."""
    model = build_model(entry, req.dtype, layers=layers)
    # Prefill/decode only need the last position's logits (as generate() does); verify needs all.
    keep = req.tokens if req.phase is Phase.VERIFY else 1
    ids = torch.zeros(req.batch, req.tokens, dtype=torch.long, device="meta")
    past: list[torch.Tensor] = []
    if req.context:
        past = _past_shapes(model, req.batch, req.context, _DTYPES[req.dtype])
    mask = positions = None
    if req.tree is not None:
        mask, positions = _tree_inputs(req, _DTYPES[req.dtype])
    return _CachedForward(model, keep, mask, positions), (ids, *past)


def export(entry: ModelEntry, req: TraceRequest, *,
           layers: int | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of one forward pass of ``entry`` as ``req`` asks, on ``meta``."""
    # Stack traces per node cost ~2 s on a 7B model and the IR does not use them.
    import torch.fx.config as fx_config

    saved = fx_config.do_not_emit_stack_traces
    fx_config.do_not_emit_stack_traces = True
    try:
        wrapper, args = forward_call(entry, req, layers=layers)
        with torch.no_grad(), warnings.catch_warnings():
            # transformers 5 renames past_key_values; older model classes only know that name
            warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
            return torch.export.export(wrapper, args, strict=False)
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError,
            AttributeError, KeyError, IndexError) as e:  # any config's model code may raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise unsupported(entry.name, entry.model_type, req.phase.value,
                          f"torch.export failed: {first}") from e
    finally:
        fx_config.do_not_emit_stack_traces = saved


def _mark_tree(g: Graph) -> Graph:
    """Attention ops of a tree verify pass carry the mask kind (dense cost, sparse mask)."""
    attn = (OpKind.MATMUL, OpKind.SOFTMAX, OpKind.ATTENTION)
    return g.with_nodes(n.with_attrs(mask="tree") if n.kind in attn else n for n in g.nodes)


def trace(model: str | ModelEntry, phase: str | Phase = Phase.DECODE, *,
          tokens: int | None = None, context: int = 0, batch: int = 1,
          dtype: str = "float16", tree: tuple[int, ...] | None = None,
          full: bool = False) -> Graph:
    """Trace ``model`` and lower it to the IR. ``model`` is a zoo name or a ModelEntry.

    When all decoder layers are alike, a two-layer copy is exported and its layer repeated
    (``models.replicate``); ``full=True`` exports every layer instead (same result, slower).
    """
    entry = get_model(model) if isinstance(model, str) else model
    req = TraceRequest.make(entry, phase, tokens=tokens, context=context, batch=batch,
                            dtype=dtype, tree=tree)
    t0 = time.perf_counter()
    stack = None if full else replicable_layers(entry, req.dtype)
    ep = export(entry, req, layers=2 if stack else None)
    from models.host_calls import eager_torch_calls

    calls, in_cache = eager_torch_calls(entry, req, stack[1] if stack else None)
    meta = {"source": entry.source, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "layers_exported": 2 if stack else "all",
            # host work of the same pass in eager HF PyTorch (SDPA), for sim.gpu.model
            "eager_torch_calls": calls, "eager_torch_calls_in_cache": in_cache}
    if req.tree is not None:
        meta["tree_parents"] = tuple(req.tree)
    try:
        graph = lower(ep, entry.name, req.phase, batch=req.batch, tokens=req.tokens,
                      context=req.context, dtype=req.dtype, meta=meta)
    except LoweringError as e:
        raise unsupported(entry.name, entry.model_type, req.phase.value, str(e)) from None
    if req.tree is not None:
        graph = _mark_tree(graph)
    if stack:
        graph = replicate_layers(graph, stack[1], stack[0])
    graph = route(graph)  # MoE: uniform routing until a pass says otherwise (models.moe)
    log.debug("traced %s %s in %.2f s", entry.name, req.phase.value, time.perf_counter() - t0)
    return graph

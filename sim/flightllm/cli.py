"""FlightLLM commands: ``compile`` (the program + its storage), ``ablate``, ``simulate`` options.

``llmcosim compile`` writes one binary file per core (``core<i>.bin``, uint32 words as
``mapping.flightllm.isa.encode`` documents), ``nodes.json`` (the op names LDs refer to),
``summary.json`` and ``summary.md``: program size, per-queue counts, and the instruction
storage for every length up to ``--max-len`` with and without length bucketing. ``llmcosim
disasm`` lists a ``core<i>.bin``. ``llmcosim ablate`` runs the four ablations of the paper.

Storage over lengths: a program's instruction count depends on the number of tiles only
(prefill: 128-token row tiles; decode: each head's scores take one MV per ``mv_tile_cols``
keys, the rest of the context only changes LD byte counts). Counts are affine in the number of
row tiles (prefill) and key tiles (decode; ``test_flightllm_cli`` checks both), so two
compiled programs per phase give all of them, except the prefill attention: its K/V chunks
grow along the causal triangle, and its instructions are counted per length from the code
generator's own grouping (``mapping.flightllm.prefill.attention_groups``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import (
    CompressionConfig,
    apply_compression,
    attention_rows,
    default_config,
    load_config,
    override_config,
    prefill_masks,
)
from mapping.flightllm.isa import decode, encode, listing, storage_bytes
from mapping.flightllm.prefill import attention_counts, attention_groups
from models.errors import UserError, empty
from models.graph import Graph, OpKind
from sim.flightllm.nm_ablation import nm_ablation, nm_markdown
from sim.flightllm.simulate import DECODE_BUCKET, PREFILL_BUCKET, PassResult, simulate_graph
from sim.flightllm.timing import arch_of
from sim.spec import FlightLLMSpec

__all__ = ["PAPER", "ablate", "add_parsers", "compile_program", "disassemble",
           "flightllm_simulate_options", "load_sparsity", "storage_over_lengths"]

# Paper claims the ablations are compared with (shared/papers/flightllm.md).
PAPER = {"compute_efficiency_x": 1.6, "bw_util_offchip": 0.356, "bw_util_onchip": 0.659,
         "storage_reduction_x": 500.0}


def load_sparsity(path: str | None) -> CompressionConfig:
    return default_config() if path is None else load_config(Path(path))


def flightllm_simulate_options(args: argparse.Namespace, spec, fidelity: str) -> dict:
    """Check ``simulate`` flags for a FlightLLM preset; keyword arguments for its simulator.

    At fidelity cycle ``--weight-bits``/``--kv-bits`` override the compression config's
    (``--sparsity``; FlightLLM's bit widths only), so the run stays cycle-level.
    """
    cycle = spec.kind == "flightllm" and fidelity in ("cycle", "best")  # best: cycle here
    sparsity, trace = getattr(args, "sparsity", None), getattr(args, "trace", None)
    bucket = getattr(args, "decode_bucket", None)
    if not cycle:
        for flag, value in (("--sparsity", sparsity), ("--decode-bucket", bucket)):
            if value is not None:
                raise UserError(f"{flag} applies to FlightLLM presets at --fidelity cycle")
        return {}
    cfg = override_config(load_sparsity(sparsity), weight_bits=args.weight_bits,
                          kv_bits=args.kv_bits,
                          names={"weight_bits": "--weight-bits", "kv_bits": "--kv-bits"})
    opts = {"compression": cfg, "trace": trace}
    return opts | ({"decode_bucket": bucket} if bucket is not None else {})


def _graph(entry, phase: str, tokens: int, context: int) -> Graph:
    from models.cache import get_graph

    if phase == "decode":
        return get_graph(entry, "decode", context=context)
    return get_graph(entry, "prefill", tokens=tokens)


def _counts(spec: FlightLLMSpec, g: Graph, cfg: CompressionConfig) -> dict[str, int]:
    return generate(apply_compression(g, cfg), arch_of(spec)).counts()


def _attention_bytes(spec: FlightLLMSpec, g: Graph, t: int, cfg: CompressionConfig) -> int:
    """Instruction bytes of the prefill attention of ``g``'s layers at ``t`` tokens (its
    query-row groups and key chunks, ``mapping/flightllm/prefill.py``)."""
    g_half, b_half = int(spec.global_buffer_bytes) // 2, int(spec.b_buffer_bytes) // 2
    total, masks = 0, prefill_masks(g, cfg)[0]
    for n in g.nodes:
        if n.kind is OpKind.MATMUL and n.attr.get("role") == "qk":
            d = n.in_shapes[0][3]
            for rows in attention_rows(n, t, masks):
                grp = attention_groups(list(rows), t, d, g_half, b_half)
                total += storage_bytes(attention_counts(grp))
    return total


def _check_lengths(spec: FlightLLMSpec, max_len: int, prefill_bucket: int,
                   decode_bucket: int) -> None:
    if max_len < 1:
        raise UserError(f"--max-len must be at least 1, got {max_len}")
    if prefill_bucket < 1 or prefill_bucket % spec.mm_rows:
        raise UserError(f"--prefill-bucket must be a positive multiple of the MM tile's "
                        f"{spec.mm_rows} rows, got {prefill_bucket}")
    if not 1 <= decode_bucket <= max_len:
        raise UserError(f"--decode-bucket must be between 1 and --max-len ({max_len}), got "
                        f"{decode_bucket}")


def storage_over_lengths(spec: FlightLLMSpec, entry, cfg: CompressionConfig,
                         max_len: int = 2048, prefill_bucket: int = PREFILL_BUCKET,
                         decode_bucket: int = DECODE_BUCKET) -> dict:
    """Instruction bytes of all programs for lengths 1..``max_len``, per length vs bucketed.

    A prefill program's size depends on its 128-token row tiles (affine in them, except the
    attention, whose key chunks grow along the causal triangle: counted exactly per length
    from the code generator's grouping); a decode program's on its 512-key tiles (affine).
    Per length, every length has its own program; bucketed, each bucket runs the program of
    its longest length. ``prefill_bucket`` must be whole row tiles.
    """
    _check_lengths(spec, max_len, prefill_bucket, decode_bucket)
    rt, kt = spec.mm_rows, spec.mv_tile_cols  # tokens per MM row tile, keys per score MV
    d1 = storage_bytes(_counts(spec, _graph(entry, "decode", 1, 1), cfg))     # 1 key tile
    d2 = storage_bytes(_counts(spec, _graph(entry, "decode", 1, kt + 1), cfg))  # 2 key tiles
    g1, g2 = _graph(entry, "prefill", rt, 0), _graph(entry, "prefill", 2 * rt, 0)
    p1 = storage_bytes(_counts(spec, g1, cfg)) - _attention_bytes(spec, g1, rt, cfg)
    p2 = storage_bytes(_counts(spec, g2, cfg)) - _attention_bytes(spec, g2, 2 * rt, cfg)

    @cache
    def pre(tiles: int) -> int:                                    # a prefill of tiles x 128
        return p1 + (p2 - p1) * (tiles - 1) + _attention_bytes(spec, g1, tiles * rt, cfg)

    def dec(keys: int) -> int:                                     # affine in key tiles
        return d1 + (d2 - d1) * ((keys - 1) // kt)

    nb_p, nb_d = -(-max_len // prefill_bucket), -(-max_len // decode_bucket)
    prefill_b = [pre(i * prefill_bucket // rt) for i in range(1, nb_p + 1)]
    per_len_p = sum(pre(-(-t // rt)) for t in range(1, max_len + 1))
    bucketed = sum(prefill_b) + sum(dec(j * decode_bucket) for j in range(1, nb_d + 1))
    per_len = per_len_p + sum(dec(t) for t in range(1, max_len + 1))
    return {"max_len": max_len, "prefill_bucket": prefill_bucket, "decode_bucket": decode_bucket,
            "prefill_programs": nb_p, "decode_programs": nb_d,
            "decode_program_bytes_first_last": [dec(1), dec(max_len)],
            "prefill_program_bytes_first_last": [prefill_b[0], prefill_b[-1]],
            "per_length_bytes": per_len, "bucketed_bytes": bucketed,
            "reduction_x": per_len / bucketed}


def compile_program(spec: FlightLLMSpec, entry, *, phase: str, context: int, tokens: int,
                    out: Path, cfg: CompressionConfig, max_len: int = 2048,
                    prefill_bucket: int = PREFILL_BUCKET,
                    decode_bucket: int = DECODE_BUCKET) -> dict:
    """Compile one pass, write ``core<i>.bin`` + ``summary.json``/``.md``; return the summary."""
    if phase not in ("decode", "prefill"):
        raise UserError(f"--phase must be decode or prefill, got {phase!r}")
    _check_lengths(spec, max_len, prefill_bucket, decode_bucket)  # before writing anything
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    g = apply_compression(_graph(entry, phase, tokens, context), cfg)
    prog = generate(g, arch_of(spec))
    compile_s = time.perf_counter() - t0
    files = []
    for c, arr in enumerate(prog.cores):
        words = encode(arr)
        path = out / f"core{c}.bin"
        words.tofile(path)
        files.append({"file": path.name, "instructions": len(arr), "bytes": int(words.nbytes)})
    (out / "nodes.json").write_text(json.dumps(prog.nodes))
    counts = prog.counts()
    summary = {"hw": spec.name, "model": entry.name, "phase": phase,
               "context": context if phase == "decode" else 0,
               "tokens": 1 if phase == "decode" else tokens, "compression": cfg.name,
               "instructions": prog.total, "counts": counts,
               "program_bytes": storage_bytes(counts), "files": files,
               "compile_s": round(compile_s, 3),
               "notes": [v for k, v in g.meta if k == "attention_note"],
               "storage": storage_over_lengths(spec, entry, cfg, max_len, prefill_bucket,
                                               decode_bucket)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(_summary_md(summary))
    return summary


def _mb(x: float) -> str:
    return f"{x / 1e6:,.2f} MB" if x < 1e9 else f"{x / 1e9:,.2f} GB"


def _summary_md(s: dict) -> str:
    st = s["storage"]
    lines = [f"# {s['model']} {s['phase']} on {s['hw']} ({s['compression']})", "",
             f"{s['instructions']:,} instructions, {_mb(s['program_bytes'])} encoded.", "",
             "| queue | instructions |", "|---|---:|"]
    lines += [f"| {q} | {n:,} |" for q, n in s["counts"].items()]
    lines += ["", f"## Instruction storage for lengths 1..{st['max_len']}", "",
              "| compilation | programs | storage |", "|---|---:|---:|",
              f"| one program per length | {2 * st['max_len']:,} | "
              f"{_mb(st['per_length_bytes'])} |",
              f"| bucketed (prefill x{st['prefill_bucket']}, decode x{st['decode_bucket']}) | "
              f"{st['prefill_programs'] + st['decode_programs']} | {_mb(st['bucketed_bytes'])} |",
              "", f"Reduction {st['reduction_x']:.0f}x (paper: ~500x).", ""]
    if s.get("notes"):
        lines += [f"Note: {n}." for n in s["notes"]] + [""]
    return "\n".join(lines)


# -- ablations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Run:
    seconds: float
    hbm_bytes: int
    busy: dict[str, float]


def _pass(spec, g: Graph, cfg: CompressionConfig, **kw) -> PassResult:
    return simulate_graph(spec, apply_compression(g, cfg), **kw)


def _dense(cfg: CompressionConfig) -> CompressionConfig:
    """``cfg`` without weight sparsity and with dense causal prefill attention (its rules'
    bits and biases kept)."""
    rules = tuple(dataclasses.replace(r, keep=None, pattern=None) for r in cfg.rules)
    return dataclasses.replace(cfg, name=f"{cfg.name}_dense", prefill_attention="causal",
                               masks_path=None, rules=rules)


def ablate(spec: FlightLLMSpec, entry, *, cfg: CompressionConfig | None = None,
           prefill: int = 128, context: int = 512, max_len: int = 2048,
           prefill_bucket: int = PREFILL_BUCKET, decode_bucket: int = DECODE_BUCKET) -> dict:
    """The paper's four ablations on ``spec``; each row: ours next to the paper's claim."""
    if prefill < 1 or context < 0:
        raise UserError(f"ablate needs --prefill >= 1 and --context >= 0, got {prefill} and "
                        f"{context}")
    cfg = cfg or default_config()
    dense = _dense(cfg)
    int8 = load_config(Path(__file__).resolve().parents[2] / "configs" / "sparsity"
                       / "dense_int8.toml")
    gd, gp = _graph(entry, "decode", 1, context), _graph(entry, "prefill", prefill, 0)
    bw = spec.hbm_bytes_per_s

    def util(r: PassResult) -> float:
        return r.hbm_bytes / r.seconds / bw

    base_d, base_p = _pass(spec, gd, cfg), _pass(spec, gp, cfg)
    # decode's weight stream: the weight channels of every core, each at the same-channel
    # efficiency, over the peak of all channels (the paper's measure: bytes/s over peak)
    ceiling = (spec.weight_channels * spec.cores / spec.hbm_channels
               * spec.hbm_eff_same_channel)
    dense_d, dense_p = _pass(spec, gd, dense), _pass(spec, gp, dense)
    off_d = _pass(spec, gd, cfg, on_chip_decode=False)
    int8_d = _pass(spec, gd, int8)
    int8_off = _pass(spec, gd, int8, on_chip_decode=False)
    # compute efficiency: dense-equivalent MACs per second relative to the dense run
    st = storage_over_lengths(spec, entry, cfg, max_len, prefill_bucket, decode_bucket)
    rows = [
        {"ablation": "dense -> N:M + block sparsity (prefill)", "ours_x":
         dense_p.seconds / base_p.seconds, "paper_x": PAPER["compute_efficiency_x"],
         "detail": f"prefill {prefill}: {dense_p.seconds * 1e3:.1f} -> "
                   f"{base_p.seconds * 1e3:.1f} ms; MM busy "
                   f"{dense_p.busy['MM']:.0%} -> {base_p.busy['MM']:.0%}"},
        {"ablation": "dense -> N:M (decode)", "ours_x": dense_d.seconds / base_d.seconds,
         "paper_x": None, "detail": f"context {context}: {dense_d.seconds * 1e3:.2f} -> "
                                    f"{base_d.seconds * 1e3:.2f} ms/token"},
        {"ablation": "off-chip -> always-on-chip decode (mixed precision)",
         "ours_x": off_d.seconds / base_d.seconds, "paper_x": None,
         "detail": f"HBM bandwidth utilisation {util(off_d):.1%} -> {util(base_d):.1%} "
                   f"(paper 35.6% -> 65.9%); ceiling {ceiling:.1%}: weights stream on "
                   f"{spec.weight_channels * spec.cores} of {spec.hbm_channels} pseudo-channels "
                   f"at {spec.hbm_eff_same_channel:.0%} efficiency",
         "bw_util": [util(off_d), util(base_d)], "bw_ceiling": ceiling},
        {"ablation": "INT8 off-chip -> mixed precision on-chip (paper's bandwidth claim)",
         "ours_x": int8_off.seconds / base_d.seconds, "paper_x": 0.659 / 0.356,
         "detail": f"HBM bandwidth utilisation {util(int8_off):.1%} -> {util(base_d):.1%}",
         "bw_util": [util(int8_off), util(base_d)]},
        {"ablation": "INT8 -> mixed precision (decode)", "ours_x": int8_d.seconds / base_d.seconds,
         "paper_x": None, "detail": f"{int8_d.seconds * 1e3:.2f} -> "
                                    f"{base_d.seconds * 1e3:.2f} ms/token; HBM "
                                    f"{int8_d.hbm_bytes / 1e9:.2f} -> "
                                    f"{base_d.hbm_bytes / 1e9:.2f} GB/token"},
        {"ablation": f"per-length -> bucketed compilation (lengths <= {max_len})",
         "ours_x": st["reduction_x"], "paper_x": PAPER["storage_reduction_x"],
         "detail": f"{_mb(st['per_length_bytes'])} -> {_mb(st['bucketed_bytes'])}"},
    ]
    nm = nm_ablation(spec, {"prefill": gp, "decode": gd}, dense)
    return {"hw": spec.name, "model": entry.name, "compression": cfg.name, "rows": rows,
            "storage": st, "nm": nm}


def ablate_md(res: dict) -> str:
    lines = [f"| ablation ({res['model']} on {res['hw']}) | ours | paper | detail |",
             "|---|---:|---:|---|"]
    for r in res["rows"]:
        paper = f"{r['paper_x']:.2f}x" if r["paper_x"] else "-"
        lines.append(f"| {r['ablation']} | {r['ours_x']:.2f}x | {paper} | {r['detail']} |")
    if res.get("nm"):
        lines += ["", f"N:M on every linear ({res['model']} on {res['hw']}; the rows above "
                  "sparsify what the config does):", "",
                  nm_markdown(res["nm"], PAPER["compute_efficiency_x"])]
    return "\n".join(lines)


# -- argparse wiring --------------------------------------------------------------------------
def _spec(name: str) -> FlightLLMSpec:
    from sim.spec import load_preset

    spec = load_preset(name)
    if not isinstance(spec, FlightLLMSpec):
        raise UserError(f"--hw {name!r} is a {spec.kind} preset; compile/ablate need a "
                        "FlightLLM preset (flightllm-u280, flightllm-vhk158)")
    return spec


def _entry(name: str):
    from models.zoo import get_model

    return get_model(name)


def cmd_compile(args: argparse.Namespace) -> int:
    s = compile_program(_spec(args.hw), _entry(args.model), phase=args.phase,
                        context=args.context, tokens=args.tokens, out=Path(args.out),
                        cfg=load_sparsity(args.sparsity), max_len=args.max_len,
                        prefill_bucket=args.prefill_bucket, decode_bucket=args.decode_bucket)
    if args.json:
        print(json.dumps(s))
    else:
        print(_summary_md(s))
        print(f"program written to {args.out}/ ({', '.join(f['file'] for f in s['files'])}, "
              "nodes.json, summary.json, summary.md)")
    return 0


def disassemble(path: Path, start: int = 0, count: int = 0) -> list[str]:
    """Listing of instructions ``start`` .. ``start + count`` (0: to the end) of a compiled
    ``core<i>.bin``, with op names from the ``nodes.json`` beside it."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (compile writes core<i>.bin under --out)")
    raw = path.read_bytes()
    if not raw:
        raise UserError(empty("program", path, "32-bit FlightLLM instructions (compile writes "
                              "core<i>.bin under --out)"))
    if len(raw) % 4:
        raise UserError(f"{path}: {len(raw)} bytes is not a whole number of 32-bit words")
    try:
        arr = decode(np.frombuffer(raw, np.uint32))
    except ValueError as e:
        raise UserError(f"{path}: not a FlightLLM program: {e}") from None
    if not 0 <= start <= len(arr) or count < 0:
        raise UserError(f"--start must be in 0..{len(arr)} and --count >= 0; got {start}, "
                        f"{count}")
    names = path.parent / "nodes.json"
    nodes = json.loads(names.read_text()) if names.is_file() else None
    return listing(arr[start:start + count if count else None], nodes, start)


def cmd_disasm(args: argparse.Namespace) -> int:
    print("\n".join(disassemble(Path(args.file), args.start, args.count)))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    res = ablate(_spec(args.hw), _entry(args.model), cfg=load_sparsity(args.sparsity),
                 prefill=args.prefill, context=args.context, prefill_bucket=args.prefill_bucket,
                 decode_bucket=args.decode_bucket)
    print(json.dumps(res) if args.json else ablate_md(res))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("compile", help="compile a FlightLLM instruction program")
    s.add_argument("--hw", required=True, help="FlightLLM preset (flightllm-u280/-vhk158)")
    s.add_argument("--model", required=True, help="zoo name, or a config.json or its folder")
    s.add_argument("--phase", default="decode", help="decode (default) or prefill")
    s.add_argument("--context", type=int, default=512, help="decode: cached tokens (512)")
    s.add_argument("--tokens", type=int, default=128, help="prefill: tokens (128)")
    s.add_argument("--sparsity", help="compression TOML (default configs/sparsity/"
                   "flightllm_qk70.toml)")
    s.add_argument("--max-len", type=int, default=2048, help="storage table up to (2048)")
    _bucket_args(s)
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_compile)
    s = sub.add_parser("disasm", help="list a compiled FlightLLM program (core<i>.bin)")
    s.add_argument("file", help="a core<i>.bin that compile wrote")
    s.add_argument("--start", type=int, default=0, help="first instruction (0)")
    s.add_argument("--count", type=int, default=0, help="instructions to list (0: all)")
    s.set_defaults(func=cmd_disasm)
    s = sub.add_parser("ablate", help="FlightLLM ablations vs the paper's claims")
    s.add_argument("--hw", required=True, help="FlightLLM preset")
    s.add_argument("--model", required=True, help="zoo name, or a config.json or its folder")
    s.add_argument("--sparsity", help="compression TOML (default: the artifact's setup)")
    s.add_argument("--prefill", type=int, default=128, help="prefill tokens (128)")
    s.add_argument("--context", type=int, default=512, help="decode context (512)")
    _bucket_args(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_ablate)


def _bucket_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--prefill-bucket", type=int, default=PREFILL_BUCKET,
                   help=f"prefill lengths share a program per N tokens, a multiple of 128 "
                   f"(default {PREFILL_BUCKET}, the artifact's)")
    s.add_argument("--decode-bucket", type=int, default=DECODE_BUCKET,
                   help=f"decode contexts share a program per N (default {DECODE_BUCKET}, "
                   "the artifact's)")


"""The ``llmcosim`` command line: wires models -> mapping -> sim -> reports; no modelling here.

Errors a user can cause print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llmcosim.fmt import eng, ms, whole
from llmcosim.resources import add_resources_parser
from llmcosim.serve import add_serve_parser
from models.argparser import StrictParser
from models.errors import UserError
from models.graph import OpKind
from models.request import parse_tree
from models.zoo import ZOO, ModelEntry, get_model

__all__ = ["build_parser", "main"]

# Pipes and CI logs get wide tables instead of rich's 80-column default.
_out = Console(width=None if sys.stdout.isatty() else 150)


def _entry(name: str) -> ModelEntry:
    return get_model(name)  # a zoo name, a config.json or a directory holding one



def _tree(text: str | None) -> tuple[int, ...] | None:
    """``--tree``: parents inline ("-1,0,0,1") or a TOML file with ``parents = [...]``."""
    return None if text is None else parse_tree(text)


# -- models ---------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    t = Table(title="Model zoo (configs in models/zoo.py; any config.json, or its folder, as "
              "the model)")
    for col in ("name", "class", "layers", "hidden", "max positions", "source"):
        t.add_column(col)
    for e in ZOO.values():
        t.add_row(e.name, e.config_class, str(e.layers), str(e.hidden), str(e.max_positions or "-"),
                  e.source)
    _out.print(t)
    return 0


# -- trace ----------------------------------------------------------------------------------
def cmd_trace(args: argparse.Namespace) -> int:
    from models.cache import get_graph

    entry = _entry(args.model)
    g = get_graph(entry, args.phase, tokens=args.tokens, context=args.context,
                  batch=args.batch, dtype=args.dtype, tree=_tree(args.tree),
                  use_cache=not args.no_cache)
    g = _routed(g, args)
    tot = g.totals()
    if args.out:
        out = Path(args.out)
        if out.parent and not out.parent.exists():
            raise UserError(f"--out: directory {str(out.parent)!r} does not exist")
        g.to_json(out)
    _out.print(f"{g.model} {g.phase.value}: batch {g.batch}, {g.tokens} token(s) over a cache of "
               f"{g.context}; {tot.nodes} ops, {eng(tot.flops, 'FLOP')}, "
               f"{eng(tot.params)} params ({eng(tot.param_bytes, 'B')}), "
               f"KV read {eng(tot.kv_read_bytes, 'B')}"
               + (f" -> {args.out}" if args.out else ""))
    if args.summary:
        t = Table(title=f"{g.model} {g.phase.value} by op kind")
        for col in ("kind", "ops", "FLOPs", "weight bytes", "KV bytes", "activation bytes"):
            t.add_column(col, justify="right" if col != "kind" else "left")
        rows: dict[str, list[float]] = {}
        for n in g.nodes:  # MoE router linears and top-k get rows of their own
            moe = n.attr.get("moe") if n.kind is not OpKind.EXPERTS else None
            r = rows.setdefault(n.kind.value + (f" ({moe})" if moe else ""), [0, 0, 0, 0, 0])
            r[0] += 1
            r[1] += n.flops
            r[2] += n.weight_bytes
            r[3] += n.kv_read_bytes + n.kv_write_bytes
            r[4] += n.act_bytes
        for kind, r in sorted(rows.items(), key=lambda kv: -kv[1][1]):
            t.add_row(kind, str(r[0]), eng(r[1]), eng(r[2], "B"), eng(r[3], "B"), eng(r[4], "B"))
        t.add_row("total", str(tot.nodes), eng(tot.flops), eng(tot.weight_bytes, "B"),
                  eng(tot.kv_read_bytes + tot.kv_write_bytes, "B"), eng(tot.act_bytes, "B"))
        _out.print(t)
    return 0


def _routed(g, args: argparse.Namespace):  # g: a Graph or a Workload
    """``g`` under ``--routing`` (MoE models; uniform is what tracing already applied)."""
    if getattr(args, "routing", None) is None:
        return g
    from models.moe import parse_routing, route

    routing = parse_routing(args.routing)
    return g.map(lambda x: route(x, routing)) if hasattr(g, "map") else route(g, routing)


def _spec_pass(args: argparse.Namespace, compress: Callable | None):
    """The per-graph pass of a speculative run: compression, then ``--routing``."""
    bits = (args.weight_bits or args.kv_bits) and compress is not None
    if not bits and args.routing is None:
        return None
    return lambda g: _routed(compress(g) if bits else g, args)


# -- hw -------------------------------------------------------------------------------------
def cmd_hw(args: argparse.Namespace) -> int:
    from sim.spec import list_presets, load_preset
    from sim.units import unit_of_field

    if args.name:
        spec = load_preset(args.name)
        t = Table(title=f"{spec.name}: {spec.description} ({spec.kind})")
        for col in ("field", "value", "source"):
            t.add_column(col)
        for f in spec.__dataclass_fields__:
            if f not in ("name", "description", "sources", "kind"):
                unit = unit_of_field(f)
                value = getattr(spec, f)
                if not isinstance(value, (int, float)):
                    shown = str(value)
                elif unit and unit[0] != "USD":
                    shown = eng(value, unit[0].replace("bytes", "B"))
                else:
                    shown = f"{value:,.6g}"
                t.add_row(f, shown, spec.source_of(f))
        _out.print(t)
        return 0
    t = Table(title="Hardware presets (configs/hw/*.toml)")
    for col in ("name", "kind", "description", "peak FP16/INT8", "memory BW", "capacity",
                "power", "price"):
        t.add_column(col)
    for name in list_presets():
        s = load_preset(name)
        t.add_row(name, s.kind, s.description, eng(s.peak_ops_per_s("float16"), "OP/s"),
                  eng(s.mem_bytes_per_s, "B/s"), eng(s.mem_capacity_bytes, "B"),
                  eng(s.power_w or None, "W"), f"${s.price_usd:,.0f}" if s.price_usd else "-")
    _out.print(t)
    return 0


# -- simulate -------------------------------------------------------------------------------
_SPEC_FLAGS = ("draft", "gamma", "alpha", "tree", "acceptance", "trace")


def cmd_simulate(args: argparse.Namespace) -> int:
    from models.cache import get_workload
    from sim.registry import best_fidelity, fidelities, run
    from sim.spec import load_preset

    spec = load_preset(args.hw)
    from sim.flightllm.cli import flightllm_simulate_options

    given = [f for f in _SPEC_FLAGS if getattr(args, f) is not None]
    # default: FlightLLM's cycle-level simulator (busy ratios, HBM, DSPs, program), chain
    # speculation at any batch and trees at batch 1 included (a batched tree speculates at
    # the roofline there)
    cycle_default = spec.kind == "flightllm" and (
        not set(given) - {"trace"} or args.batch == 1 or args.tree is None)
    fidelity = args.fidelity or ("cycle" if cycle_default else "roofline")
    fl = flightllm_simulate_options(args, spec, fidelity)  # FlightLLM cycle: --sparsity, --trace
    speculative = any(not (fl and f == "trace") for f in given)
    if not speculative and fidelity not in (*fidelities(spec.kind), "best"):
        raise UserError(f"unknown --fidelity {fidelity!r} for {spec.name}; available: "
                        f"{', '.join(fidelities(spec.kind))}, best")
    entry = _entry(args.model)
    from mapping.compression import check_bits, quantize

    check_bits("weight-bits", args.weight_bits)
    check_bits("kv-bits", args.kv_bits)

    def compress(g):
        return quantize(g, weight_bits=args.weight_bits, kv_bits=args.kv_bits)

    if speculative:
        from sim.hades.speculate import speculate

        result = speculate(spec, entry, draft=args.draft, gamma=args.gamma, alpha=args.alpha,
                           acceptance=args.acceptance, tree=_tree(args.tree),
                           prefill=args.prefill, decode=args.decode, batch=args.batch,
                           dtype=args.dtype, fidelity=args.fidelity, trace_out=args.trace,
                           use_cache=not args.no_cache, compression=fl.get("compression"),
                           decode_bucket=fl.get("decode_bucket"),
                           # FlightLLM cycle: the compression config carries the bits
                           graph_pass=_spec_pass(args, None if fl else compress))
    else:
        w = get_workload(entry, prefill=args.prefill, decode=args.decode, batch=args.batch,
                         dtype=args.dtype, use_cache=not args.no_cache)
        if (args.weight_bits or args.kv_bits) and "compression" not in fl:
            w = w.map(compress)  # FlightLLM cycle: the compression config carries the bits
        w = _routed(w, args)
        if args.gpu_stack is not None:
            if spec.kind != "gpu" or fidelity not in ("calibrated", "best"):
                raise UserError("--gpu-stack applies to --fidelity calibrated on a GPU preset")
            fl = {**fl, "stack": args.gpu_stack}
        from llmcosim.progress import TaskProgress

        # FlightLLM cycle: one tick per simulated program (prefill + each decode bucket)
        shown = best_fidelity(spec.kind) if fidelity == "best" else fidelity
        with TaskProgress(f"{spec.name} {shown}", "programs", verb="simulated",
                          enabled=not args.json) as bar:
            result = run(spec, w, fidelity, progress=bar, **fl)
    if args.json:
        print(result.to_json())
        return 0
    t = Table(title=f"{result.model} on {result.hw} ({result.fidelity})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("prefill", f"{result.prefill} tokens: {ms(result.prefill_ms)} ms")
    t.add_row("decode", f"{result.decode} tokens: {ms(result.decode_ms_per_token)} ms/token")
    t.add_row("decode throughput", f"{result.decode_tokens_per_s:,.1f} tokens/s")
    t.add_row("total", f"{ms(result.total_ms)} ms")
    t.add_row("energy", f"{result.energy_j:,.1f} J" if result.energy_j else "-")
    t.add_row("tokens/J", f"{result.tokens_per_j:.3f}" if result.tokens_per_j else "-")
    t.add_row("memory", f"{eng(result.memory_bytes, 'B')}"
              + ("" if result.fits_memory else " (does not fit)"))
    x = result.extra
    if x.get("decode_power_w"):   # FlightLLM's power model (sim/flightllm/power.py)
        dec_s = result.decode_ms_per_token * result.decode / 1e3
        parts = x.get("decode_energy_breakdown_j", {})
        t.add_row("decode power (model)", f"{x['decode_power_w']:.1f} W: " + ", ".join(
            f"{k} {v / dec_s:.1f}" for k, v in parts.items()))
    if "mean_accepted" in x:   # speculative decoding
        t.add_row("mean accepted / tokens per pass",
                  f"{x['mean_accepted']:.2f} / {x['tokens_per_pass']:.2f}")
        t.add_row("decode split (ms)", ", ".join(f"{k} {v:,.1f}" for k, v in
                                                 x["split_ms"].items()))
        if x.get("speedup"):
            t.add_row("speedup vs no speculation", f"{x['speedup']:.2f}x "
                      f"({x['baseline_tokens_per_s']:,.1f} tokens/s without)")
        if "utilisation" in x:
            t.add_row("unit busy", ", ".join(f"{k} {v:.0%}" for k, v in
                                             x["utilisation"].items()))
        if "verify_groups" in x:   # FlightLLM cycle: where the draft ran, how the verify split
            t.add_row("draft placement / verify passes",
                      f"{x['draft_engine']} engine, weights in {x['draft_weights']}"
                      f" ({x['predraft_hits']} pre-drafted rounds) / "
                      f"{'+'.join(map(str, x['verify_groups']))} tokens"
                      + (f" x batch {result.batch}" if result.batch > 1 else ""))
    for phase in ("prefill", "decode"):  # FlightLLM cycle (speculative runs: verify_busy)
        if f"{phase}_dsp_utilisation" in x:
            t.add_row(f"{phase} unit busy", ", ".join(f"{k} {v:.0%}" for k, v in
                                                      x[f"{phase}_busy"].items() if v))
            t.add_row(f"{phase} DSP utilisation",
                      f"{x[f'{phase}_dsp_utilisation']:.1%} of MAC slots (dense-equivalent "
                      f"{x[f'{phase}_dsp_dense_utilisation']:.1%})")
    if "verify_busy" in x:
        t.add_row("verify unit busy", ", ".join(f"{k} {v:.0%}" for k, v in
                                                x["verify_busy"].items() if v))
    if "decode_bw_utilisation" in x:
        t.add_row("decode HBM", f"{eng(x['decode_hbm_bytes_per_token'], 'B')}/token, "
                  f"{x['decode_bw_utilisation']:.1%} of peak bandwidth")
        t.add_row("decode program", f"{sum(x['decode_instructions'].values()):,} instructions, "
                  f"{eng(x['decode_instruction_bytes'], 'B')}")
    _out.print(t)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


# -- demo -----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from llmcosim.progress import TaskProgress
    from reports.demo import write_demo

    with TaskProgress(f"demo {args.model}", "simulation steps", verb="ran") as bar:
        path = write_demo(Path(args.out), model=args.model, prefill=args.prefill,
                          decode=args.decode, cycle=not args.no_cycle, echo=_out.print,
                          progress=bar)
    _out.print(f"report written to {path}")
    return 0


def _add_workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=whole, default=1, help="sequences per pass (default 1)")
    p.add_argument("--dtype", default="float16", help="float16 (default), bfloat16, float32")
    p.add_argument("--no-cache", action="store_true", help="trace again, ignore cached graphs")
    p.add_argument("--routing", default=None, help="mixture-of-experts routing: uniform "
                   "(default), zipf:S (skewed), or a .json/.jsonl of per-expert token counts")


def build_parser() -> argparse.ArgumentParser:
    # every subcommand's parser is a StrictParser too (argparse builds them as type(p))
    p = StrictParser(prog="llmcosim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("models", help="list the model zoo")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("trace", help="trace a model to the op-graph IR")
    s.add_argument("model", help="zoo name (see `llmcosim models`), or a config.json or its folder")
    s.add_argument("--phase", default="decode", help="prefill, decode (default) or verify")
    s.add_argument("--tokens", type=whole, default=None,
                   help="new tokens per pass (prefill default 128, verify 4, decode 1)")
    s.add_argument("--context", type=whole, default=None,
                   help="tokens already in the KV cache (decode/verify; default 512)")
    s.add_argument("--tree", help="verify a token tree: parents such as -1,0,0,1 or a .toml "
                   "file (configs/trees/); default: a causal chain")
    s.add_argument("--out", help="write the graph as JSON to this file")
    s.add_argument("--summary", action="store_true", help="table of ops, FLOPs and bytes")
    _add_workload_args(s)
    s.set_defaults(func=cmd_trace)

    s = sub.add_parser("hw", help="list hardware presets, or show one")
    s.add_argument("name", nargs="?", help="preset name or .toml path")
    s.set_defaults(func=cmd_hw)

    s = sub.add_parser("simulate", help="simulate prefill + decode of a model on a device")
    s.add_argument("--hw", required=True, help="hardware preset (see `llmcosim hw`) or .toml")
    s.add_argument("--model", required=True, help="zoo name, or a config.json or its folder")
    s.add_argument("--prefill", type=whole, default=128, help="prompt tokens (default 128)")
    s.add_argument("--decode", type=whole, default=512, help="generated tokens (default 512)")
    s.add_argument("--fidelity", default=None,
                   help="simulator: roofline (default; FlightLLM presets: cycle), cycle "
                   "(flightllm, hades), calibrated "
                   "(gpu: kernel model calibrated on measurements), best (the most detailed "
                   "one for the device)")
    s.add_argument("--gpu-stack", choices=("graph", "vllm", "hf-eager"), default=None,
                   help="--fidelity calibrated: CUDA-graph replay with HF's masked SDPA "
                   "(default), vllm (CUDA graphs, SDPA without masks where measured) or HF "
                   "PyTorch eager generate() (host-bound)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--weight-bits", type=whole, default=None,
                   help="store linear weights in 2/3/4/8/16 bits (default: the model dtype)")
    s.add_argument("--kv-bits", type=whole, default=None,
                   help="store the KV cache in 2/3/4/8/16 bits (default: the model dtype)")
    g = s.add_argument_group("speculative decoding (any flag turns it on)")
    g.add_argument("--draft", help="draft model (default llama-68m); same vocabulary as --model")
    g.add_argument("--gamma", type=whole, default=None,
                   help="draft tokens per round (default 4, or the trace's gamma)")
    g.add_argument("--alpha", default=None,
                   help="acceptance: i.i.d. probability (0.8) or per position (0.9,0.8,0.7)")
    g.add_argument("--tree", help="verify a token tree: parents such as -1,0,0,1 or a .toml "
                   "file (configs/trees/eagle2_60.toml)")
    g.add_argument("--acceptance", help="trace-driven acceptance: JSONL of accepted lengths "
                   "per round (format: mapping/acceptance.py)")
    g.add_argument("--trace", help="write a Perfetto/Chrome trace of the rounds (hades); on "
                   "FlightLLM at --fidelity cycle: of the prefill and first decode pass")
    s.add_argument("--sparsity", help="FlightLLM --fidelity cycle: compression TOML "
                   "(default configs/sparsity/flightllm_qk70.toml)")
    s.add_argument("--decode-bucket", type=int, default=None, help="FlightLLM --fidelity "
                   "cycle: decode contexts share a program per N (default 16, the artifact's)")
    _add_workload_args(s)
    s.set_defaults(func=cmd_simulate)

    from sim.flightllm.cli import add_parsers as add_flightllm_parsers

    add_flightllm_parsers(sub)  # compile, ablate

    s = sub.add_parser("demo", help="trace a model, simulate it on every preset, write a report")
    s.add_argument("--model", default="llama2-7b")
    s.add_argument("--prefill", type=whole, default=128)
    s.add_argument("--decode", type=whole, default=512)
    s.add_argument("--out", default="reports/out", help="output directory (default reports/out)")
    s.add_argument("--no-cycle", action="store_true",
                   help="roofline rows only (skips the cycle-level simulators, ~20 s)")
    s.set_defaults(func=cmd_demo)

    from llmcosim.compare import add_compare_parser

    add_compare_parser(sub)  # compare: devices side by side, a paper's headline ratios
    add_serve_parser(sub)  # serve: continuous-batching serving simulation (sim/serving)
    add_resources_parser(sub)  # resources: FPGA resources of a FlightLLM preset
    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Commands of packages that may not be installed (RTL needs the `hdl` extra)."""
    try:
        from kernels.cli import add_gpu_baseline_parser
    except ImportError:
        pass
    else:
        add_gpu_baseline_parser(sub)
    try:
        from sweeps.cli import add_sweep_parsers
    except ImportError:
        pass
    else:
        add_sweep_parsers(sub)
    try:
        from verification.cli import add_rtl_parser, run_rtl
    except ImportError:
        return
    s = add_rtl_parser(sub)
    if s is not None and s.get_default("func") is None:
        s.set_defaults(func=run_rtl)


def _default_context(args: argparse.Namespace) -> None:
    if getattr(args, "command", None) == "trace" and args.context is None:
        args.context = 0 if args.phase == "prefill" else 512


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _default_context(args)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

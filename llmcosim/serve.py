"""``llmcosim serve``: serving simulation (continuous batching) on several devices (wiring only).

The requests, scheduler and metrics live in ``sim/serving/``, the report in ``reports/serve.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llmcosim.fmt import whole
from models.errors import UserError

__all__ = ["add_serve_parser", "cmd_serve"]

_out = Console(width=None if sys.stdout.isatty() else 220)



def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="serving simulation: Poisson or traced requests, "
                       "continuous batching, TTFT/TPOT percentiles, goodput, KV occupancy")
    s.add_argument("--hw", default="hades,flightllm-u280,gpu-h100",
                   help="comma-separated presets (default hades,flightllm-u280,gpu-h100)")
    s.add_argument("--model", default="llama2-7b", help="zoo name or config.json path")
    s.add_argument("--requests", default="configs/serving/sharegpt_like.toml",
                   help="length distributions (.toml) or a JSONL trace of {arrival_s, "
                   "prompt_tokens, output_tokens} (default configs/serving/sharegpt_like.toml)")
    s.add_argument("--rate", help="Poisson arrival rate(s): 2/s, 120/min, 0.5 (per second); "
                   "comma-separated for several runs (needed with a .toml)")
    s.add_argument("--num-requests", type=whole, default=500, help="requests (default 500; "
                   "with a trace: its first N)")
    s.add_argument("--seed", type=whole, default=0, help="random seed (default 0)")
    s.add_argument("--slo", default="ttft=500ms,tpot=50ms",
                   help="SLOs for goodput (default ttft=500ms,tpot=50ms)")
    s.add_argument("--token-budget", type=whole, default=512,
                   help="tokens per iteration, decodes plus prompt chunks (default 512)")
    s.add_argument("--max-batch", type=whole, default=64,
                   help="requests running at once (default 64)")
    s.add_argument("--kv-budget", type=whole, default=None, help="KV-cache tokens (default: "
                   "memory capacity minus weights, over the per-token KV bytes)")
    s.add_argument("--fidelity", default=None, help="one fidelity for every device (default: "
                   "calibrated on GPUs, cycle on FlightLLM and HADES)")
    g = s.add_argument_group("speculative decoding (any flag turns it on; chains only)")
    g.add_argument("--draft", help="draft model (default llama-68m); same vocabulary as --model")
    g.add_argument("--gamma", type=whole, default=None, help="draft tokens per round (default 4)")
    g.add_argument("--alpha", default=None, help="acceptance: i.i.d. probability (default 0.8) "
                   "or per position (0.9,0.8,0.7)")
    g.add_argument("--adaptive-gamma", action="store_true", help="choose 0..gamma drafts per "
                   "iteration from the budget the decodes and prompts leave (most expected "
                   "tokens per second)")
    s.add_argument("--out", default=None, help="directory for serve.md, serve.json, serve_kv.png")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_serve)


def _requests(args: argparse.Namespace) -> list[tuple[str, list]]:
    """(arrivals label, requests) per run."""
    from sim.serving.requests import load_lengths, load_trace, parse_rate, poisson_requests

    if args.requests.endswith(".jsonl") or args.requests.endswith(".json"):
        if args.rate:
            raise UserError("--rate does not apply to a JSONL trace (its arrival_s are used)")
        return [(f"trace {args.requests}", load_trace(args.requests, args.num_requests))]
    if not args.rate:
        raise UserError("--rate is needed with a length distribution (e.g. --rate 2/s)")
    lengths = load_lengths(args.requests)
    rates = [(r, parse_rate(r)) for r in args.rate.split(",")]
    return [(f"Poisson {r.strip()} ({v:g} req/s)",
             poisson_requests(v, args.num_requests, *lengths, args.seed)) for r, v in rates]


def _speculation(args: argparse.Namespace, entry):
    """The --draft/--gamma/--alpha flags as a Speculation (None when none is given)."""
    if args.draft is None and args.gamma is None and args.alpha is None \
            and not args.adaptive_gamma:
        return None
    from sim.serving.device import Speculation

    return Speculation.from_flags(entry, draft=args.draft, gamma=args.gamma, alpha=args.alpha,
                                  seed=args.seed, adaptive=args.adaptive_gamma)


def cmd_serve(args: argparse.Namespace) -> int:
    from models.zoo import entry_from_config_file, get_model
    from reports.compare import parse_hw_list
    from reports.serve import COLUMNS, kv_series, speculation_line, table_row, write_serve
    from sim.serving.device import serve_device
    from sim.serving.metrics import parse_slo
    from sim.serving.requests import check_lengths
    from sim.serving.scheduler import SchedulerConfig
    from sim.spec import load_preset

    entry = entry_from_config_file(args.model) if args.model.endswith(".json") \
        else get_model(args.model)
    slo = parse_slo(args.slo)
    specs = [load_preset(n) for n in parse_hw_list(args.hw)]
    cfg = SchedulerConfig(args.token_budget, args.max_batch, args.kv_budget or 0)
    cfg.check()
    if args.kv_budget is not None and args.kv_budget < 1:
        raise UserError(f"--kv-budget must be >= 1 token, got {args.kv_budget}")
    runs = _requests(args)
    speculation = _speculation(args, entry)
    for _, reqs in runs:
        check_lengths(reqs, entry.name, entry.max_positions)
    devices, series = [], {}
    for label, reqs in runs:
        for spec in specs:
            d = serve_device(spec, entry, reqs, cfg, slo, args.fidelity,
                             speculation=speculation)
            d.metrics["arrivals"] = label
            devices.append(d.metrics)
            series.setdefault(label, {})[spec.name] = kv_series(d.run)
    setup = {"model": entry.name, "arrivals": "; ".join(lab for lab, _ in runs),
             "requests": len(runs[0][1]), "seed": args.seed,
             "token_budget": args.token_budget, "max_batch": args.max_batch,
             "slo": args.slo, "requests_file": args.requests,
             "speculation": speculation.label() if speculation is not None else None}
    if args.json:
        print(json.dumps({"setup": setup, "devices": devices}))
    else:
        for label, _ in runs:
            t = Table(title=f"{entry.name}, {label}, {setup['requests']} requests, SLO {args.slo}")
            for col in COLUMNS:
                t.add_column(col, overflow="fold")
            for m in devices:
                if m["arrivals"] == label:
                    t.add_row(*table_row(m))
            _out.print(t)
        for note in dict.fromkeys(f"{m['hw']}: {n}" for m in devices for n in m.get("notes", ())):
            _out.print(f"note: {note}", highlight=False)
        for m in devices:
            if line := speculation_line(m):
                _out.print(line, highlight=False)
    if args.out:
        command = "llmcosim " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["serve"] \
            else "llmcosim serve"
        path = write_serve(Path(args.out), devices, series, setup, command)
        if not args.json:
            _out.print(f"report written to {path}", highlight=False)
    return 0

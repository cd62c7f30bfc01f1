"""``llmcosim compare``: one model on several devices, and a paper's headline ratios (wiring only).

The simulation and sources live in ``reports/compare.py``, the ratio arithmetic in
``reports/headline.py``.
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

__all__ = ["add_compare_parser", "cmd_compare"]

_out = Console(width=None if sys.stdout.isatty() else 200)



def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    from reports.best_batch import BATCHES
    from reports.compare import DEFAULT_HW, GPU_STACKS

    s = sub.add_parser("compare", help="one model on several devices at their best fidelity: "
                       "latency, tokens/s, tokens/J, tokens/s per $, with sources")
    s.add_argument("--model", default="llama2-7b", help="zoo name, or a config.json or its folder")
    s.add_argument("--prefill", type=whole, default=128, help="prompt tokens (default 128)")
    s.add_argument("--decode", type=whole, default=512, help="generated tokens (default 512)")
    s.add_argument("--hw", default=",".join(DEFAULT_HW),
                   help=f"comma-separated presets (default {','.join(DEFAULT_HW)})")
    s.add_argument("--out", default="reports/out",
                   help="directory for compare.md/.json/.png, headline.md/.json/.png with "
                   "--assumptions (default reports/out), or a NAME.md path for NAME.*")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    s.add_argument("--assumptions", help="a paper's stated inputs and headline ratios "
                   "(configs/compare/flightllm_paper.toml): recompute the ratios; its power and "
                   "price replace the presets' in the table")
    s.add_argument("--headline-only", action="store_true",
                   help="with --assumptions: the ratios from the paper's inputs alone, no "
                   "simulation")
    s.add_argument("--gpu-stack", default=None,
                   help=f"calibrated GPU model's software stack: {', '.join(GPU_STACKS)} "
                   "(default graph)")
    s.add_argument("--no-cycle", action="store_true",
                   help="every device at the roofline (seconds; skips the cycle-level and "
                   "calibrated models)")
    s.add_argument("--batch", type=whole, default=1, help="sequences per pass (default 1)")
    s.add_argument("--best-batch", nargs="?", const=",".join(map(str, BATCHES)), default=None,
                   metavar="B1,B2,...", help="also decode at each batch (default "
                   f"{','.join(map(str, BATCHES))}) up to the first that does not fit memory or "
                   "buffers: tokens/s at batch 1 and at the batch with the most decode tokens/s")
    s.add_argument("--max-tpot-ms", default=None, metavar="MS",
                   help="with --best-batch: only batches within this time per output token")
    s.add_argument("--dtype", default="float16", help="float16 (default), bfloat16, float32")
    s.add_argument("--no-cache", action="store_true", help="trace again, ignore cached graphs")
    g = s.add_argument_group("serving columns (--rate turns them on; as `llmcosim serve`)")
    g.add_argument("--rate", help="Poisson arrival rate, e.g. 2/s: each device also serves a "
                   "request stream (continuous batching): TTFT/TPOT, goodput, J/request")
    g.add_argument("--requests", default="configs/serving/sharegpt_like.toml",
                   help="length distributions for --rate (default configs/serving/"
                   "sharegpt_like.toml)")
    g.add_argument("--num-requests", type=whole, default=200,
                   help="requests served (default 200)")
    g.add_argument("--slo", default="ttft=500ms,tpot=50ms",
                   help="SLOs for goodput (default ttft=500ms,tpot=50ms)")
    s.set_defaults(func=cmd_compare)


def _print_serving(serving: list[dict]) -> None:
    from reports.serve import COLUMNS, table_row

    t = Table(title=f"serving: {serving[0]['arrivals']}")
    for col in COLUMNS:
        t.add_column(col, overflow="fold")
    for m in serving:
        t.add_row(*table_row(m))
    _out.print(t)


def _print_best(found, batches, max_tpot_ms) -> None:
    from reports.best_batch import BEST_COLUMNS, best_cells

    bound = f", within {max_tpot_ms:g} ms/token" if max_tpot_ms is not None else ""
    t = Table(title=f"best batch: decode at batch {','.join(map(str, batches))}, the most "
              f"tokens/s{bound}")
    for i, col in enumerate(BEST_COLUMNS):
        t.add_column(col, justify="left" if i in (0, 1, len(BEST_COLUMNS) - 1) else "right",
                     overflow="fold")
    for b in found:
        t.add_row(*best_cells(b))
    _out.print(t)
    for b in found:
        if b.limit is not None:
            _out.print(f"  {b.hw}: limit at batch {b.limit}: {b.limit_reason}", highlight=False)
        for note in b.notes:
            _out.print(f"  {b.hw}: note: {note}", highlight=False)


def _best_batch(args, entry, names, a, max_tpot_ms, rows) -> list:
    """``--best-batch``: each device's decode batch search (``reports.best_batch``)."""
    from llmcosim.progress import TaskProgress
    from reports.best_batch import decode_workload, parse_batches, search_devices
    from sim.spec import load_preset

    def workload_at(batch: int):
        return decode_workload(entry, args.prefill, args.decode, batch, args.dtype,
                               use_cache=not args.no_cache)

    with TaskProgress(f"best batch {entry.name}", "runs", verb="simulated",
                      enabled=not args.json) as bar:
        return search_devices([load_preset(n) for n in names], workload_at,
                              parse_batches(args.best_batch), cycle=not args.no_cycle,
                              gpu_stack=args.gpu_stack, max_tpot_ms=max_tpot_ms,
                              overrides=a.overrides() if a else None,
                              overrides_from=f"assumptions {a.path}" if a else "",
                              progress=bar, reference={r.hw: r.decode_tokens_per_s
                                                       for r in rows if args.batch == 1})


def _print_tables(rows, results, assumptions) -> None:
    from reports.compare import COLUMNS, table_cells
    from reports.headline import HEADLINE_COLUMNS, headline_cells

    if rows:
        t = Table(title=f"{len(rows)} devices (decode columns: mean over the decode passes)")
        for i, col in enumerate(COLUMNS):
            t.add_column(col, justify="right" if 1 < i < len(COLUMNS) - 1 else "left",
                         overflow="fold")
        for r in rows:
            t.add_row(*table_cells(r))
        _out.print(t)
        for r in rows:
            _out.print(f"  {r.hw}: power {r.power_source}; price {r.price_source}",
                       highlight=False)
            for note in r.notes:
                _out.print(f"  {r.hw}: note: {note}", highlight=False)
    if assumptions is None:
        return
    t = Table(title=assumptions.title)
    for col in HEADLINE_COLUMNS:
        t.add_column(col, overflow="fold")
    for res in results:
        for cells in headline_cells(res):
            t.add_row(*cells)
        t.add_section()
    _out.print(t)
    for res in results:
        _out.print(f"{res.ratio.name}: {res.verdict}", highlight=False)
        for h in res.hangs_on:
            _out.print(f"  hangs on: {h}", highlight=False)


def _out_files(out: str, stem: str) -> tuple[Path, str]:
    """(directory, file stem) of ``--out``: a directory (``stem``.md/.json/.png in it: a
    headline run does not overwrite a plain compare's files) or a ``NAME.md`` path."""
    p = Path(out)
    if p.suffix == ".md":
        return p.parent, p.stem
    return p, stem


def cmd_compare(args: argparse.Namespace) -> int:
    from models.cache import get_workload
    from models.zoo import get_model
    from reports.best_batch import best_markdown, check_max_tpot, parse_batches
    from reports.compare import check_inputs, compare, parse_hw_list, write_compare
    from reports.headline import headline, headline_markdown, load_assumptions
    from reports.serve import serve_devices

    entry = get_model(args.model)
    names = parse_hw_list(args.hw)
    check_inputs(names, args.gpu_stack)   # bad presets fail before any tracing
    if args.rate:   # ... and so do bad serving flags
        from sim.serving.metrics import parse_slo
        from sim.serving.requests import load_lengths, parse_rate

        parse_rate(args.rate)
        parse_slo(args.slo)
        load_lengths(args.requests)
    max_tpot_ms = check_max_tpot(args.max_tpot_ms)
    if args.best_batch is not None:
        parse_batches(args.best_batch)
        if args.headline_only:
            raise UserError("--best-batch simulates decode; --headline-only simulates nothing")
        if args.decode < 1:
            raise UserError("--best-batch compares decode throughput: give --decode >= 1")
    elif max_tpot_ms is not None:
        raise UserError("--max-tpot-ms bounds the --best-batch search; add --best-batch")
    a = load_assumptions(args.assumptions) if args.assumptions else None
    if args.headline_only and a is None:
        raise UserError("--headline-only needs --assumptions FILE "
                        "(e.g. configs/compare/flightllm_paper.toml)")
    if a is not None and a.model and a.model != entry.name:
        print(f"note: {a.path} states numbers for {a.model}, not {entry.name}", file=sys.stderr)
    rows, stack_rows = [], {}
    if not args.headline_only:
        w = get_workload(entry, prefill=args.prefill, decode=args.decode, batch=args.batch,
                         dtype=args.dtype, use_cache=not args.no_cache)
        kw = {"cycle": not args.no_cycle, "overrides": a.overrides() if a else None,
              "overrides_from": f"assumptions {a.path}" if a else ""}
        from llmcosim.progress import TaskProgress

        with TaskProgress(f"compare {entry.name}", "devices", verb="simulated",
                          enabled=not args.json) as bar:
            rows = compare(names, w, gpu_stack=args.gpu_stack, progress=bar, **kw)
        # the paper's GPU stacks on our calibrated GPU model (only GPUs rerun; fast)
        gpus = [r.hw for r in rows if r.kind == "gpu" and r.fidelity == "calibrated"]
        for stack, ours in (a.model_stacks.items() if a and gpus else ()):
            same = ours == (args.gpu_stack or "graph")
            stack_rows[stack] = rows if same else compare(gpus, w, gpu_stack=ours, **kw)
    found = _best_batch(args, entry, names, a, max_tpot_ms, rows) \
        if args.best_batch is not None else None
    best = None if found is None else {
        "batches": list(parse_batches(args.best_batch)), "max_tpot_ms": max_tpot_ms,
        "devices": [b.to_dict() for b in found]}
    serving = serve_devices(names, entry, args.rate, args.num_requests, args.requests,
                            args.slo, cycle=not args.no_cycle) if args.rate else None
    results = headline(a, rows, stack_rows) if a else []
    command = "llmcosim " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["compare"] \
        else "llmcosim compare"
    workload = {"model": entry.name, "prefill": args.prefill, "decode": args.decode,
                "batch": args.batch, "dtype": args.dtype}
    md = headline_markdown(a, results) if a else ""
    if args.json:
        print(json.dumps({"workload": workload, "devices": [r.to_dict() for r in rows],
                          **({"headline": [r.to_dict() for r in results]} if a else {}),
                          **({"best_batch": best} if best else {}),
                          **({"serving": serving} if serving else {})}))
    else:
        _print_tables(rows, results, a)
        if found is not None:
            _print_best(found, best["batches"], max_tpot_ms)
        if serving:
            _print_serving(serving)
    if rows:
        out, stem = _out_files(args.out, "headline" if a else "compare")
        path = write_compare(out, rows, stem=stem, workload=workload, command=command,
                             headline=[r.to_dict() for r in results] if a else None,
                             headline_md=md, serving=serving, best_batch=best,
                             best_batch_md=best_markdown(found, best["batches"], max_tpot_ms)
                             if found is not None else "")
        if not args.json:
            _out.print(f"report written to {path}", highlight=False)
    return 0

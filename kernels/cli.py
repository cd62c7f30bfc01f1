"""``llmcosim gpu-baseline measure``: the GPU measurement as a CLI sub-command."""

from __future__ import annotations

import argparse
import datetime
import re
from pathlib import Path

__all__ = ["add_gpu_baseline_parser", "run_gpu_baseline"]


def add_gpu_baseline_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gpu-baseline", help="measure GPU baselines (needs CUDA, or "
                              "--dry-run on CPU)")
    sub = p.add_subparsers(dest="gpu_command", required=True, metavar="{measure,validate}")
    m = sub.add_parser("measure", help="per-op latencies and decode steps -> JSON")
    m.add_argument("--model", default="llama2-7b", help="zoo model for whole-model decode steps")
    m.add_argument("--out", default="reports/baselines",
                   help="directory (file named after device and date) or a .json path")
    m.add_argument("--dtype", default="float16", help="float16 (default), bfloat16, float32")
    m.add_argument("--dry-run", action="store_true", help="tiny shapes; runs on the CPU")
    m.add_argument("--repeat", type=int, default=10)
    m.set_defaults(func=run_gpu_baseline)
    v = sub.add_parser("validate", help="model vs measurement on held-out points, per op class")
    v.add_argument("--fit-on", default=None,
                   help="measured device the transfer check fits on (default: NVIDIA H200); "
                        "see reports/baselines")
    v.add_argument("--no-steps", action="store_true",
                   help="per-op classes only (whole-model steps need traced graphs)")
    v.add_argument("--json", action="store_true", help="every point as JSON on stdout")
    v.set_defaults(func=run_gpu_validate)


def run_gpu_validate(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from llmcosim.progress import TaskProgress
    from models.errors import UserError
    from sim.gpu.validate import TARGET_MAX, TARGET_MEDIAN, validate_all

    try:
        # each whole-model point traces its graph (cached after the first run)
        with TaskProgress("gpu-baseline validate", "whole-model points", verb="predicted",
                          enabled=not args.json) as bar:
            own, res = validate_all(args.fit_on, steps=not args.no_steps, progress=bar)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps({"own": own["points"], "fit_on": res["fit_on"],
                          "points": res["points"],
                          "notes": list(dict.fromkeys(own["notes"] + res["notes"]))},
                         indent=1))
        return 0
    c = res["calibration"]
    for title, classes in (
            ("each measured GPU fitted on its own data, as --hw gpu-h100 / gpu-h200 simulate",
             own["classes"]),
            (f"transfer: fitted on {c.device} only, every other GPU's datasheet swapped in "
             "(what presets never measured rely on)",
             res["classes"])):
        t = Table(title=f"GPU model vs measurement, held-out points only: {title}")
        for col in ("device", "class", "n", "median |err|", "max |err|", "worst point", "bar"):
            t.add_column(col, justify="right" if col in ("n", "median |err|", "max |err|")
                         else "left")
        for e in classes:
            bar = "ok" if e.ok else "MISS"
            t.add_row(e.device, e.group, str(e.n), f"{e.median:.1%}", f"{e.max:.1%}", e.worst,
                      bar)
        Console(width=160).print(t)
    for note in dict.fromkeys(own["notes"] + res["notes"]):   # once each, in order
        print(f"note: {note}")
    print(f"fitted on: {c.source}")
    print(f"bar: median <= {TARGET_MEDIAN:.0%} and max <= {TARGET_MAX:.0%}; eager steps are "
          "host-bound (CPU and Python speed), shown apart.")
    return 0


def run_gpu_baseline(args: argparse.Namespace) -> int:
    import torch

    from kernels.measure import _DTYPES, measure_all
    from models.errors import UserError
    from models.zoo import get_model

    get_model(args.model)  # unknown model: a clear error before any work
    if args.dtype not in _DTYPES:
        raise UserError(f"unknown --dtype {args.dtype!r}; allowed: {', '.join(_DTYPES)}")
    if not torch.cuda.is_available() and not args.dry_run:
        raise UserError("no CUDA GPU here: run on a GPU machine, or pass --dry-run for a CPU "
                        "check with tiny shapes")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    data = measure_all(device, dtype=args.dtype, dry_run=args.dry_run, model=args.model,
                       repeat=args.repeat)
    out = Path(args.out)
    if out.suffix != ".json":
        out.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", data["device"]["name"].lower()).strip("-")
        out = out / f"{slug}-{datetime.date.today():%Y%m%d}.json"
    import json

    out.write_text(json.dumps(data, indent=1))
    print(f"{len(data['ops'])} op timings, {len(data.get('decode_steps', []))} decode steps "
          f"on {data['device']['name']} -> {out}")
    return 0

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
    sub = p.add_subparsers(dest="gpu_command", required=True, metavar="{measure}")
    m = sub.add_parser("measure", help="per-op latencies and decode steps -> JSON")
    m.add_argument("--model", default="llama2-7b", help="zoo model for whole-model decode steps")
    m.add_argument("--out", default="reports/baselines",
                   help="directory (file named after device and date) or a .json path")
    m.add_argument("--dtype", default="float16", help="float16 (default), bfloat16, float32")
    m.add_argument("--dry-run", action="store_true", help="tiny shapes; runs on the CPU")
    m.add_argument("--repeat", type=int, default=10)
    p.set_defaults(func=run_gpu_baseline)


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

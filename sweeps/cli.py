"""``llmcosim sweep ...`` and ``llmcosim report sweep``: argument parsing and printing only.

    llmcosim sweep SPEC.toml [--workers N] [--resume | --fresh] [--backend local|ray]
                             [--address auto] [--db PATH] [--no-cache] [--quiet]
    llmcosim sweep show DB [--pareto a,b[,c]] [--where EXPR] [--best METRIC] [--top N]
    llmcosim sweep export DB OUT.{csv,parquet}
    llmcosim report sweep DB --out DIR

Wire with ``add_sweep_parsers(subparsers)``; each parser's ``func`` returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.errors import UserError

__all__ = ["add_sweep_parsers", "cmd_report_sweep", "cmd_sweep"]

_ACTIONS = ("run", "show", "export")


def add_sweep_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``report`` (with ``report sweep``) to the CLI's subparsers."""
    s = sub.add_parser("sweep", help="run a design-space sweep, or show/export its results",
                       description=__doc__.split("\n\n")[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("target", nargs="+", metavar="SPEC.toml | show DB | export DB OUT",
                   help="a sweep spec to run (configs/sweeps/), or show/export a results DB")
    r = s.add_argument_group("run")
    r.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    r.add_argument("--backend", default="local", choices=("local", "ray"))
    r.add_argument("--address", default=None, help="Ray cluster address (e.g. auto)")
    r.add_argument("--resume", action="store_true", help="continue: skip finished points")
    r.add_argument("--fresh", action="store_true", help="delete the results DB and start over")
    r.add_argument("--db", default=None, help="results DB (default: sweep.out or "
                   "results/<name>.db)")
    r.add_argument("--no-cache", action="store_true", help="do not reuse cached simulations")
    r.add_argument("--chunk", type=int, default=None, help="points per task (default: auto)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    a = s.add_argument_group("show")
    a.add_argument("--pareto", default=None, help="Pareto frontier over 2-3 metrics, e.g. "
                   "tokens_per_s,tokens_per_j (prefix - to minimise, + to maximise)")
    a.add_argument("--where", default=None, help="keep rows where EXPR holds, e.g. "
                   "'fits_memory and price_usd < 10000'")
    a.add_argument("--best", default=None, help="the best design by METRIC (after --where)")
    a.add_argument("--top", type=int, default=20, help="rows to print (default 20)")
    s.set_defaults(func=cmd_sweep)

    rep = sub.add_parser("report", help="write reports (sweep)")
    rsub = rep.add_subparsers(dest="report", required=True, metavar="KIND")
    rs = rsub.add_parser("sweep", help="Markdown + HTML report with plots from a sweep DB")
    rs.add_argument("db", help="results database (.db)")
    rs.add_argument("--out", default=None, help="output directory "
                    "(default reports/out/<sweep name>/)")
    rs.add_argument("--pareto", default="tokens_per_s,tokens_per_j",
                    help="metrics of the Pareto plot (default tokens_per_s,tokens_per_j)")
    rs.set_defaults(func=cmd_report_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    t = args.target
    if t[0] in _ACTIONS and not t[0].endswith(".toml"):
        action, rest = t[0], t[1:]
    else:
        action, rest = "run", t
    want = {"run": 1, "show": 1, "export": 2}[action]
    if len(rest) != want:
        raise UserError(f"sweep {action} takes {want} argument(s): " +
                        {"run": "SPEC.toml", "show": "DB", "export": "DB OUT.csv|OUT.parquet"}
                        [action])
    if action == "run":
        return _run(args, rest[0])
    if action == "show":
        return _show(args, rest[0])
    from sweeps.analysis import export

    out = export(rest[0], rest[1])
    print(f"wrote {out}")
    return 0


def _run(args: argparse.Namespace, path: str) -> int:
    from sweeps.runner import run_sweep
    from sweeps.spec import load_sweep

    if args.resume and args.fresh:
        raise UserError("--resume and --fresh exclude each other")
    spec = load_sweep(path)
    s = run_sweep(spec, db=args.db, workers=args.workers, backend=args.backend,
                  address=args.address, resume=args.resume, fresh=args.fresh,
                  cache=False if args.no_cache else None, chunk=args.chunk,
                  progress=not args.quiet)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(s.counts.items()))
    print(f"{spec.name}: {s.total} points ({counts}); ran {s.ran}"
          + (f", {s.skipped} already finished" if s.skipped else "")
          + f" in {s.wall_s:.1f} s ({s.points_per_s:.1f} points/s) -> {s.db}")
    _print_failures(s.db, s.counts.get("failed", 0))
    if s.interrupted:
        print(f"interrupted: rerun with --resume to finish ({path})", file=sys.stderr)
        return 130
    if s.total and s.counts.get("failed", 0) == s.total:   # nothing ran: a script must see it
        print(f"error: every point of {spec.name} failed (see above)", file=sys.stderr)
        return 1
    return 0


def _print_failures(db: Path, failed: int, most: int = 3) -> None:
    """Why points failed (the distinct messages, most common first): a sweep whose every point
    fails on one bad input must say so, not only count it."""
    if not failed:
        return
    from collections import Counter

    from sweeps.store import Store

    with Store(db, readonly=True) as store:
        errors = Counter(r["error"] or "?" for r in store.rows("failed"))
    for msg, n in errors.most_common(most):
        print(f"failed ({n} point{'s' * (n > 1)}): {msg}", file=sys.stderr)
    if len(errors) > most:
        print(f"... and {len(errors) - most} other error(s), in {db} (points.error)",
              file=sys.stderr)


def _show(args: argparse.Namespace, db: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from sweeps.analysis import best, load, metric_names, pareto, sensitivity

    df, meta = load(db)
    ok = df[df["status"] == "ok"]
    if args.where:
        from sweeps.analysis import where

        ok = where(ok, args.where)
    out = Console(width=None if sys.stdout.isatty() else 160)
    counts = df["status"].value_counts().to_dict()
    out.print(f"{meta.get('name', Path(db).stem)}: {len(df)} points "
              f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
              f"axes: {', '.join(meta.get('axes', [])) or '-'}")
    axes = [a for a in meta.get("axes", []) if a in df.columns]
    if args.pareto:
        metrics = metric_names(args.pareto)
        rows = pareto(ok, args.pareto)
        title = f"Pareto frontier over {', '.join(metrics)}: {len(rows)} of {len(ok)} designs"
    elif args.best:
        rows = best(ok, args.best, n=args.top)
        title = f"best by {args.best}" + (f" where {args.where}" if args.where else "")
        metrics = metric_names(args.best)
    else:
        rows = ok
        title = "designs"
        metrics = ["decode_tokens_per_s", "tokens_per_j"]
    serving = "goodput" in rows.columns and rows["goodput"].notna().any()
    if serving:   # [serving] points (sweeps/serving.py): their metrics, not decode's
        metrics = [*metrics, "goodput", "ttft_p99_ms", "tpot_p99_ms", "energy_per_request_j"]
        metrics = [m for m in metrics if m not in ("decode_tokens_per_s", "tokens_per_j")]
    cols = [*axes, *[m for m in metrics if m not in axes],
            *(() if serving else ("total_ms", "fits_memory")),
            *(("resources_dsp",) if "resources_dsp" in rows.columns
              and rows["resources_dsp"].notna().any() else ())]   # FlightLLM FPGA points
    cols = list(dict.fromkeys(c for c in cols if c in rows.columns))
    t = Table(title=title)
    for c in cols:
        t.add_column(c, justify="right")
    for _, r in rows.head(args.top).iterrows():
        t.add_row(*(_fmt(r[c]) for c in cols))
    out.print(t)
    if not args.pareto and not args.best and axes and len(ok):
        key = "goodput" if serving else "decode_tokens_per_s"
        sens = sensitivity(ok, axes, key)
        out.print(f"sensitivity of {key} (max/min of the mean over each axis): "
                  + ", ".join(f"{a} {v:.2f}x" for a, v in sens.items()))
    return 0


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if v == v else "-"
    return str(v)


def cmd_report_sweep(args: argparse.Namespace) -> int:
    from reports.sweep import write_sweep_report

    path = write_sweep_report(args.db, args.out, pareto=args.pareto)
    print(f"report written to {path}")
    return 0

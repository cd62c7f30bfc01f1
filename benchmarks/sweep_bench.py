"""Sweep throughput: points/s of a 1,000-point roofline sweep and a 100-point FlightLLM
cycle-level sweep, local pool vs Ray (2 workers).

    .venv/bin/python benchmarks/sweep_bench.py [--workers 2] [--only roofline|cycle|all]
        [--spec configs/sweeps/bench_1000.toml] [--cycle-spec configs/sweeps/u280_sparsity.toml]
        [--cycle-ray]

Measures (numbers go to stdout as JSON):
  * roofline: local / ray points per second, simulation included (program cache off);
  * dispatch overhead per point with chunk = 1 on a warm program cache (every point is a
    cache hit, so what is left is task dispatch + SQLite writes); Ray minus local is the Ray
    backend's overhead per point;
  * cycle: the 100-point FlightLLM cycle-level sweep (u280_sparsity.toml: LLaMA-2-7B, prefill
    128, decode 16 = one decode bucket; keep x weight bits x clock), local pool, program
    cache off; with --cycle-ray the same on Ray (twice the time).
The tables of the local and Ray runs are compared (they must be identical).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from models.argparser import StrictParser
from sweeps import Store, load_sweep, run_sweep
from sweeps.worker import METRICS


def _table(db: Path) -> dict:
    with Store(db, readonly=True) as s:
        return {r["hash"]: tuple(r[m] for m in ("status", *METRICS)) for r in s.rows()}


def _warm(spec) -> None:
    from models.cache import get_workload  # warm the trace cache outside the timings

    p = spec.points()[0]
    get_workload(p.model, prefill=p.prefill, decode=p.decode, batch=p.batch, dtype=p.dtype)


def main() -> None:
    ap = StrictParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spec", default="configs/sweeps/bench_1000.toml")
    ap.add_argument("--cycle-spec", default="configs/sweeps/u280_sparsity.toml")
    ap.add_argument("--only", choices=("roofline", "cycle", "all"), default="all")
    ap.add_argument("--cycle-ray", action="store_true", help="also run the cycle sweep on Ray")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    out: dict[str, object] = {"workers": args.workers, "cpus": os.cpu_count()}

    def timed(spec, name: str, **kw: object) -> float:
        s = run_sweep(spec, db=tmp / f"{name}.db", workers=args.workers, progress=False,
                      fresh=True, **kw)
        out[f"{name}_points"] = s.ran
        out[f"{name}_points_per_s"] = round(s.ran / s.wall_s, 3)
        out[f"{name}_wall_s"] = round(s.wall_s, 2)
        with Store(tmp / f"{name}.db", readonly=True) as st:  # cache hits (code may change
            rows = st.rows("ok")                              # under us: then it misses)
        out[f"{name}_ok"] = len(rows)
        out[f"{name}_cached_fraction"] = round(sum(r["cached"] for r in rows) /
                                               max(len(rows), 1), 3)
        return s.wall_s

    if args.only in ("cycle", "all"):
        cyc = load_sweep(args.cycle_spec)
        _warm(cyc)
        p = cyc.points()[0]
        out["cycle_workload"] = f"{p.model} prefill {p.prefill} decode {p.decode}"
        out["cycle_spec"] = args.cycle_spec
        wall = timed(cyc, "cycle_local", cache=False)
        out["cycle_local_s_per_point_per_worker"] = round(
            wall * args.workers / len(cyc.points()), 2)
        if args.cycle_ray:
            import ray

            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
            try:
                timed(cyc, "cycle_ray", cache=False, backend="ray")
            finally:
                ray.shutdown()
            out["cycle_tables_identical"] = (_table(tmp / "cycle_local.db")
                                             == _table(tmp / "cycle_ray.db"))
    if args.only == "cycle":
        print(json.dumps(out, indent=2))
        return
    spec = load_sweep(args.spec)
    _warm(spec)
    out["points"] = len(spec.points())
    timed(spec, "local", cache=False)

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = round(time.perf_counter() - t0, 2)
    try:
        timed(spec, "ray", cache=False, backend="ray")
        timed(spec, "warm", cache=True)   # fills the program cache right before the dispatch
        local_overhead = timed(spec, "local_cached_chunk1", cache=True, chunk=1)
        ray_overhead = timed(spec, "ray_cached_chunk1", cache=True, chunk=1, backend="ray")
    finally:
        ray.shutdown()
    n = len(spec.points())
    out["local_dispatch_ms_per_point"] = round(local_overhead / n * 1e3, 3)
    out["ray_dispatch_ms_per_point"] = round(ray_overhead / n * 1e3, 3)
    out["ray_overhead_ms_per_point"] = round((ray_overhead - local_overhead) / n * 1e3, 3)
    out["tables_identical"] = _table(tmp / "local.db") == _table(tmp / "ray.db")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

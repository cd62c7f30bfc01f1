"""Run a sweep: expand points, filter by constraints, skip finished ones, dispatch, store.

The driver process owns the SQLite file; workers only compute. Infeasible points are
recorded without running (``filtered`` by a constraint, ``failed`` when the spec itself is
impossible), so the table always says what happened to every point.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import UserError
from sweeps.spec import Point, SweepSpec
from sweeps.store import Store
from sweeps.worker import code_version, env_of, resolve_spec, result_cache_dir

__all__ = ["SweepSummary", "after_run", "plan", "run_sweep"]


@dataclass
class SweepSummary:
    db: Path
    total: int            # unique points in the spec
    skipped: int          # already finished (resume)
    ran: int              # simulated now
    counts: dict[str, int]
    wall_s: float
    interrupted: bool = False

    @property
    def points_per_s(self) -> float:
        return self.ran / self.wall_s if self.wall_s else 0.0


def plan(spec: SweepSpec, points: list[Point]) -> tuple[list[Point], list[dict[str, Any]]]:
    """Split points into those to run and rows for those settled before running."""
    run: list[Point] = []
    settled: list[dict[str, Any]] = []
    version = code_version()
    for p in points:
        try:
            hw = resolve_spec(p)
        except UserError as e:
            settled.append({"hash": p.key, "status": "failed", "error": str(e),
                            "code_version": version})
            continue
        env = env_of(p, hw)
        broken = [c.text for c in spec.constraints if c.holds(env) is False]
        if broken:
            settled.append({"hash": p.key, "status": "filtered", "kind": hw.kind,
                            "error": f"constraint {broken[0]!r} does not hold",
                            "code_version": version})
        else:
            run.append(p)
    return run, settled


def _chunks(points: list[Point], workers: int, chunk: int | None) -> list[list[Point]]:
    size = chunk or max(1, min(32, math.ceil(len(points) / (workers * 16))))
    return [points[i:i + size] for i in range(0, len(points), size)]


def run_sweep(spec: SweepSpec, *, db: str | Path | None = None, workers: int | None = None,
              backend: str = "local", address: str | None = None, resume: bool = False,
              fresh: bool = False, cache: bool | None = None, chunk: int | None = None,
              progress: bool = True) -> SweepSummary:
    """Run ``spec`` into its SQLite file; see :class:`SweepSummary`."""
    path = Path(db) if db is not None else spec.out
    if path.exists() and not (resume or fresh):
        raise UserError(f"{path} exists: --resume to continue that sweep, or --fresh to "
                        "delete it and start over")
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    use_cache = spec.cache if cache is None else cache
    cache_dir = str(result_cache_dir()) if use_cache else None
    t0 = time.perf_counter()
    points = spec.points()
    with Store(path) as store:
        old = store.meta()
        if old.get("spec") not in (None, spec.text):
            print(f"note: {path} was started from a different sweep spec; new points are "
                  "added, finished ones kept", file=sys.stderr)
        store.set_meta(name=spec.name, spec=spec.text, axes=spec.axis_names,
                       code_version=code_version(), created=old.get("created", time.time()))
        store.add_points(points)
        done = store.finished()
        todo = [p for p in points if p.key not in done]
        runnable, settled = plan(spec, todo)
        store.record(settled)
        interrupted = _dispatch(store, runnable, workers, backend, address, cache_dir, chunk,
                                progress, spec.name, spec.constraints)
        counts = store.counts()
        ran = len(store.finished()) - len(done) - len(settled)   # fewer when interrupted
    return SweepSummary(path, len(points), len(points) - len(todo), ran, counts,
                        time.perf_counter() - t0, interrupted)


def after_run(constraints: tuple, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of points whose serving metrics break a constraint become ``filtered`` (their
    metrics kept); rules on inputs were checked by :func:`plan` before running."""
    from sweeps.serving import SERVING_METRICS

    out = []
    for r in rows:
        env = {k: r[k] for k in SERVING_METRICS if r.get(k) is not None}
        broken = [c.text for c in constraints if r.get("status") == "ok"
                  and c.names <= set(SERVING_METRICS) and c.holds(env) is False]
        if broken:
            r = {**r, "status": "filtered",
                 "error": f"constraint {broken[0]!r} does not hold (after simulating)"}
        out.append(r)
    return out


def _dispatch(store: Store, points: list[Point], workers: int, backend: str,
              address: str | None, cache_dir: str | None, chunk: int | None, progress: bool,
              name: str, constraints: tuple = ()) -> bool:
    """Run ``points`` and record rows as chunks finish; True when stopped by Ctrl-C."""
    if not points:
        return False
    from sweeps.backends import make_backend
    from sweeps.progress import SweepProgress

    be = make_backend(backend, workers, address)
    bar = SweepProgress(name, len(points), enabled=progress)
    interrupted = False
    with bar:
        try:
            try:
                for rows in be.run(_chunks(points, be.workers, chunk), cache_dir,
                                   code_version()):
                    rows = after_run(constraints, rows)
                    store.record(rows)
                    bar.advance(rows)
            except KeyboardInterrupt:
                interrupted = True
                be.stop()
                bar.note("interrupted: finishing the points in flight (Ctrl-C again to drop "
                         "them)")
                try:
                    for rows in be.drain():
                        rows = after_run(constraints, rows)
                        store.record(rows)
                        bar.advance(rows)
                except KeyboardInterrupt:
                    be.kill()
        finally:
            be.close()
    return interrupted

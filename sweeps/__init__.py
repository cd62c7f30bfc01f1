"""Design-space sweeps: spec files, sampling, local/Ray execution, SQLite results, analysis.

Torch-free: workloads come from the trace cache (or ``*.workload.json`` files) and every
point is simulated through :func:`sim.registry.run`.
"""

from __future__ import annotations

from sweeps.runner import SweepSummary, run_sweep
from sweeps.spec import Point, SweepSpec, load_sweep, parse_sweep
from sweeps.store import Store

__all__ = ["Point", "Store", "SweepSpec", "SweepSummary", "load_sweep", "parse_sweep",
           "run_sweep"]

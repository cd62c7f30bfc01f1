"""Ray backend: the same sweep as Ray tasks on a real local Ray gives the local table.

Slow layer: starting Ray and its worker processes takes ~10-15 s on the 2-core CI machine.
"""

from __future__ import annotations

import pytest

from sweeps import parse_sweep, run_sweep
from tests.unit.test_sweep_run import spec_text, table, toy_workload


@pytest.fixture
def toy(tmp_path):
    return toy_workload(tmp_path / "toy.workload.json")


def test_ray_backend_gives_the_same_table_as_local(tmp_path, toy, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path / "cache"))
    spec = parse_sweep(spec_text(toy))
    run_sweep(spec, db=tmp_path / "local.db", workers=2, progress=False, cache=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(spec, db=tmp_path / "ray.db", backend="ray", workers=2, progress=False,
                  cache=False)
    finally:
        ray.shutdown()
    assert table(tmp_path / "ray.db") == table(tmp_path / "local.db")

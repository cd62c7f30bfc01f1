"""``best``: the most detailed simulator per hardware kind, in simulate, run and sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.graph import Phase
from models.workload import Workload
from sim.registry import best_fidelity, run
from sim.spec import load_preset
from sweeps import Store, parse_sweep, run_sweep
from sweeps.workloads import save_workload_file
from tests.unit.graphs import decoder_like


def test_best_per_kind():
    assert best_fidelity("gpu") == "calibrated"
    assert best_fidelity("hades") == "cycle"
    assert best_fidelity("flightllm") == "cycle"
    assert best_fidelity("flightllm", speculative=True) == "cycle"   # sim/flightllm/speculate
    assert best_fidelity("gpu", speculative=True) == "calibrated"


def _toy(tmp_path: Path) -> tuple[Workload, Path]:
    w = Workload("toy", 1, 16, 8, decoder_like(2, 256, 0, Phase.PREFILL),
                 decoder_like(2, 256, 16), decoder_like(2, 256, 23))
    return w, save_workload_file(w, tmp_path / "toy.workload.json")


@pytest.mark.parametrize("preset", ["gpu-a100", "hades"])
def test_run_and_sweep_resolve_best(tmp_path, preset):
    w, path = _toy(tmp_path)
    spec = load_preset(preset)
    want = run(spec, w, best_fidelity(spec.kind))
    got = run(spec, w, "best")
    assert got.fidelity == want.fidelity != "best"
    assert got.decode_ms_per_token == want.decode_ms_per_token
    text = f"""
[sweep]
name = "best"
fidelity = "best"
[hardware]
preset = "{preset}"
[workload]
model = "{path}"
prefill = 16
decode = 8
"""
    run_sweep(parse_sweep(text), db=tmp_path / "r.db", workers=1, progress=False, cache=False)
    with Store(tmp_path / "r.db", readonly=True) as s:
        rows = list(s.rows())
    assert [r["status"] for r in rows] == ["ok"]
    assert rows[0]["decode_ms_per_token"] == pytest.approx(want.decode_ms_per_token)

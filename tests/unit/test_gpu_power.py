"""GPU board power: the median over measured runs; modelled power for presets never measured."""

from __future__ import annotations

import json
import statistics

import pytest

from sim.gpu.calibrate import baselines, baselines_dir, default_calibration, median_power

H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"


def _run(decode_w: float, prefill_w: float | None = None) -> dict:
    run = {"available": True, "model": "llama2-7b", "seconds": 4.0,
           "decode_q1_c512_graph": {"avg_power_w": decode_w, "calls": 500}}
    if prefill_w is not None:
        run["prefill_512"] = {"avg_power_w": prefill_w}
    return run


def test_median_power_takes_each_phase_over_the_runs_that_measured_it():
    p = median_power([_run(340.0, 500.0), _run(380.0), _run(390.0, 540.0)])
    assert p["runs"] == 3 and p["available"]
    assert p["decode_q1_c512_graph"]["avg_power_w"] == 380.0     # not the last file's 390
    assert p["prefill_512"]["avg_power_w"] == 520.0              # two runs measured it
    assert median_power([]) == {}


def test_calibration_uses_the_median_of_every_measured_file():
    for device in (H200, H100):
        decode = []
        for path in sorted(baselines_dir().glob("*.json")):
            data = json.loads(path.read_text())
            if data.get("device", {}).get("name") == device \
                    and data.get("power", {}).get("available") and not data.get("dry_run"):
                decode.append(data["power"]["decode_q1_c512_graph"]["avg_power_w"])
        assert len(decode) >= 2               # several runs, so one file is not the answer
        c = default_calibration(device)
        assert c.decode_power_w == pytest.approx(statistics.median(decode))
        assert c.power_runs == len(decode) == baselines()[device].power["runs"]

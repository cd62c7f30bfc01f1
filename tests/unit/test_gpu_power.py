"""GPU board power: the median over measured runs; modelled power for presets never measured."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from models.graph import Phase
from models.workload import Workload
from reports.compare import row_from_result
from sim.gpu.calibrate import (
    PRESET_OF_DEVICE,
    baselines,
    baselines_dir,
    default_calibration,
    median_power,
)
from sim.registry import run
from sim.spec import load_preset
from tests.unit.graphs import decoder_like

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


def _workload() -> Workload:
    pre = dataclasses.replace(decoder_like(context=0), phase=Phase.PREFILL, tokens=8)
    return Workload("toy", 1, 8, 4, pre, decoder_like(context=8), decoder_like(context=11))


def test_unmeasured_presets_draw_the_measured_fraction_of_their_tdp():
    """A100/V100S: TDP x the median over the measured GPUs of (median board power / TDP), in
    each phase, computed here from the calibrations; not the TDP."""
    def fraction(which: str) -> float:
        return statistics.median(
            getattr(default_calibration(d), f"{which}_power_w") / load_preset(p).power_w
            for d, p in PRESET_OF_DEVICE.items())

    w = _workload()
    for name in ("gpu-a100", "gpu-v100s"):
        spec = load_preset(name)
        r = run(spec, w, "calibrated")
        decode_w, prefill_w = fraction("decode") * spec.power_w, fraction("prefill") * spec.power_w
        assert 0.3 * spec.power_w < decode_w < 0.8 * spec.power_w    # memory-bound: not the TDP
        decode_s = r.decode_ms_per_token * w.decode_tokens / 1e3
        assert r.tokens_per_j == pytest.approx(w.decode_tokens / (decode_w * decode_s))
        assert r.energy_j == pytest.approx(decode_w * decode_s + prefill_w * r.prefill_ms / 1e3)
        assert r.extra["power_source"] == "modelled"
        note = next(n for n in r.notes if "modelled" in n)
        assert note.startswith(f"energy modelled: {decode_w:.0f} W decoding = "
                               f"{fraction('decode'):.3f} x TDP {spec.power_w:.0f} W")
        assert "H100" in note and "H200" in note and f"{prefill_w:.0f} W in prefill" in note
        row = row_from_result(spec, r, "calibrated")
        assert row.power_w == pytest.approx(decode_w) and row.power_source.startswith("modelled: ")


def test_measured_presets_keep_their_measured_power():
    r = run(load_preset("gpu-h200"), _workload(), "calibrated")
    assert r.extra["power_source"] == "measured"
    assert r.extra["decode_power_w"] == default_calibration(H200).decode_power_w
    assert any(n.startswith("energy from measured board power") for n in r.notes)

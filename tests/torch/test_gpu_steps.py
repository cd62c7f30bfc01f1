"""Whole-model steps predicted from per-op curves (never fitted on steps) vs the measured ones."""

from __future__ import annotations

import statistics

import pytest

from sim.gpu_calibrate import baselines, default_calibration
from sim.gpu_steps import predict_step
from sim.spec import load_preset


@pytest.mark.parametrize("device", ["NVIDIA H200", "NVIDIA H100 80GB HBM3"])
def test_llama2_7b_graph_steps_meet_the_bar(device):
    """Fitted on the H200's per-op data only; on the H100 just the datasheet changes."""
    b = baselines()[device]
    spec = load_preset(b.preset)
    c = default_calibration("NVIDIA H200")
    rows = [r for r in b.steps if r["model"] == "llama2-7b" and r["mode"] == "cuda_graph"]
    errs = [abs(predict_step(r, c, spec.mem_bytes_per_s, spec.peak_ops_per_s("float16"))
                / r["median_s"] - 1) for r in rows]
    assert len(rows) == 32
    assert statistics.median(errs) <= 0.10 and max(errs) <= 0.25, (statistics.median(errs),
                                                                   max(errs))

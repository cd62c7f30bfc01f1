"""FlightLLM on the traced LLaMA2-7B: both engines give identical cycles on the real programs,
and the calibration points stay where reports/flightllm.md says (a change shows up here)."""

from __future__ import annotations

import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression
from models.cache import get_graph
from sim.flightllm.engine_fast import run_fast
from sim.flightllm.engine_simpy import run_simpy
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles
from sim.spec import load_preset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("hw", ["flightllm-vhk158", "flightllm-u280"])
def test_engines_agree_on_llama2_7b_decode(hw):
    spec = load_preset(hw)
    g = apply_compression(get_graph("llama2-7b", "decode", context=512))
    p = fill_cycles(generate(g, arch_of(spec)), spec)
    s1, f1 = run_fast(p, spec.hbm_channels)
    s2, f2 = run_simpy(p, spec.hbm_channels)
    for a, b, c, d in zip(s1, s2, f1, f2, strict=True):
        assert (a == b).all() and (c == d).all()


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_replicated_program_equals_generated(phase):
    """Layer replication gives the op-by-op program on the traced model (prefill: per-layer
    masks, so nothing is replicated and both paths are the same code)."""
    import numpy as np

    spec = load_preset("flightllm-vhk158")
    g = apply_compression(get_graph("llama2-7b", "decode", context=512) if phase == "decode"
                          else get_graph("llama2-7b", "prefill", tokens=128))
    a, b = generate(g, arch_of(spec)), generate(g, arch_of(spec), replicate=False)
    assert a.nodes == b.nodes
    assert all(np.array_equal(x, y) for x, y in zip(a.cores, b.cores, strict=True))


def test_calibration_points_within_15_percent():
    """The issue's target is ±10%; reports/flightllm.md lists where we are and why. This
    guards the honest state (±15%) so a regression is noticed; it is not a fit."""
    vhk, u280 = load_preset("flightllm-vhk158"), load_preset("flightllm-u280")
    dec = apply_compression(get_graph("llama2-7b", "decode", context=512))
    pre = apply_compression(get_graph("llama2-7b", "prefill", tokens=128))
    assert simulate_graph(vhk, dec).seconds * 1e3 == pytest.approx(9.810, rel=0.15)
    assert simulate_graph(vhk, pre).seconds * 1e3 == pytest.approx(289.9, rel=0.15)
    assert 1 / simulate_graph(u280, dec).seconds == pytest.approx(55, rel=0.15)

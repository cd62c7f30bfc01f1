"""FlightLLM power model (``sim.flightllm.power``): monotone, the published design's range,
and the cycle simulator's energy comes from it (synthetic LLaMA-shaped graphs, no torch)."""

from __future__ import annotations

import dataclasses

import pytest

from mapping.flightllm.synthetic import llama_like
from models.graph import Phase
from models.workload import Workload
from sim.flightllm.power import (
    CONSTANTS,
    SOURCES,
    DesignPower,
    design_power,
    pass_energy,
)
from sim.flightllm.simulate import simulate
from sim.spec import load_preset

U280 = load_preset("flightllm-u280")
ACT = {"seconds": 0.016, "macs": 3e9, "hbm_bytes": 3.5e9, "mpe_busy": 0.7}


def test_every_constant_names_its_source():
    assert set(SOURCES) == set(CONSTANTS)
    assert all(len(s) > 20 for s in SOURCES.values())


@pytest.mark.parametrize("field", ["lut", "ff", "dsp", "bram", "uram"])
def test_energy_grows_with_every_resource(field):
    d = design_power(U280)
    assert d is not None
    base = pass_energy(d, **ACT)["total"]
    more = dataclasses.replace(d, **{field: getattr(d, field) * 1.5 + 1})
    grown = pass_energy(more, **ACT)["total"]
    # DSPs are charged per MAC done (their count sets no energy by itself): equal, never less
    assert grown > base if field != "dsp" else grown >= base


@pytest.mark.parametrize("key", ["seconds", "macs", "hbm_bytes", "mpe_busy"])
def test_energy_grows_with_every_activity(key):
    d = design_power(U280)
    assert d is not None
    lo = pass_energy(d, **ACT)["total"]
    hi = pass_energy(d, **{**ACT, key: ACT[key] * 1.2})["total"]
    assert hi > lo


def test_hbm_term_is_the_cited_pj_per_bit():
    d = DesignPower(lut=0, ff=0, dsp=0, bram=0, uram=0, clock_hz=225e6, macs_slots_per_cycle=1)
    e = pass_energy(d, seconds=0.0, macs=0.0, hbm_bytes=1e9, mpe_busy=0.0)
    assert e["hbm"] == pytest.approx(1e9 * 8 * 3.9e-12)


def test_published_design_brackets_the_papers_board_power():
    """Not fitted: at the published design, the power between no activity (MPE idle, no HBM
    traffic) and full activity (every MAC slot, MPE always busy, every pseudo-channel at the
    artifact's 0.7 efficiency) must contain the ~45 W FlightLLM measured while decoding."""
    d = design_power(U280)
    assert d is not None
    t = 1.0
    idle = pass_energy(d, seconds=t, macs=0, hbm_bytes=0, mpe_busy=0)["total"] / t
    peak_bytes = U280.hbm_bytes_per_s * U280.hbm_eff_same_channel * t
    full = pass_energy(d, seconds=t, macs=d.macs_slots_per_cycle * d.clock_hz * t,
                       hbm_bytes=peak_bytes, mpe_busy=1.0)["total"] / t
    assert 25 < idle < U280.board_power_w < full < 80


def _workload() -> Workload:
    kw = {"layers": 2, "hidden": 256, "heads": 4, "ffn": 512, "vocab": 1024}
    return Workload("llama-like", 1, 64, 32, llama_like(phase=Phase.PREFILL, tokens=64, **kw),
                    llama_like(context=64, **kw), llama_like(context=95, **kw))


def test_cycle_energy_comes_from_the_power_model():
    r = simulate(U280, _workload())
    assert r.extra["power_model"] == "sim/flightllm/power.py"
    parts = r.extra["decode_energy_breakdown_j"]
    decode_j = r.decode * r.batch / r.tokens_per_j
    assert sum(parts.values()) == pytest.approx(decode_j)
    assert r.energy_j == pytest.approx(decode_j + r.extra["prefill_energy_j"])
    # no longer board power x time: the modelled power depends on the design
    assert r.extra["decode_power_w"] != pytest.approx(U280.board_power_w, rel=1e-3)
    # more weight channels: more buffers and dequantizers, and HBM bytes at a higher rate
    more = simulate(dataclasses.replace(U280, weight_channels=10), _workload())
    assert more.extra["decode_power_w"] > r.extra["decode_power_w"]


@pytest.mark.parametrize("engine", ["shared", "separate"])
def test_speculation_charges_every_pass_and_static_power_once(engine):
    """Draft, pre-draft and verify passes each add their activity; static power is charged
    over the wall time once, also while a separate draft engine overlaps the verify."""
    from sim.flightllm.speculate import simulate_speculative
    from tests.unit.test_flightllm_speculate import _workload as spec_workload

    spec = dataclasses.replace(U280, draft_engine=engine)
    r = simulate_speculative(spec, spec_workload(3, 0.7, 64, 48))
    parts = r.extra["decode_energy_breakdown_j"]
    decode_s = sum(r.extra["split_ms"].values()) / 1e3
    assert parts["static"] == pytest.approx(CONSTANTS["static_w"] * decode_s)
    assert sum(parts.values()) == pytest.approx(r.decode / r.tokens_per_j)
    assert parts["hbm"] > 0 and parts["dsp"] > 0
    assert r.extra["power_model"] == "sim/flightllm/power.py"

"""FlightLLM on the traced LLaMA2-7B: both engines give identical cycles on the real programs,
the calibration points against the issue's ±10% (strict xfail where reports/flightllm.md
reports the gap), and the decode unit balance against the artifact's busy ratios."""

from __future__ import annotations

import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression
from models.cache import get_graph
from reports.flightllm import ART_CONTEXT
from sim.flightllm.engine_fast import run_fast
from sim.flightllm.engine_simpy import run_simpy
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles
from sim.spec import load_preset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("hw", ["flightllm-vhk158", "flightllm-u280"])
def test_engines_agree_on_llama2_7b_decode(hw):
    spec = load_preset(hw)
    g = apply_compression(get_graph("llama2-7b", "decode", context=512))  # 2 key tiles
    p = fill_cycles(generate(g, arch_of(spec)), spec)
    s1, f1 = run_fast(p, spec.hbm_channels)
    s2, f2 = run_simpy(p, spec.hbm_channels)
    for a, b, c, d in zip(s1, s2, f1, f2, strict=True):
        assert (a == b).all() and (c == d).all()


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_replicated_program_equals_generated(phase):
    """Layer replication gives the op-by-op program on the traced model (prefill: per-layer
    masks, so no whole layer repeats; its linears are replayed, replay.py)."""
    import numpy as np

    spec = load_preset("flightllm-vhk158")
    g = apply_compression(get_graph("llama2-7b", "decode", context=512) if phase == "decode"
                          else get_graph("llama2-7b", "prefill", tokens=128))
    a, b = generate(g, arch_of(spec)), generate(g, arch_of(spec), replicate=False)
    assert a.nodes == b.nodes
    assert all(np.array_equal(x, y) for x, y in zip(a.cores, b.cores, strict=True))


_GAP = ("outside the issue's ±10% with no fitted factor: the artifact divides every "
        "instruction time by 3.2 (= 4 cores x 0.8), which shows in full in MM-bound prefill, "
        "and no memory parameter moves a compute-bound pass; reports/flightllm.md, 'Where "
        "the gap comes from'")


def _point(name: str) -> tuple[float, float]:
    """(ours, reference) for a calibration point of shared/papers/flightllm.md."""
    if name == "u280-decode":
        dec = apply_compression(get_graph("llama2-7b", "decode", context=ART_CONTEXT))
        return 1 / simulate_graph(load_preset("flightllm-u280"), dec).seconds, 55.0
    vhk = load_preset("flightllm-vhk158")
    if name == "vhk158-decode":
        dec = apply_compression(get_graph("llama2-7b", "decode", context=ART_CONTEXT))
        return simulate_graph(vhk, dec).seconds * 1e3, 9.810
    pre = apply_compression(get_graph("llama2-7b", "prefill", tokens=128))
    return simulate_graph(vhk, pre).seconds * 1e3, 289.9


@pytest.mark.parametrize("name", [
    "vhk158-decode",
    pytest.param("vhk158-prefill", marks=pytest.mark.xfail(strict=True, reason=_GAP)),
    "u280-decode",   # +5.4% with the U280's HBM refresh and SLR crossings (preset sources)
])
def test_calibration_point_within_10_percent(name):
    """The issue's target (±10%). Strict xfail where reports/flightllm.md reports a gap: a
    change that closes it fails here, so the marker (and the report) get updated."""
    ours, ref = _point(name)
    assert ours == pytest.approx(ref, rel=0.10)


def test_decode_unit_balance_matches_artifact():
    """VHK158 decode at 512 keys: MV-bound like the artifact (MV busy 92.5%, LD 72.5% per weight
    channel, MISC 3.0%); each of ours within 5 points."""
    dec = apply_compression(get_graph("llama2-7b", "decode", context=ART_CONTEXT))
    busy = simulate_graph(load_preset("flightllm-vhk158"), dec).busy
    for unit, art in (("MV", 0.925), ("LD", 0.725), ("MISC", 0.030)):
        assert abs(busy[unit] - art) <= 0.05, (unit, busy[unit], art)

"""FlightLLM memory-system physics from the presets: HBM refresh and SLR crossings.

Both engines must agree with them on, the periodic extrapolation must stay exact (the refresh
is charged per transfer, not at absolute instants), and each only ever adds time.
"""

from __future__ import annotations

import dataclasses

import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression, config_from_dict
from mapping.flightllm.isa import Queue
from mapping.flightllm.synthetic import llama_like
from models.graph import Phase
from sim.flightllm.hbm import refresh_stretch, slr_hops, transfer_cycles
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles, sys_cycles
from sim.spec import SpecError, load_preset, validate
from tests.unit.test_flightllm_sim import engines_agree

U280 = load_preset("flightllm-u280")
NO_PHYS = dataclasses.replace(U280, hbm_refresh_interval_ns=0, hbm_refresh_ns=0, hbm_slr=-1,
                              slr_crossing_cycles=0)
CFG = config_from_dict({"linear": [{"match": ["q_proj", "k_proj"], "keep": 0.7}]})


def _graph(phase=Phase.DECODE, layers=2):
    return apply_compression(llama_like(layers=layers, phase=phase, hidden=384, heads=6,
                                        ffn=1024), CFG)


def test_preset_values_are_the_cited_ones():
    # PG276 / gem5 HBM_2000_4H_1x64: tREFI 3.9 us, tRFC 260 ns; PG373: 3 cycles a boundary
    assert (U280.hbm_refresh_interval_ns, U280.hbm_refresh_ns) == (3900, 260)
    assert (U280.hbm_slr, U280.slr_crossing_cycles) == (0, 3)
    vhk = load_preset("flightllm-vhk158")
    # JESD235C tRFC at 16 Gb per channel (32 GB over 2 stacks x 8 channels); no SLR data
    assert (vhk.hbm_refresh_interval_ns, vhk.hbm_refresh_ns) == (3900, 450)
    assert (vhk.hbm_slr, vhk.slr_crossing_cycles) == (-1, 0)


def test_refresh_is_the_pg276_throughput_loss():
    assert refresh_stretch(1000, refresh_interval_ns=0, refresh_ns=0) == 1000
    w = 3_640_000  # a long busy stretch: data moves tREFI - tRFC of every tREFI
    assert refresh_stretch(w, refresh_interval_ns=3900, refresh_ns=260) == 3_900_000
    plain = transfer_cycles(65536, clock_hz=225e6, channel_bytes_per_s=14.375e9, eff=0.7,
                            latency_cycles=24)
    refreshed = transfer_cycles(65536, clock_hz=225e6, channel_bytes_per_s=14.375e9, eff=0.7,
                                latency_cycles=24, refresh_interval_ns=3900, refresh_ns=260)
    assert plain < refreshed <= plain * 3900 / 3640 + 1


def test_slr_hops_and_barrier():
    assert [slr_hops(c, 0) for c in range(3)] == [0, 1, 2]
    assert slr_hops(2, -1) == 0
    assert sys_cycles(U280) == 1 + 2 * 2 * 3   # farthest core: 2 boundaries, there and back
    assert sys_cycles(NO_PHYS) == 1


def test_far_cores_wait_longer_for_the_same_load():
    p = fill_cycles(generate(_graph(), arch_of(U280)), U280)
    ld = [a[(a["queue"] == Queue.LD) & (a["cross"] == 0)] for a in p.cores]
    small = [int(a["cycles"][a["nbytes"] == a["nbytes"].min()][0]) for a in ld]
    near = fill_cycles(generate(_graph(), arch_of(NO_PHYS)), NO_PHYS)
    base = int(near.cores[2]["cycles"][(near.cores[2]["queue"] == Queue.LD)
                                       & (near.cores[2]["cross"] == 0)].min())
    assert small[0] < small[2] and base < small[2]


def test_bad_refresh_is_refused():
    with pytest.raises(SpecError, match="tRFC"):
        validate(dataclasses.replace(U280, hbm_refresh_ns=4000))
    with pytest.raises(SpecError, match="hbm_slr"):
        validate(dataclasses.replace(U280, hbm_slr=3))


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_engines_agree_with_refresh_and_slr(phase):
    assert engines_agree(_graph(phase), U280)


def test_periodic_extrapolation_stays_exact():
    g = _graph(layers=6)
    whole = simulate_graph(U280, g)
    fast = simulate_graph(U280, g, periodic=True)
    assert fast.program is None  # extrapolated, not simulated whole
    assert fast.cycles == whole.cycles and fast.counts == whole.counts


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_physics_only_adds_time(phase):
    g = _graph(phase)
    with_phys, without = simulate_graph(U280, g).cycles, simulate_graph(NO_PHYS, g).cycles
    assert with_phys >= without
    longer = dataclasses.replace(U280, hbm_refresh_ns=520)
    assert simulate_graph(longer, g).cycles >= with_phys

"""FlightLLM timing model: both engines agree, bounds, monotonicity, determinism, units."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression, config_from_dict
from mapping.flightllm.isa import _FIELDS, FLAG_SPARSE, INSTR, WORDS, Program, Queue, decode, encode
from mapping.flightllm.synthetic import attention_graph, linear_graph, llama_like
from models.errors import UserError
from models.graph import Phase
from sim.flightllm.engine_fast import DeadlockError, run_fast
from sim.flightllm.engine_simpy import run_simpy
from sim.flightllm.mpe import mm_cycles, mv_cycles
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles
from sim.roofline import graph_bound_s
from sim.spec import load_preset, validate

SPEC = load_preset("flightllm-vhk158")
CFG = config_from_dict({"attention": {"prefill": "causal"},
                        "linear": [{"match": ["q_proj", "k_proj"], "keep": 0.7}]})


def _graph(phase=Phase.DECODE, **kw):
    return apply_compression(llama_like(layers=2, phase=phase, hidden=512, heads=8, ffn=1024,
                                        **kw), CFG)


def _random_program(rng: random.Random, cores: int = 2, n: int = 60) -> Program:
    """Random streams whose tokens always match: every release has a later waiting consumer."""
    from mapping.flightllm.builder import Builder

    b = Builder(cores)
    last: list[list[int]] = [[] for _ in range(cores)]
    for _ in range(n):
        q = rng.choice([Queue.LD, Queue.ST, Queue.MM, Queue.MV, Queue.MISC, Queue.SYS])
        if q == Queue.SYS:
            for c in range(cores):
                last[c].append(b.emit(c, q, after=tuple(rng.sample(last[c], min(2, len(last[c]))))))
            continue
        c = rng.randrange(cores)
        after = tuple(rng.sample(last[c], min(rng.randint(0, 2), len(last[c]))))
        last[c].append(b.emit(c, q, after=after, channel=rng.randrange(4) + 4 * c,
                              nbytes=rng.randint(1, 9000), rows=rng.randint(1, 256),
                              cols=rng.choice([16, 64, 512]), k=16 * rng.randint(1, 64),
                              n=rng.choice([2, 4, 8, 16]), op=rng.choice([0, 1, 2, 3, 4, 5])))
    return fill_cycles(b.program({}), SPEC)


@pytest.mark.parametrize("seed", range(5))
def test_engines_agree_on_random_programs(seed):
    p = _random_program(random.Random(seed))
    s1, f1 = run_fast(p, SPEC.hbm_channels)
    s2, f2 = run_simpy(p, SPEC.hbm_channels)
    for a, b, c, d in zip(s1, s2, f1, f2, strict=True):
        assert (a == b).all() and (c == d).all()


def engines_agree(g, spec) -> bool:
    """The numba engine and the SimPy reference finish every instruction of ``g``'s program
    on ``spec`` at the same cycle."""
    p = fill_cycles(generate(g, arch_of(spec)), spec)
    f1 = run_fast(p, spec.hbm_channels)[1]
    f2 = run_simpy(p, spec.hbm_channels)[1]
    return all((a == b).all() for a, b in zip(f1, f2, strict=True))


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_engines_agree_on_llama_like(phase):
    assert engines_agree(_graph(phase), SPEC)


def test_engines_agree_on_long_prefill():
    """Row tiles, K-chunk re-loads (a 128 KB A buffer), output chunks, attention groups with
    several K/V chunks (a 64 KB B buffer: 8 key blocks of 64 x 64 per chunk)."""
    spec = validate(dataclasses.replace(SPEC, a_buffer_bytes=128 * 1024,
                                        b_buffer_bytes=64 * 1024))
    p = fill_cycles(generate(_graph(Phase.PREFILL, tokens=640), arch_of(spec)), spec)
    assert len(p.cores[0]) > 3000
    f1 = run_fast(p, spec.hbm_channels)[1]
    f2 = run_simpy(p, spec.hbm_channels)[1]
    assert all((a == b).all() for a, b in zip(f1, f2, strict=True))


def test_deadlock_is_reported():
    arr = np.zeros(1, dtype=INSTR)
    arr["queue"], arr["wait"] = Queue.MV, 1 << Queue.LD  # waits for an LD that never comes
    with pytest.raises(DeadlockError, match="deadlocks"):
        run_fast(Program([arr]), 32)


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_not_faster_than_roofline(phase):
    g = _graph(phase)
    assert simulate_graph(SPEC, g).seconds >= graph_bound_s(SPEC, g)


@pytest.mark.parametrize(("field", "factor"), [("hbm_channel_bytes_per_s", 2),
                                               ("mv_macs_per_cycle", 2),
                                               ("mm_macs_per_cycle", 2)])
@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_more_resources_never_slower(field, factor, phase):
    g = _graph(phase)
    kw = {field: getattr(SPEC, field) * factor}
    if field == "hbm_channel_bytes_per_s":
        kw["hbm_bytes_per_s"] = SPEC.hbm_bytes_per_s * factor
    faster = validate(dataclasses.replace(SPEC, **kw))
    assert simulate_graph(faster, g).cycles <= simulate_graph(SPEC, g).cycles


def test_deterministic():
    a, b = simulate_graph(SPEC, _graph()), simulate_graph(SPEC, _graph())
    assert a.cycles == b.cycles and a.counts == b.counts


def test_sparsity_speeds_up_mpe():
    assert mv_cycles(512, 4096, 8, 1024) < mv_cycles(512, 4096, 16, 1024)
    assert mv_cycles(512, 4096, 2, 1024) < mv_cycles(512, 4096, 4, 1024)
    # dense MV: 512 columns on 64 chains = 8 passes of 256 beats, plus the chain's fill
    assert 8 * 256 < mv_cycles(512, 4096, 16, 1024) < 8 * 256 + 16
    # the A buffer's MV read width (512 B/cycle on 8 channels): INT4 dense is not bound by
    # it, INT8 (or INT4 + 4-bit index) takes twice the chain's passes
    dense = mv_cycles(512, 4096, 16, 1024)
    assert mv_cycles(512, 4096, 16, 1024, 512 * 4096 // 2, 512) == dense
    assert mv_cycles(512, 4096, 16, 1024, 512 * 4096, 512) == dense + 8 * 256
    # MM: 128 tokens x 16 columns = 64 token pairs x 2 chains, 8 passes of K/16 beats
    assert 8 * 256 < mm_cycles(128, 16, 4096, 16, 4096, 128) < 8 * 256 + 16


@pytest.mark.parametrize("macs", [512, 1024, 3072, 4096, 8192])
@pytest.mark.parametrize("mm_rows", [32, 128, 256, 512])
@pytest.mark.parametrize("n", [2, 16])
def test_mm_never_beats_its_macs(macs, mm_rows, n):
    """A tile's rows fit the chains or take several row passes (a 256-row tile on 32 chains
    once ran as if 128 token pairs fitted them)."""
    for rows, cols, k in [(mm_rows, 16, 256), (mm_rows, 64, 4096), (37, 48, 1024)]:
        assert mm_cycles(rows, cols, k, n, macs, mm_rows) >= rows * cols * k * n / 16 / macs


def test_decode_reads_back_what_encode_wrote():
    """Every encoded field of every queue, flags and tokens included; prefill has MM, decode
    MV (both with N:16 sparse tiles)."""
    for phase in (Phase.DECODE, Phase.PREFILL):
        for arr in generate(_graph(phase), arch_of(SPEC)).cores:
            back = decode(encode(arr))
            assert len(back) == len(arr)
            for f in ("queue", "op", "wait", "release", "cross", "flags"):
                assert (back[f] == arr[f]).all()
            for q, fields in _FIELDS.items():
                sel = arr["queue"] == q
                for f in fields:
                    assert (back[f][sel] == arr[f][sel]).all(), (q, f)
            assert (arr["flags"] & FLAG_SPARSE).any()
    with pytest.raises(ValueError, match="truncated"):
        decode(encode(arr)[:-1])


def test_encoding_word_counts():
    p = generate(_graph(), arch_of(SPEC))
    words = encode(p.cores[0])
    expect = sum(WORDS[Queue(q)] for q in p.cores[0]["queue"])
    assert len(words) == expect
    # word 0: queue[3] | op[5] | wait[6] | release[6] | cross[1] | MM/MV flags[3]
    arr = p.cores[0]
    starts = np.cumsum([0] + [WORDS[Queue(q)] for q in arr["queue"][:-1]])
    first = words[starts]
    assert ((first & 7) == arr["queue"]).all()
    assert ((first >> 21 & 7) == arr["flags"]).all() and arr["flags"].any()


@pytest.mark.parametrize("hw", ["flightllm-vhk158", "flightllm-u280"])
@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_report_floor_is_a_bound(hw, phase):
    """The report's bottleneck floor (busiest core's padded MPE work at peak, or the bytes
    over the load channels) never exceeds the simulated time, and names the right unit."""
    from reports.flightllm import _floor

    spec = load_preset(hw)
    g = llama_like(layers=2, phase=phase, hidden=1024, heads=8, ffn=2752, context=300,
                   tokens=128 if phase is Phase.PREFILL else 1)
    r = simulate_graph(spec, apply_compression(g, CFG))
    what, floor = _floor(spec, r)
    assert 0 < floor <= r.seconds
    assert what.split(":")[0] in (("MM",) if phase is Phase.PREFILL else ("MV", "LD"))


_SPECS = (SPEC, load_preset("flightllm-u280"))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 512).map(lambda x: 16 * x), st.integers(1, 512).map(lambda x: 16 * x),
       st.sampled_from([1, 1, 37, 128, 300]), st.sampled_from([None, 0.125, 0.25, 0.5, 0.7]),
       st.sampled_from([2, 3, 4, 8]), st.booleans(), st.sampled_from([0, 1]))
@example(16, 16, 1, None, 4, False, 0)   # fewer 16-column blocks than cores: idle cores
def test_every_linear_at_least_its_roofline(k, n, tokens, keep, bits, bias, hw):
    """One linear of any shape, N:16 keep, weight bits and bias, decode or prefill: the cycles
    are never below its roofline (MACs at the MPE peak, weight bytes at the HBM peak)."""
    spec = _SPECS[hw]
    rule = {"match": ["up_proj"], "bits": bits} | ({"keep": keep} if keep else {})
    g = apply_compression(linear_graph(k, n, tokens, bias), config_from_dict({"linear": [rule]}))
    assert simulate_graph(spec, g).seconds >= graph_bound_s(spec, g) > 0


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([4, 8, 12]), st.sampled_from([64, 128]), st.sampled_from([1, 100, 256]),
       st.integers(0, 1500), st.sampled_from([0, 1]))
def test_every_attention_at_least_its_roofline(heads, d, tokens, context, hw):
    """Decode attention over any context and prefill attention of any length (causal blocks):
    never below its roofline (MACs at peak, K/V bytes at the HBM peak)."""
    spec = _SPECS[hw]
    g = apply_compression(attention_graph(heads, d, tokens, context if tokens == 1 else 0),
                          config_from_dict({"attention": {"prefill": "causal"}}))
    assert simulate_graph(spec, g).seconds >= graph_bound_s(spec, g) > 0


_ARCH = st.fixed_dictionaries({
    "cores": st.sampled_from([1, 2, 3, 4, 6]), "hbm_channels": st.sampled_from([8, 16, 32]),
    "weight_channels": st.sampled_from([1, 2, 8]),
    "a_buffer_bytes": st.sampled_from([128 << 10, 1 << 20]),
    "b_buffer_bytes": st.sampled_from([32 << 10, 128 << 10]),
    "mv_tile_cols": st.sampled_from([128, 512]), "mm_rows": st.sampled_from([32, 128, 256]),
    "mm_macs_per_cycle": st.sampled_from([1024, 4096]),
    "mv_macs_per_cycle": st.sampled_from([256, 1024])})


@settings(max_examples=15, deadline=None)
@given(_ARCH, st.sampled_from([Phase.DECODE, Phase.PREFILL]), st.sampled_from([1, 200]))
@example({"cores": 3, "hbm_channels": 16, "weight_channels": 1, "a_buffer_bytes": 1 << 20,
          "b_buffer_bytes": 128 << 10, "mv_tile_cols": 512, "mm_rows": 256,
          "mm_macs_per_cycle": 1024, "mv_macs_per_cycle": 256}, Phase.PREFILL, 200)
def test_any_core_arrangement_at_least_its_roofline(arch, phase, length):
    """Other core counts, channels, buffers, tile shapes and MPE sizes than the presets' (what
    sweeps vary): a run is a clean error or never below the roofline, and both engines agree.
    The example once ran a 256-row MM tile on 32 chains 4x faster than its MACs."""
    kw = arch | {"hbm_bytes_per_s": arch["hbm_channels"] * SPEC.hbm_channel_bytes_per_s,
                 "dsp_count": 100_000}
    spec = validate(dataclasses.replace(SPEC, **kw))
    g = _graph(phase, **({"tokens": length} if phase is Phase.PREFILL else {"context": length}))
    try:
        p = fill_cycles(generate(g, arch_of(spec)), spec)
    except UserError as e:   # K/V or a weight tile beyond a small buffer: named, not a crash
        assert "exceed" in str(e) or "does not fit" in str(e)
        return
    assert simulate_graph(spec, g).seconds >= graph_bound_s(spec, g) > 0
    f1, f2 = run_fast(p, spec.hbm_channels)[1], run_simpy(p, spec.hbm_channels)[1]
    assert all((a == b).all() for a, b in zip(f1, f2, strict=True))

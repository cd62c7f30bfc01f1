"""HADES simulator: ≥ roofline, verification-cost knee, spec checks, energy, trace, CLI."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcosim.cli import main
from mapping.acceptance import IIDAcceptance
from mapping.speculation import SpecConfig
from models.graph import Phase, interpolate
from models.workload import Workload
from sim.hades.affine import AffineGraph
from sim.hades.energy import ENERGY_TABLE, area_mm2, energy_j
from sim.hades.simulate import simulate_cycle, simulate_speculative, speculative_roofline
from sim.hades.units import pass_cost
from sim.perfetto import TraceWriter
from sim.registry import fidelities, run
from sim.roofline import graph_bound_s
from sim.serving.passes import ATTN_KINDS
from sim.spec import SpecError, load_preset, validate
from tests.unit.graphs import random_graph
from tests.unit.hades_graphs import decoder, spec_workload

HADES = load_preset("hades")
LPDDR = load_preset("hades-lpddr")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 64, 256]), st.sampled_from([16, 128]),
       st.floats(0.2, 1.0), st.booleans())
def test_pass_is_never_faster_than_the_roofline(seed, rows, cols, eff, separate):
    spec = dataclasses.replace(HADES, pe_rows=rows, pe_cols=cols, offchip_efficiency=eff,
                               sram_bytes_per_cycle=max(64, 2 * cols))
    g = random_graph(random.Random(seed))
    assert pass_cost(spec, AffineGraph.from_graphs(g), 0).time_s >= \
        graph_bound_s(spec, g) * (1 - 1e-12)


@pytest.mark.parametrize("tokens", [1, 5, 61])
def test_decoder_passes_dominate_the_roofline_and_interpolate_exactly(tokens):
    g0 = decoder(context=64, tokens=tokens, phase=Phase.VERIFY)
    g1 = decoder(context=640, tokens=tokens, phase=Phase.VERIFY)
    ag = AffineGraph.from_graphs(g0, g1)
    for ctx in (64, 300, 640):
        g = interpolate(g0, g1, ctx) if ctx not in (64, 640) else (g0 if ctx == 64 else g1)
        for spec in (HADES, LPDDR, load_preset("gpu-a100")):
            assert ag.roofline_s(spec, ctx) == pytest.approx(graph_bound_s(spec, g), rel=1e-12)
        assert pass_cost(HADES, ag, ctx).time_s >= graph_bound_s(HADES, g)


def test_verification_knee_matches_the_roofline():
    """n-token verify ≈ one decode step while memory-bound; grows past the ridge point."""
    def times(fn):
        return {n: fn(decoder(hidden=4096, layers=1, context=512, tokens=n,
                              phase=Phase.VERIFY)) for n in (1, 2, 4, 8, 16, 32, 64, 128,
                                                             256, 512, 1024)}
    sim = times(lambda g: pass_cost(HADES, AffineGraph.from_graphs(g), 512).time_s)
    roof = times(lambda g: graph_bound_s(HADES, g))

    def knee(t):   # first n whose pass costs 25% more than a decode step
        return min(n for n in t if t[n] > 1.25 * t[1])

    ridge = HADES.peak_ops_per_s("float16") / HADES.mem_bytes_per_s   # FLOP/B = tokens
    assert sim[8] == pytest.approx(sim[1], rel=0.05)          # memory-bound: nearly free
    assert sim[1024] > 4 * sim[1]                             # compute-bound: real cost
    assert knee(roof) / 2 <= knee(sim) <= knee(roof)          # efficiency < 1 moves it left
    assert ridge / 4 <= knee(sim) <= 2 * ridge


def test_speculative_run_dominates_its_verify_roofline():
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.8), seed=0)
    r = simulate_speculative(HADES, spec_workload(cfg, decode=200))
    assert r.extra["split_ms"]["verify"] >= r.extra["verify_bound_ms"]
    assert 0 < r.extra["utilisation"]["pe_array"] <= 1 + 1e-9
    assert r.energy_j > 0 and r.extra["energy_breakdown_j"]["offchip"] > 0


def test_registry_runs_hades_cycle_and_keeps_roofline_for_plain_workloads():
    assert "cycle" in fidelities("hades") and "event" in fidelities("hades")
    assert "event" not in fidelities("gpu")
    first = decoder(context=64)
    w = Workload("toy", 1, 64, 32, decoder(context=0, tokens=64, phase=Phase.PREFILL), first,
                 decoder(context=95))
    cyc, roof = run(HADES, w, "cycle"), run(HADES, w, "roofline")
    assert cyc.fidelity == "cycle" and cyc.decode_tokens_per_s <= roof.decode_tokens_per_s
    assert simulate_cycle(HADES, w).to_dict() == cyc.to_dict()


def test_cycle_breakdown_splits_each_phase_by_op_kind_and_sums_to_it():
    """Serving shares a pass's dense ops between decodes and prompts from this split
    (``sim.serving.passes``): it must add up to the phase's time, and its attention part
    must grow with the context while the linear layers stay put."""
    w = Workload("toy", 1, 64, 32, decoder(context=0, tokens=64, phase=Phase.PREFILL),
                 decoder(context=64), decoder(context=95))
    r = run(HADES, w, "cycle")
    assert sum(r.breakdown_ms["prefill"].values()) == pytest.approx(r.prefill_ms, rel=1e-12)
    decode_ms = r.decode_ms_per_token * r.decode
    assert sum(r.breakdown_ms["decode"].values()) == pytest.approx(decode_ms, rel=1e-12)
    assert {"linear", "sampling"} <= set(r.breakdown_ms["decode"])
    longer = run(HADES, Workload("toy", 1, 1064, 32, w.prefill, decoder(context=1064),
                                 decoder(context=1095)), "cycle")
    assert longer.breakdown_ms["decode"]["linear"] == pytest.approx(
        r.breakdown_ms["decode"]["linear"], rel=1e-9)
    attn = [sum(v for k, v in x.breakdown_ms["decode"].items() if k in ATTN_KINDS)
            for x in (r, longer)]
    assert attn[1] > attn[0] > 0


def test_roofline_schedule_on_gpu_compares_with_and_without_speculation():
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.8), seed=0)
    r = speculative_roofline(load_preset("gpu-a100"), spec_workload(cfg, decode=200))
    assert r.extra["speedup"] > 1 and r.extra["baseline_tokens_per_s"] > 0
    slow = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.0), seed=0)
    r0 = speculative_roofline(load_preset("gpu-a100"), spec_workload(slow, decode=200))
    assert r0.extra["speedup"] < 1                 # α = 0: drafting is pure overhead


def test_presets_load_and_bad_knobs_are_rejected():
    assert HADES.kind == "hades" and HADES.draft_engine == "separate"
    assert LPDDR.mem_bytes_per_s < HADES.mem_bytes_per_s
    for field, bad in (("draft_engine", "both"), ("verify_mode", "fuzzy"),
                       ("kv_tree_mode", "copy")):
        with pytest.raises(SpecError, match=field):
            validate(dataclasses.replace(HADES, **{field: bad}))
    with pytest.raises(SpecError, match="draft engine has more MACs"):
        validate(dataclasses.replace(HADES, draft_pe_rows=512, draft_pe_cols=512))


def test_energy_table_cites_every_number_and_scales_with_counts():
    assert all(e.source for e in ENERGY_TABLE.values())
    one = energy_j(HADES, {"macs": 1e12, "offchip_bytes": 1e9}, 0.0)
    two = energy_j(HADES, {"macs": 2e12, "offchip_bytes": 2e9}, 0.0)
    assert two["total"] == pytest.approx(2 * one["total"])
    assert one["offchip"] == pytest.approx(1e9 * 8 * HADES.offchip_pj_per_bit * 1e-12)
    assert area_mm2(HADES)["total"] > area_mm2(dataclasses.replace(HADES, draft_sram_bytes=0))[
        "total"]
    assert HADES.power_w > HADES.static_power_w


def test_perfetto_trace_has_spans_per_unit(tmp_path):
    tw = TraceWriter("test")
    cfg = SpecConfig(gamma=3, acceptance=IIDAcceptance(0.7), seed=0)
    simulate_speculative(HADES, spec_workload(cfg, decode=60), tw)
    data = json.loads(tw.write(tmp_path / "t.json").read_text())
    spans = [e for e in data["traceEvents"] if e["ph"] == "X"]
    names = {e["args"]["name"] for e in data["traceEvents"] if e["name"] == "thread_name"}
    assert {"pe_array", "draft_engine", "sfu_verifier", "rollback"} <= names
    assert all(e["dur"] >= 0 for e in spans) and len(spans) > 60


@pytest.mark.parametrize(("argv", "msg"), [
    (["--gamma", "0"], "gamma"),
    (["--alpha", "1.5"], "[0, 1]"),
    (["--alpha", "x"], "--alpha"),
    (["--tree=1,0"], "cycle"),
    (["--tree=-1,7"], "orphan"),
    (["--draft", "gpt2"], "vocabulary"),
    (["--alpha", "0.8", "--acceptance", "traces/run.jsonl"], "either"),
])
def test_cli_bad_speculation_inputs_exit_2(argv, msg, capsys):
    code = main(["simulate", "--hw", "hades", "--model", "llama2-7b", *argv])
    assert code == 2
    assert msg in capsys.readouterr().err


def test_verification_unit_cycles_come_from_the_rtl_timing_function():
    from sim.blocks.verifier import verifier_timing
    from sim.hades.verifier import verify_cycles

    sample = dataclasses.replace(HADES, verify_mode="sample")
    t4, t16 = verifier_timing("sample", 4, vocab=16), verifier_timing("sample", 16, vocab=16)
    assert verify_cycles(sample, 4) == t4.beats_per_request + t4.latency_cycles
    assert verify_cycles(sample, 20) == (t16.beats_per_request + t16.latency_cycles
                                         + t4.beats_per_request + t4.latency_cycles)
    g = verifier_timing("greedy", 4)
    assert verify_cycles(HADES, 4) == g.beats_per_request + g.latency_cycles
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.8), seed=0)
    w = spec_workload(cfg, decode=100)
    assert simulate_speculative(sample, w).extra["split_ms"]["sampling"] > \
        simulate_speculative(HADES, w).extra["split_ms"]["sampling"]

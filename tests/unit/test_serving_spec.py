"""Speculative decoding while serving (sim/serving/speculative.py), on synthetic graphs.

An iteration's cost is checked against the simulator's own whole passes (a verify pass of
γ+1 tokens per sequence plus γ draft decode passes), and the schedule against what α = 0
and α = 1 must give.
"""

from __future__ import annotations

import math

import pytest

from mapping.acceptance import IIDAcceptance
from models.errors import UserError
from models.graph import Phase
from models.workload import Workload
from models.zoo import get_model
from sim.registry import run
from sim.serving.device import Speculation, serve_device
from sim.serving.passes import build_table
from sim.serving.requests import Request
from sim.serving.scheduler import SchedulerConfig
from sim.serving.speculative import SpecServing, verify_table
from sim.spec import load_preset
from tests.unit.serving_graphs import SOURCES, toy_pass

SPEC = load_preset("hades")
ENTRY = get_model("llama2-7b")    # names the model; its graphs here are the toy ones
DRAFT = get_model("llama-68m")
BASE = SchedulerConfig(token_budget=256, max_batch=16, kv_budget_tokens=100_000)
GAMMA = 4


DRAFT_H = 64   # the toy draft: 1/8 of the target's width, 1/64 of its weights


def _draft_sources():
    return (lambda t: toy_pass(1, t, 0, Phase.PREFILL, DRAFT_H),
            lambda b, c: toy_pass(b, 1, c, Phase.DECODE, DRAFT_H))


def _spec(alpha: float, gamma: int = GAMMA, seed: int = 0,
          adaptive: bool = False) -> Speculation:
    return Speculation(DRAFT, gamma, IIDAcceptance(alpha), seed,
                       sources=(*_draft_sources(), _verify), adaptive=adaptive)


def _verify(rows: int):
    return lambda b, c: toy_pass(b, rows, c, Phase.VERIFY)


def _serve(reqs, speculation=None, cfg=BASE, fidelity="roofline", spec=SPEC):
    return serve_device(spec, ENTRY, reqs, cfg, {"ttft": 1.0, "tpot": 0.05}, fidelity,
                        SOURCES, speculation)


def _whole(g, batch: int, context: int, fidelity: str = "roofline") -> float:
    """Seconds of one whole pass of ``g`` as the simulator times it."""
    res = run(SPEC, Workload(g.model, batch, context, 1, None, g, g), fidelity)
    return res.decode_ms_per_token / 1e3


# the table interpolates attention between grid contexts; it is piecewise in the context
# where an op crosses from memory- to compute-bound (the toy's verify QK sits near HADES's
# ridge) and at cycle level also by tile rounding
TOLERANCE = {"roofline": 0.01, "cycle": 0.01}


@pytest.mark.parametrize("fidelity", sorted(TOLERANCE))
@pytest.mark.parametrize("batch, context", [(1, 40), (3, 300), (16, 700), (48, 200)])
def test_iteration_is_the_verify_pass_plus_gamma_draft_passes(fidelity, batch, context):
    """48 sequences x 5 rows = 240 tokens: the verify's dense ops are compute-bound there,
    so counting one row per sequence would be far off."""
    kw = {"max_tokens": 256, "max_batch": 48, "max_context": 764}
    target = build_table(SPEC, fidelity, *SOURCES, **kw)
    verify = _verify(GAMMA + 1)
    s = SpecServing(GAMMA, IIDAcceptance(0.8), "toy",
                    build_table(SPEC, fidelity, *_draft_sources(), **kw),
                    verify_table(target, SPEC, fidelity, verify, GAMMA))
    got, _ = s.iteration(batch, float(batch * context), [])
    want = _whole(verify(batch, context), batch, context, fidelity)
    want += sum(_whole(toy_pass(batch, 1, context + j, Phase.DECODE, DRAFT_H), batch,
                       context + j, fidelity) for j in range(GAMMA))
    assert got == pytest.approx(want, rel=TOLERANCE[fidelity])


def test_alpha_one_emits_gamma_plus_one_tokens_per_round():
    out = 41
    d = _serve([Request(0, 0.0, 32, out)], _spec(1.0))
    rounds = math.ceil((out - 1) / (GAMMA + 1))
    assert len(d.run.iter_s) == 1 + rounds               # the prefill, then the rounds
    s = d.metrics["speculation"]
    assert s["sequence_rounds"] == rounds and s["mean_accepted"] == pytest.approx(GAMMA)
    assert s["tokens_per_round"] == pytest.approx((out - 1) / rounds)
    assert d.run.records[0].generated == out


def test_alpha_zero_keeps_the_plain_schedule_and_only_adds_time():
    reqs = [Request(i, 0.05 * i, 20 + 7 * i, 30 + 11 * i) for i in range(12)]
    plain, spec = _serve(reqs), _serve(reqs, _spec(0.0))
    assert spec.metrics["speculation"]["tokens_per_round"] == 1.0
    assert len(spec.run.iter_s) == len(plain.run.iter_s)
    assert (spec.run.iter_s > plain.run.iter_s).all()     # drafts and wider verifies cost
    assert spec.metrics["tpot_s"]["p50"] > plain.metrics["tpot_s"]["p50"]


def test_acceptance_follows_alpha_and_speeds_up_decoding():
    reqs = [Request(i, 0.02 * i, 40, 400) for i in range(16)]
    plain, spec = _serve(reqs), _serve(reqs, _spec(0.6, gamma=3))
    expected = 0.6 + 0.6 ** 2 + 0.6 ** 3                 # E[A] for a chain of 3
    assert spec.metrics["speculation"]["mean_accepted"] == pytest.approx(expected, rel=0.05)
    assert spec.metrics["tpot_s"]["p50"] < 0.7 * plain.metrics["tpot_s"]["p50"]


def test_seeded_runs_repeat_and_seeds_differ():
    reqs = [Request(i, 0.03 * i, 30, 120) for i in range(10)]
    a, b = _serve(reqs, _spec(0.7, seed=1)), _serve(reqs, _spec(0.7, seed=1))
    c = _serve(reqs, _spec(0.7, seed=2))
    assert a.metrics == b.metrics and (a.run.iter_s == b.run.iter_s).all()
    assert a.metrics["speculation"] != c.metrics["speculation"]


def test_kv_reservation_counts_the_verify_rows():
    req = [Request(0, 0.0, 60, 40)]
    tight = SchedulerConfig(token_budget=256, max_batch=4, kv_budget_tokens=100)
    assert _serve(req, cfg=tight).run.records[0].generated == 40
    with pytest.raises(UserError, match=f"needs {100 + GAMMA} KV tokens"):
        _serve(req, _spec(0.8), cfg=tight)


def test_draft_weights_and_cache_share_the_memory():
    from sim.serving.device import kv_budget_tokens

    d = _serve([Request(0, 0.0, 30, 30)], _spec(0.8), cfg=SchedulerConfig(256, 16))
    plain = _serve([Request(0, 0.0, 30, 30)], cfg=SchedulerConfig(256, 16))
    assert d.run.kv_budget < plain.run.kv_budget == kv_budget_tokens(SPEC, plain.table)


def test_the_verify_tokens_must_fit_the_budget():
    with pytest.raises(UserError, match=r"--max-batch 64 x \(gamma \+ 1 = 5\)"):
        _serve([Request(0, 0.0, 30, 30)], _spec(0.8), cfg=SchedulerConfig(256, 64, 10_000))


def test_flightllm_cycle_serves_speculation_at_the_roofline_or_refuses():
    u280 = load_preset("flightllm-u280")
    with pytest.raises(UserError, match="separate whole passes; use --fidelity roofline"):
        _serve([Request(0, 0.0, 30, 30)], _spec(0.8), fidelity="cycle", spec=u280)
    d = _serve([Request(0, 0.0, 30, 30)], _spec(0.8), fidelity=None, spec=u280)
    assert d.fidelity == "roofline" and "runs at the roofline" in d.metrics["notes"][0]
    assert "spec γ4 α0.8 llama-68m" in d.metrics["storage"]


def test_draft_engine_pass_is_the_engine_draft_step():
    """A draft table's pass on HADES's separate engine is what the speculation engine charges
    for one draft step (``sim.hades.engine._draft_step``): the pass on the draft array with
    the weights in its SRAM, plus one sampling pass per sequence."""
    from sim.hades.affine import AffineGraph
    from sim.hades.simulate import simulate_on_draft_engine
    from sim.hades.units import pass_cost, sampling_cycles

    g = toy_pass(4, 1, 100, Phase.DECODE, DRAFT_H)
    r = simulate_on_draft_engine(SPEC, Workload("toy", 4, 100, 1, None, g, g))
    step = pass_cost(SPEC, AffineGraph.from_graphs(g), 100, draft=True, weights_on_chip=True)
    samp = sampling_cycles(SPEC, 4 * DRAFT_H, 1) * 4 / SPEC.clock_hz   # the toy's last linear
    assert r.decode_ms_per_token / 1e3 == pytest.approx(step.time_s + samp, rel=1e-12)
    main = run(SPEC, Workload("toy", 4, 100, 1, None, g, g), "cycle")
    assert r.decode_ms_per_token != pytest.approx(main.decode_ms_per_token, rel=1e-3)


def test_hades_cycle_drafts_on_its_separate_engine_and_shared_on_the_main_array():
    import dataclasses

    reqs = [Request(i, 0.02 * i, 40, 200) for i in range(16)]
    sep = _serve(reqs, _spec(0.8), fidelity="cycle")
    shared = _serve(reqs, _spec(0.8), fidelity="cycle",
                    spec=dataclasses.replace(SPEC, draft_engine="shared"))
    assert "separate draft engine (64x64)" in sep.metrics["notes"][0]
    assert "notes" not in shared.metrics
    assert sep.metrics["speculation"]["draft_s"] != pytest.approx(
        shared.metrics["speculation"]["draft_s"], rel=1e-3)


def test_report_line_says_what_the_speculation_drew():
    from reports.serve import speculation_line

    line = speculation_line(_serve([Request(0, 0.0, 32, 41)], _spec(1.0)).metrics)
    assert "8 sequence-rounds, 4.00 drafts proposed, 4.00 accepted and 5.00 tokens emitted " \
           "per round" in line
    assert speculation_line(_serve([Request(0, 0.0, 32, 41)]).metrics) is None


def test_adaptive_gamma_drafts_fully_when_the_budget_allows_and_drafts_pay():
    """One request, every draft accepted: each extra draft adds a token for a small draft
    step, so the goodput rule picks the longest chain every round, as a fixed gamma does."""
    req = [Request(0, 0.0, 32, 41)]
    fixed, adaptive = _serve(req, _spec(1.0)), _serve(req, _spec(1.0, adaptive=True))
    assert adaptive.metrics["speculation"]["mean_gamma"] == GAMMA
    assert list(adaptive.run.iter_s) == pytest.approx(list(fixed.run.iter_s), rel=1e-12)


def test_adaptive_gamma_never_drafts_when_nothing_is_accepted():
    reqs = [Request(i, 0.05 * i, 20 + 7 * i, 30 + 11 * i) for i in range(12)]
    plain, adaptive = _serve(reqs), _serve(reqs, _spec(0.0, adaptive=True))
    assert adaptive.metrics["speculation"]["mean_gamma"] == 0
    assert len(adaptive.run.iter_s) == len(plain.run.iter_s)   # the plain schedule


def test_adaptive_gamma_leaves_the_prompts_their_budget():
    """A burst with 16 decoding at gamma 7: fixed drafts take 16 x 8 = 128 tokens, the whole
    budget, and prompts wait; adaptive drafts use only what the plan leaves."""
    reqs = [Request(i, 0.0, 60, 80) for i in range(48)]
    cfg = SchedulerConfig(token_budget=128, max_batch=16, kv_budget_tokens=100_000)
    fixed = _serve(reqs, _spec(0.6, gamma=7), cfg=cfg)
    adaptive = _serve(reqs, _spec(0.6, gamma=7, adaptive=True), cfg=cfg)
    assert (adaptive.run.iter_tokens <= 128).all() and (fixed.run.iter_tokens <= 128).all()
    assert 0 < adaptive.metrics["speculation"]["mean_gamma"] < 7
    assert adaptive.metrics["ttft_s"]["p99"] < fixed.metrics["ttft_s"]["p99"]


def test_adaptive_gamma_is_bounded():
    with pytest.raises(UserError, match="--gamma 17 with --adaptive-gamma: at most 16"):
        _spec(0.8, gamma=17, adaptive=True)

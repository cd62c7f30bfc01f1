"""Speculation schedule: E = (1 − α^(γ+1))/(1 − α), S = E/(γc + 1), bad inputs, traces."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mapping.acceptance import (
    IIDAcceptance,
    PositionalAcceptance,
    expected_tokens,
    expected_tokens_positional,
    load_trace,
)
from mapping.speculation import (
    SpecConfig,
    check_spec_tree,
    check_vocab,
    eagle2_like_tree,
    plan_rounds,
    tree_levels,
)
from models.errors import UserError
from sim.hades.simulate import simulate_speculative
from sim.spec import load_preset
from tests.unit.hades_graphs import spec_workload

HADES = load_preset("hades")


def _tokens_per_pass(rounds):
    full = [r for r in rounds if r.emitted == r.accepted + 1]
    return sum(r.emitted for r in full) / len(full)


@pytest.mark.parametrize(("alpha", "gamma"), [(0.5, 2), (0.8, 4), (0.9, 7), (0.6, 1), (0.0, 3),
                                              (1.0, 5)])
def test_iid_mean_tokens_per_pass_matches_formula(alpha, gamma):
    cfg = SpecConfig(gamma=gamma, acceptance=IIDAcceptance(alpha), seed=1)
    rounds = plan_rounds(cfg, prefill=1, decode=int(40_000 * expected_tokens(alpha, gamma)))
    assert _tokens_per_pass(rounds) == pytest.approx(expected_tokens(alpha, gamma), rel=0.01)


def test_positional_mean_matches_formula():
    alphas = (0.95, 0.85, 0.7, 0.5)
    cfg = SpecConfig(gamma=4, acceptance=PositionalAcceptance(alphas), seed=2)
    rounds = plan_rounds(cfg, prefill=1, decode=120_000)
    assert _tokens_per_pass(rounds) == pytest.approx(expected_tokens_positional(alphas, 4),
                                                     rel=0.01)


def test_formula_is_not_trivially_met():
    # a biased acceptance (α' = α + 0.05) is detected by the same 1% tolerance
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.85), seed=1)
    assert _tokens_per_pass(plan_rounds(cfg, 1, 120_000)) != pytest.approx(
        expected_tokens(0.8, 4), rel=0.01)


def test_simulator_zero_cost_draft_gives_E():
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.7), zero_cost_draft=True, seed=3)
    w = spec_workload(cfg, prefill=16, decode=40_000, target_hidden=256, target_layers=1,
                      draft_hidden=64)
    r = simulate_speculative(HADES, w)
    assert r.extra["tokens_per_pass"] == pytest.approx(expected_tokens(0.7, 4), rel=0.01)
    assert r.extra["split_ms"]["draft"] == 0.0


@pytest.mark.parametrize("gamma", [2, 4, 6])
def test_time_multiplexed_speedup_tracks_E_over_gamma_c_plus_1(gamma):
    shared = dataclasses.replace(HADES, draft_engine="shared")
    cfg = SpecConfig(gamma=gamma, acceptance=IIDAcceptance(0.8), seed=4)
    w = spec_workload(cfg, decode=1500)
    r = simulate_speculative(shared, w)
    e = r.extra["tokens_per_pass"]
    c = r.extra["draft_target_cost_ratio"]
    assert 0.01 < c < 0.5
    assert r.extra["speedup"] == pytest.approx(e / (gamma * c + 1), rel=0.03)


def test_separate_draft_engine_beats_shared():
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.8), seed=5)
    w = spec_workload(cfg, decode=500)
    sep = simulate_speculative(HADES, w)
    sh = simulate_speculative(dataclasses.replace(HADES, draft_engine="shared"), w)
    assert sep.decode_tokens_per_s > sh.decode_tokens_per_s
    assert sep.extra["predraft_hits"] > 0


def test_time_split_adds_up_and_rounds_are_seeded():
    cfg = SpecConfig(gamma=3, acceptance=IIDAcceptance(0.6), seed=6)
    w = spec_workload(cfg, decode=300)
    a, b = simulate_speculative(HADES, w), simulate_speculative(HADES, w)
    assert a.to_dict() | {"extra": None} == b.to_dict() | {"extra": None}
    split = a.extra["split_ms"]
    assert sum(split.values()) == pytest.approx(a.decode_ms_per_token * a.decode, rel=1e-9)
    assert all(v >= 0 for v in split.values())


@pytest.mark.parametrize("bad", [0, -1])
def test_gamma_below_one_is_an_error(bad):
    with pytest.raises(UserError, match="gamma"):
        SpecConfig(gamma=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_an_error(bad):
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        IIDAcceptance(bad)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        PositionalAcceptance((0.9, bad))


def test_tree_with_cycle_or_orphan_is_an_error():
    with pytest.raises(UserError, match="cycle"):
        check_spec_tree((1, 0))
    with pytest.raises(UserError, match="cycle"):
        check_spec_tree((-1, 2, 1))
    with pytest.raises(UserError, match="orphan"):
        check_spec_tree((-1, 5))
    with pytest.raises(UserError, match="orphan"):
        check_spec_tree((-1, 1))
    assert check_spec_tree((1, -1)) == (-1, 0)   # valid but out of order: renumbered


def test_draft_vocabulary_must_match():
    with pytest.raises(UserError, match="vocabulary"):
        check_vocab("llama2-7b", 32000, "gpt2", 50257)
    from mapping.spec_workload import build_speculative_workload

    with pytest.raises(UserError, match="vocabulary"):
        build_speculative_workload("llama2-7b", "gpt2", prefill=8, decode=8,
                                   config=SpecConfig())


def test_eagle2_tree_file_is_the_generator_output():
    import tomllib
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs/trees/eagle2_60.toml"
    parents = tuple(tomllib.loads(path.read_text())["parents"])
    assert parents == eagle2_like_tree() and len(parents) == 60
    assert check_spec_tree(parents) == parents
    assert sum(tree_levels(parents)) == 60 and len(tree_levels(parents)) == 6


def test_trace_acceptance_replays_and_validates(tmp_path):
    p = tmp_path / "run.jsonl"
    p.write_text("# comment\n" + "\n".join(json.dumps({"accepted": a, "gamma": 4})
                                            for a in (4, 0, 2, 3)) + "\n")
    acc = load_trace(p)
    assert acc.gamma == 4
    rounds = plan_rounds(SpecConfig(gamma=4, acceptance=acc), prefill=1, decode=13)
    assert [r.accepted for r in rounds] == [4, 0, 2, 3, 4][: len(rounds)]
    assert sum(r.emitted for r in rounds) == 13
    for bad, msg in (('{"accepted": -1}', "accepted"), ('{"accepted": 5, "gamma": 4}', "gamma"),
                     ("not json", "JSON")):
        p.write_text(bad + "\n")
        with pytest.raises(UserError, match=msg):
            load_trace(p)
    with pytest.raises(UserError, match="does not exist"):
        load_trace(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("batch", [2, 8])
def test_batched_rounds_keep_per_sequence_acceptance(batch):
    """Lockstep rounds of a batch: each sequence draws its own acceptance, so tokens per
    verify per sequence still follow (1 − α^(γ+1))/(1 − α); every sequence emits exactly
    ``decode`` tokens; a round's context is the mean of its sequences' contexts."""
    alpha, gamma, decode, prefill = 0.7, 4, 20_000, 10
    cfg = SpecConfig(gamma=gamma, acceptance=IIDAcceptance(alpha), seed=3)
    rounds = plan_rounds(cfg, prefill, decode, batch)
    assert sum(r.emitted for r in rounds) == batch * decode
    full = [r for r in rounds if r.emitted == r.accepted + len(r.paths)]
    per_seq = sum(r.emitted for r in full) / sum(len(r.paths) for r in full)
    assert per_seq == pytest.approx(expected_tokens(alpha, gamma), rel=0.01)
    ctx = [prefill] * batch
    done = [0] * batch
    for r in rounds[:50]:
        assert r.context == round(sum(ctx) / batch)
        active = [b for b in range(batch) if done[b] < decode]
        assert len(r.paths) == len(active)
        for b, path in zip(active, r.paths, strict=True):
            ctx[b] += len(path) + 1
            done[b] += len(path) + 1


def test_batch_of_one_is_the_single_sequence_schedule():
    cfg = SpecConfig(gamma=3, acceptance=IIDAcceptance(0.6), seed=5)
    one = plan_rounds(cfg, 16, 300)
    assert plan_rounds(cfg, 16, 300, 1) == one
    assert all(r.seqs == () and r.paths == (r.path,) for r in one)

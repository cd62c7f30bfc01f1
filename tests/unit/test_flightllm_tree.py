"""FlightLLM tree speculation at cycle level (``sim.flightllm.speculate`` / ``passes``): tree
masks, B-buffer verify groups, per-level draft passes, rollback cost, draft placement."""

from __future__ import annotations

import dataclasses

import pytest

from mapping.acceptance import IIDAcceptance
from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression
from mapping.flightllm.decode import TREE_MASK_KEYS, max_pass_tokens
from mapping.flightllm.isa import LD_TARGETS, Queue
from mapping.flightllm.rollback import compaction_moves, kv_rows
from mapping.flightllm.synthetic import llama_like
from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import Round, SpecConfig, eagle2_like_tree, plan_rounds, tree_levels
from models.errors import UserError
from models.graph import Phase
from sim.flightllm.passes import Passes
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.speculate import schedule, simulate_speculative
from sim.flightllm.timing import arch_of
from sim.spec import load_preset

SPEC = load_preset("flightllm-u280")
# ffn 8192: B (131072 B) holds 16 token vectors of down_proj's input
KW = {"layers": 2, "hidden": 1024, "heads": 8, "ffn": 8192, "vocab": 1024}
DKW = {"layers": 1, "hidden": 256, "heads": 2, "ffn": 512, "vocab": 1024}
TREE = eagle2_like_tree(20, 4, 4)   # 21 verified tokens: groups of 16 and 5


def _fb(phase, tokens, context, draft):
    return llama_like(phase=phase, tokens=tokens, context=context, **(DKW if draft else KW))


def _workload(tree=TREE, gamma=4, alpha=0.8, prefill=64, decode=64, zero=False, kw=None):
    kw = kw or KW
    cfg = SpecConfig(gamma=gamma, acceptance=IIDAcceptance(alpha), tree=tree,
                     zero_cost_draft=zero)
    n, end = cfg.verify_tokens, prefill + decode + cfg.draft_steps
    return SpeculativeWorkload(
        "llama-like", 1, prefill, decode, llama_like(phase=Phase.PREFILL, tokens=prefill, **kw),
        llama_like(context=prefill, **kw), llama_like(context=prefill + decode - 1, **kw),
        draft="draft-like", config=cfg,
        draft_prefill=llama_like(phase=Phase.PREFILL, tokens=prefill, **DKW),
        draft_first=llama_like(context=prefill, **DKW), draft_last=llama_like(context=end, **DKW),
        verify_first=llama_like(phase=Phase.VERIFY, tokens=n, context=prefill, **kw),
        verify_last=llama_like(phase=Phase.VERIFY, tokens=n, context=end, **kw), vocab=1024)


def test_tree_mask_is_one_ld_of_q_by_n_bits_per_layer_and_core():
    q, keys = 7, 12
    g = llama_like(phase=Phase.VERIFY, tokens=q, context=100, **{**KW, "layers": 3})
    tree = dataclasses.replace(g, meta=((TREE_MASK_KEYS, keys),))
    a, b = (generate(apply_compression(x), arch_of(SPEC)) for x in (g, tree))
    extra = b.counts()["LD"] - a.counts()["LD"]
    assert extra == 3 * SPEC.cores and b.counts()["MISC"] == a.counts()["MISC"]
    masks = [r for arr in b.cores for r in arr if r["queue"] == Queue.LD
             and r["op"] == LD_TARGETS["global"] and r["nbytes"] == -(-q * keys // 8)]
    assert len(masks) == extra
    ca, cb = (simulate_graph(SPEC, apply_compression(x)) for x in (g, tree))
    assert cb.cycles >= ca.cycles and cb.hbm_bytes - ca.hbm_bytes == extra * -(-q * keys // 8)


def test_tree_verify_runs_in_b_buffer_groups():
    w = _workload()
    assert max_pass_tokens(w.verify_first, arch_of(SPEC)) == 131072 // 8192 == 16
    p = Passes(SPEC, w, None, 16, _fb)
    assert p.groups == [(0, 16), (16, 5)]
    c = 80
    groups = [p.cache(False, q, o + q).seconds(c + o) for o, q in p.groups]
    assert p.verify_s(c) == pytest.approx(sum(groups))
    # each group streams the weights again: never less than a decode step per group
    step = simulate_graph(SPEC, apply_compression(llama_like(context=c + 16, **KW))).seconds
    assert p.verify_s(c) >= 2 * step


def test_a_pass_without_room_for_one_token_is_a_clear_error():
    small_b = dataclasses.replace(SPEC, b_buffer_bytes=4096)   # < ffn 8192 bytes
    with pytest.raises(UserError, match=r"--tree on flightllm-u280: the verify pass of 21 "
                       r"tokens of llama-like cannot hold even one token.*4096 bytes"):
        Passes(small_b, _workload(), None, 16, _fb)


def test_tree_draft_runs_one_pass_per_level():
    """As HADES counts it: pass 0 over the root, pass j over level j's nodes."""
    w = _workload()
    p = Passes(SPEC, w, None, 16, _fb)
    levels = tree_levels(TREE)
    assert [q for _, q, _ in p.dsteps] == [1, *levels[:-1]]
    assert p.draft_passes(64) == len(levels) == SpecConfig(tree=TREE).draft_steps
    # pass j sees the root and the levels before it in the cache; its mask covers them
    offsets = [o for o, _, _ in p.dsteps]
    assert offsets == [0] + [1 + sum(levels[:j - 1]) for j in range(1, len(levels))]


def _rollback_bytes(w, rounds) -> float:
    """Bytes (LD + ST) of every moved K/V row, target and draft caches."""
    depth = len(tree_levels(w.config.tree))
    target = sum(b for _, _, b in kv_rows(apply_compression(w.verify_first)))
    draft = sum(b for _, _, b in kv_rows(apply_compression(w.draft_first)))
    return sum(2 * (len(compaction_moves(r.context, r.path)) * target
                    + len(compaction_moves(r.context, r.path[:depth - 1])) * draft)
               for r in rounds)


def test_tree_speculation_end_to_end():
    w = _workload(zero=True, decode=200)
    res = simulate_speculative(SPEC, w, fallback=_fb)
    e = res.extra
    rounds = plan_rounds(w.config, 64, 200)
    assert res.fidelity == "cycle" and e["rounds"] == len(rounds)
    assert e["verify_groups"] == [16, 5] and e["split_ms"]["draft"] == 0.0
    assert res.counts["verify_passes"] == 2 * len(rounds)
    # rollback: a compaction program whenever a path row is out of place
    assert res.counts["rollback_bytes"] == _rollback_bytes(w, rounds) > 0
    assert e["split_ms"]["rollback"] > 0
    step = simulate_graph(SPEC, apply_compression(llama_like(context=64, **KW))).seconds
    assert e["split_ms"]["verify"] / len(rounds) >= step * 1e3
    assert res.decode_ms_per_token * res.decode == pytest.approx(sum(e["split_ms"].values()))


def test_schedule_pre_drafts_while_the_cores_verify():
    """Steps of 1 s, verify 2 s: a pre-drafted round waits 3 - 2 = 1 s (its bonus guess and
    two drafts); a missed one waits for the step in flight, then drafts its 2 steps."""
    def rd(i, pre):
        return Round(i, 10, 2, 3, (0, 1), pre)
    split, hits = schedule([rd(0, False), rd(1, True), rd(2, False)],
                           lambda c: [1.0, 1.0], lambda c: [1.0, 1.0, 1.0],
                           lambda c: 2.0, lambda r: 0.0)
    assert hits == 1
    # round 0: drafts 0-2, pre-draft 2-5, verify 2-4; round 1 (hit): waits 4-5, pre-draft
    # 5-8, verify 5-7; round 2 (miss): the pre-draft's 3rd step runs 7-8, then drafts 8-10
    assert split["draft"] == pytest.approx(2.0 + 1.0 + 1.0 + 2.0)
    assert split["verify"] == 6.0
    seq, none = schedule([rd(0, False), rd(1, True)], lambda c: [1.0, 1.0], None,
                         lambda c: 2.0, lambda r: 0.0)
    assert none == 0 and seq["draft"] == 4.0


def test_separate_engine_and_uram_draft():
    w = _workload(tree=None, alpha=0.95, decode=128)
    shared = simulate_speculative(SPEC, w, fallback=_fb)
    sep = simulate_speculative(dataclasses.replace(SPEC, draft_engine="separate"), w,
                               fallback=_fb)
    assert sep.extra["predraft_hits"] > 0 and shared.extra["predraft_hits"] == 0
    assert sep.extra["draft_engine"] == "separate"
    uram = simulate_speculative(dataclasses.replace(SPEC, draft_weights="uram"), w,
                                fallback=_fb)
    assert uram.extra["draft_uram288"] >= 1
    assert uram.extra["split_ms"]["draft"] < shared.extra["split_ms"]["draft"]
    assert uram.extra["split_ms"]["verify"] == shared.extra["split_ms"]["verify"]


def test_a_mask_larger_than_the_global_buffer_is_refused():
    g = llama_like(phase=Phase.VERIFY, tokens=16, context=100, **KW)
    keys = 8 * 131072 // 16 + 1   # 16 x keys bits: 2 bytes past the 128 KiB global buffer
    with pytest.raises(UserError, match=r"mask of a pass of 16 tree tokens over 65537 tree "
                       r"keys takes 131074 bytes, more than the global buffer's 131072"):
        generate(apply_compression(dataclasses.replace(g, meta=((TREE_MASK_KEYS, keys),))),
                 arch_of(SPEC))

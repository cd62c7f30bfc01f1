"""FlightLLM chain speculation at cycle level on traced graphs (llama-68m drafts for
TinyLlama-1.1B, GQA: the verify's K/V tiles shared by each group's query heads and tokens)."""

from __future__ import annotations

import pytest

from mapping.flightllm.compression import apply_compression
from models.cache import get_graph
from models.graph import Phase
from models.zoo import get_model
from sim.flightllm.simulate import simulate_graph
from sim.hades.speculate import speculate
from sim.spec import load_preset

SPEC = load_preset("flightllm-u280")


def test_default_is_cycle_level_without_the_roofline_note():
    r = speculate(SPEC, get_model("tinyllama-1.1b"), draft="llama-68m", gamma=3, alpha="0.8",
                  acceptance=None, tree=None, prefill=64, decode=48)
    e = r.extra
    assert r.fidelity == "cycle" and not any("roofline" in n for n in r.notes)
    assert e["rounds"] == r.counts["verify_passes"] and e["split_ms"]["draft"] > 0
    # a verify costs at least one decode step: the mean verify >= the mean plain decode step
    assert e["split_ms"]["verify"] / e["rounds"] >= 1e3 / e["baseline_tokens_per_s"]
    assert e["speedup"] == pytest.approx(r.decode_tokens_per_s / e["baseline_tokens_per_s"])


def test_traced_verify_of_one_token_costs_one_decode_step():
    """A traced verify graph of one token compiles to the decode program's time exactly; more
    tokens cost more (the MV path: tests/unit/test_flightllm_speculate.py)."""
    m = "tinyllama-1.1b"
    dec = simulate_graph(SPEC, apply_compression(get_graph(m, Phase.DECODE, context=79)),
                         periodic=True).cycles
    ver = [simulate_graph(SPEC, apply_compression(
        get_graph(m, Phase.VERIFY, tokens=q, context=80 - q)), periodic=True).cycles
        for q in (1, 2, 5)]
    assert ver[0] == dec
    assert dec < ver[1] < ver[2]


def test_tree_is_cycle_level_with_a_compaction_rollback():
    """A token tree (binary_7, 8 verified tokens: one B-buffer group for TinyLlama) runs at
    cycle level by default: one draft pass per level, a tree-mask verify, and a rollback that
    moves the accepted path's rows whenever one is out of place."""
    from models.request import parse_tree

    tree = parse_tree("configs/trees/binary_7.toml")
    r = speculate(SPEC, get_model("tinyllama-1.1b"), draft="llama-68m", gamma=None,
                  alpha="0.8", acceptance=None, tree=tree, prefill=64, decode=24)
    e = r.extra
    assert r.fidelity == "cycle" and e["verify_groups"] == [8]
    assert e["draft_level_passes"] == [1, 2, 4]
    assert r.counts["draft_passes"] == 3 * e["rounds"]
    moved = r.counts["rollback_bytes"] > 0
    assert moved == (e["split_ms"]["rollback"] > 0)
    assert e["split_ms"]["verify"] / e["rounds"] >= 1e3 / e["baseline_tokens_per_s"]

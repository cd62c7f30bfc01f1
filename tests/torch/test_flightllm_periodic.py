"""Identical layers simulated once (three short programs, extrapolated) equal the whole pass,
cycle for cycle and count for count, on several models, contexts, phases and both boards."""

from __future__ import annotations

import pytest

from mapping.flightllm.compression import apply_compression, config_from_dict
from models.cache import get_graph
from sim.flightllm.periodic import identical_layers, truncate_layers
from sim.flightllm.simulate import simulate_graph
from sim.spec import load_preset

CAUSAL = config_from_dict({"attention": {"prefill": "causal"},
                           "linear": [{"match": ["q_proj", "k_proj"], "keep": 0.7}]})
CASES = [
    ("flightllm-vhk158", "llama2-7b", "decode", {"context": 512}, None),
    ("flightllm-u280", "llama2-7b", "decode", {"context": 1000}, None),
    ("flightllm-u280", "opt-6.7b", "decode", {"context": 300}, None),
    ("flightllm-vhk158", "tinyllama-1.1b", "decode", {"context": 100, "batch": 4}, None),
    ("flightllm-u280", "qwen2-0.5b", "decode", {"context": 64}, None),
    ("flightllm-u280", "tinyllama-1.1b", "prefill", {"tokens": 200}, CAUSAL),
    ("flightllm-vhk158", "gpt2", "prefill", {"tokens": 128}, CAUSAL),
]


@pytest.mark.parametrize("hw, model, phase, kw, cfg", CASES)
def test_extrapolated_pass_equals_the_whole_pass(hw, model, phase, kw, cfg):
    spec = load_preset(hw)
    g = apply_compression(get_graph(model, phase, **kw), cfg)
    assert identical_layers(g) > 0
    fast, full = simulate_graph(spec, g, periodic=True), simulate_graph(spec, g)
    assert fast.program is None and full.program is not None   # the fast path was taken
    assert fast.cycles == full.cycles
    assert fast.counts == full.counts and fast.hbm_bytes == full.hbm_bytes
    assert fast.busy == pytest.approx(full.busy, rel=1e-12)
    assert fast.dsp_utilisation == pytest.approx(full.dsp_utilisation, rel=1e-12)


def test_layers_that_differ_are_simulated_whole():
    """The artifact's per-layer attention masks make prefill layers differ (at 512 tokens;
    at 128 the 2 x 2 blocks of every layer's mask are the same causal ones)."""
    g = apply_compression(get_graph("llama2-7b", "prefill", tokens=512))
    assert identical_layers(g) == 0
    assert simulate_graph(load_preset("flightllm-u280"), g, periodic=True).program is not None


def test_truncated_graph_reads_its_own_last_layer():
    g = get_graph("tinyllama-1.1b", "decode", context=16)
    t = truncate_layers(g, 3)
    names = {n.name for n in t.nodes}
    assert all(i in names or i == "input_ids" or "layers" not in i
               for n in t.nodes for i in n.inputs)
    assert max(n.layer for n in t.nodes) == 2

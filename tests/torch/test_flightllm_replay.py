"""Sub-layer replication (``mapping/flightllm/replay.py``) on traced models: prefill linears
copied from an earlier identical one give the op-by-op program and the same cycles, on models
whose layers differ in their attention masks (LLaMA2-7B, TinyLlama with GQA, OPT with biases,
ReLU and LayerNorm) and on a dense causal one."""

from __future__ import annotations

import numpy as np
import pytest

from mapping.flightllm import codegen
from mapping.flightllm.compression import apply_compression
from mapping.flightllm.replay import LinearReplay
from models.cache import get_graph
from sim.flightllm.engine_fast import run_fast
from sim.flightllm.engine_simpy import run_simpy
from sim.flightllm.timing import arch_of, fill_cycles
from sim.spec import load_preset

CASES = [("flightllm-vhk158", "llama2-7b", 128), ("flightllm-vhk158", "tinyllama-1.1b", 512),
         ("flightllm-u280", "opt-6.7b", 192), ("flightllm-vhk158", "llama-68m", 256)]


@pytest.mark.parametrize("hw, model, tokens", CASES)
def test_replayed_prefill_equals_generated(hw, model, tokens, monkeypatch):
    made: list[LinearReplay] = []

    class Counting(LinearReplay):
        def __init__(self):
            super().__init__()
            made.append(self)

    monkeypatch.setattr(codegen, "LinearReplay", Counting)
    spec = load_preset(hw)
    g = apply_compression(get_graph(model, "prefill", tokens=tokens))
    fast = fill_cycles(codegen.generate(g, arch_of(spec)), spec)
    ref = fill_cycles(codegen.generate(g, arch_of(spec), replicate=False), spec)
    assert made[0].replayed["linear"] > 0   # the fast path was taken
    assert fast.nodes == ref.nodes
    assert all(np.array_equal(x, y) for x, y in zip(fast.cores, ref.cores, strict=True))
    (s1, f1), (s2, f2) = run_fast(fast, spec.hbm_channels), run_fast(ref, spec.hbm_channels)
    assert all(np.array_equal(a, b) for a, b in zip(s1 + f1, s2 + f2, strict=True))
    if model == "llama-68m":   # the SimPy reference on the smallest program
        s3, f3 = run_simpy(fast, spec.hbm_channels)
        assert all(np.array_equal(a, b) for a, b in zip(s1 + f1, s3 + f3, strict=True))

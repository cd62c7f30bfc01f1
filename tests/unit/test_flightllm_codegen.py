"""FlightLLM code generation: barriers only where a full vector is needed, balanced cores,
tiles within every buffer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression, config_from_dict
from mapping.flightllm.isa import LD_TARGETS as TARGETS
from mapping.flightllm.isa import Queue
from mapping.flightllm.synthetic import llama_like
from models.graph import Phase
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of
from sim.spec import load_preset

SPEC = load_preset("flightllm-vhk158")
CFG = config_from_dict({"attention": {"prefill": "causal"},
                        "linear": [{"match": ["q_proj", "k_proj"], "keep": 0.7}]})


def _decode(layers=2):
    return apply_compression(llama_like(layers=layers, phase=Phase.DECODE, hidden=1024,
                                        heads=8, ffn=2048, context=64), CFG)


def test_four_barriers_per_layer():
    """o_proj, post-norm, down_proj, next input norm need the full vector; k/v_proj and
    up_proj read the vector q_proj/gate_proj already had in full: no barrier for them."""
    prog = generate(_decode(layers=3), arch_of(SPEC))
    for arr in prog.cores:
        assert int((arr["queue"] == Queue.SYS).sum()) == 4 * 3


def test_mixed_sparsity_balanced_over_cores():
    res = simulate_graph(SPEC, _decode())
    mv = [int(a["cycles"][a["queue"] == Queue.MV].sum()) for a in res.program.cores]
    assert max(mv) - min(mv) <= 0.02 * max(mv)


def test_sparse_tiles_fit_the_meta_and_fsb_buffers():
    prog = generate(_decode(), arch_of(SPEC))
    for arr in prog.cores:
        ld = arr[arr["queue"] == Queue.LD]
        meta = ld["nbytes"][ld["op"] == TARGETS["meta"]]
        fsb = ld["nbytes"][ld["op"] == TARGETS["FSB"]]
        assert meta.size and meta.max() <= SPEC.meta_buffer_bytes // 2
        assert fsb.size and fsb.max() <= SPEC.fsb_buffer_bytes // 2
        assert np.all(ld["nbytes"][ld["op"] == TARGETS["A"]] <= SPEC.a_buffer_bytes // 2)


def _same(a, b) -> bool:
    return a.nodes == b.nodes and all(np.array_equal(x, y) for x, y in
                                      zip(a.cores, b.cores, strict=True))


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
@pytest.mark.parametrize("rules", [
    [{"match": ["q_proj", "k_proj"], "keep": 0.7}],
    # per-layer settings: layers 3 and 4 differ, so replication must stop there
    [{"match": ["q_proj"], "keep": 0.5}, {"match": ["up_proj"], "layers": [3], "bits": 8},
     {"match": ["o_proj"], "layers": [4], "pattern": "4:16"}],
])
def test_replicated_layers_equal_generated(phase, rules):
    cfg = config_from_dict({"attention": {"prefill": "causal"}, "linear": rules})
    g = apply_compression(llama_like(layers=6, phase=phase, hidden=512, heads=8, ffn=1024,
                                     context=64), cfg)
    for spec in (SPEC, load_preset("flightllm-u280")):
        arch = arch_of(spec)
        assert _same(generate(g, arch), generate(g, arch, replicate=False))
        off = dataclasses.replace(arch, on_chip_decode=False, fuse=False)
        assert _same(generate(g, off), generate(g, off, replicate=False))

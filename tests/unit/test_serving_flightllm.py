"""Serving on FlightLLM at cycle level (``sim.serving.passes``, separate passes): prefill and
decode run as their own programs, so an iteration costs its decode pass plus each prompt
chunk's prefill pass, all from the cycle-level simulator; the decode batch is bounded by the
B buffer. Synthetic LLaMA-shaped graphs (torch-free)."""

from __future__ import annotations

import dataclasses

import pytest

from mapping.flightllm.synthetic import llama_like
from models.graph import Graph, Phase
from models.workload import Workload
from models.zoo import get_model
from sim.registry import run
from sim.serving.device import default_fidelity, serve_device
from sim.serving.passes import build_table
from sim.serving.requests import Request
from sim.serving.scheduler import SchedulerConfig
from sim.spec import load_preset, validate

KW = {"layers": 2, "hidden": 256, "heads": 4, "ffn": 512, "vocab": 512}
U280 = load_preset("flightllm-u280")
# a B buffer of 4 KB holds 8 vectors of the widest input (down_proj: 512 INT8)
SMALL_B = validate(dataclasses.replace(U280, name="u280-small-b", b_buffer_bytes=4096))


def _batched(g: Graph, b: int) -> Graph:
    def sh(s: tuple) -> tuple:
        return (b, *s[1:]) if s and s[0] == 1 else s
    nodes = tuple(dataclasses.replace(n, in_shapes=tuple(sh(x) for x in n.in_shapes),
                                      out_shape=sh(n.out_shape)) for n in g.nodes)
    return dataclasses.replace(g, nodes=nodes, batch=b)


SOURCES = (lambda t: llama_like(phase=Phase.PREFILL, tokens=t, **KW),
           lambda b, c: _batched(llama_like(phase=Phase.DECODE, context=c, **KW), b))


def _table(spec=U280, max_batch=4):
    return build_table(spec, "cycle", *SOURCES, max_tokens=96, max_batch=max_batch,
                       max_context=300, separate=True)


def test_flightllm_serves_at_cycle_level_by_default():
    assert default_fidelity("flightllm") == "cycle"
    assert default_fidelity("hades") == "roofline"


def test_grid_points_are_the_cycle_simulator_passes():
    table = _table()
    assert table.separate
    for t in (1, 8, 96):
        g = SOURCES[0](t)
        want = run(U280, Workload(g.model, 1, t, 0, g, None, None), "cycle").prefill_ms / 1e3
        assert table.iteration(0, 0.0, [(t, 0)])[0] == pytest.approx(want, rel=1e-9)
    for b in (1, 4):
        c = table.contexts[-1]
        g = SOURCES[1](b, c)
        res = run(U280, Workload(g.model, b, c, 1, None, g, g), "cycle")
        got, joules = table.iteration(b, float(b * c), [])
        assert got == pytest.approx(res.decode_ms_per_token / 1e3, rel=1e-9)
        assert joules > 0


def test_mixed_iteration_is_decode_pass_plus_prefill_pass():
    table = _table()
    dec, _ = table.iteration(4, 4.0 * 200, [])
    pre, _ = table.iteration(0, 0.0, [(64, 0)])
    both, _ = table.iteration(4, 4.0 * 200, [(64, 0)])
    assert both == pytest.approx(dec + pre, rel=1e-12)
    # a decode token does not ride in the prefill's matrix: 4 decodes + 60 prompt tokens
    # cost more than a 64-token prefill (the shared-dense model would charge about that)
    assert table.iteration(4, 800.0, [(60, 0)])[0] > pre


def test_max_batch_is_lowered_to_the_b_buffer_bound_with_a_note():
    reqs = [Request(i, 0.001 * i, 32, 12) for i in range(20)]
    d = serve_device(SMALL_B, get_model("llama2-7b"), reqs,
                     SchedulerConfig(token_budget=256, max_batch=16, kv_budget_tokens=10**6),
                     {"ttft": 10.0, "tpot": 1.0}, None, SOURCES)
    assert d.fidelity == "cycle" and d.storage == "artifact setting"
    assert d.metrics["max_batch"] == 8
    assert "B buffer" in d.metrics["notes"][0] and "not 16" in d.metrics["notes"][0]
    assert max(d.run.iter_batch) <= 8 + 8      # decoders (<= 8) plus prompt chunks
    assert all(r.generated == r.req.output_tokens for r in d.run.records)

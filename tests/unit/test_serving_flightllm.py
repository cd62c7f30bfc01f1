"""Serving on FlightLLM at cycle level (``sim.serving.passes``, separate passes): prefill and
decode run as their own programs, so an iteration costs its decode pass plus each prompt
chunk's prefill pass, all from the cycle-level simulator; the decode batch is bounded by the
B buffer. Synthetic LLaMA-shaped graphs (torch-free)."""

from __future__ import annotations

import dataclasses

import pytest

from mapping.flightllm.synthetic import batched, llama_like
from models.graph import Phase
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


SOURCES = (lambda t: llama_like(phase=Phase.PREFILL, tokens=t, **KW),
           lambda b, c: batched(llama_like(phase=Phase.DECODE, context=c, **KW), b))


def _table(spec=U280, max_batch=4):
    return build_table(spec, "cycle", *SOURCES, max_tokens=96, max_batch=max_batch,
                       max_context=300, separate=True)


def test_flightllm_serves_at_cycle_level_by_default():
    assert default_fidelity("flightllm") == "cycle"
    assert default_fidelity("gpu") == "calibrated"


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


def test_grid_corner_past_the_memory_is_extrapolated_not_refused():
    """FlightLLM's simulator refuses a pass whose KV cache does not fit; the table's corner
    (largest batch, longest context) is then on the line through that batch's last two."""
    from sim.flightllm.simulate import compressed

    kw = {"layers": 4, "hidden": 1024, "heads": 8, "ffn": 2048, "vocab": 512}
    sources = (lambda t: llama_like(phase=Phase.PREFILL, tokens=t, **kw),
               lambda b, c: batched(llama_like(phase=Phase.DECODE, context=c, **kw), b))
    g = compressed(sources[1](1, 300), None)
    weights = sum(p.bytes for p in g.params)
    kv_token = g.totals().kv_write_bytes              # per token of one sequence (8 KB)
    # room for 8 sequences of 2,500 tokens: batch 8 fits at context 2,000, not past it
    small = validate(dataclasses.replace(U280, name="u280-small-hbm",
                                         hbm_bytes=weights + 8 * 2_500 * kv_token))
    table = build_table(small, "cycle", *sources, max_tokens=8, max_batch=8,
                        max_context=4_000, separate=True,
                        size_pass=lambda g: compressed(g, None))   # as the simulator stores
    assert table.contexts == (1, 1_000, 2_000, 3_000, 4_000)
    row = table.dec_attn_s[table.batches.index(8)]
    slope = (row[2] - row[1]) / 1_000
    assert slope > 0
    assert row[3] == pytest.approx(row[2] + 1_000 * slope, rel=1e-12)
    assert row[4] == pytest.approx(row[2] + 2_000 * slope, rel=1e-12)
    b1 = table.dec_attn_s[0]          # batch 1 fits everywhere: the simulator's own passes
    g1 = sources[1](1, 4_000)
    want = run(small, Workload(g1.model, 1, 4_000, 1, None, g1, g1), "cycle")
    assert b1[-1] == pytest.approx(want.decode_ms_per_token / 1e3, rel=1e-9)


def test_prompts_run_whole_on_a_separate_pass_device():
    """FlightLLM's compiled prefill has no cached context, so a prompt is never chunked: one
    longer than the token budget runs whole in one iteration, and a prompt that does not fit
    what an iteration's budget leaves waits for the next iteration."""
    slo = {"ttft": 10.0, "tpot": 1.0}
    cfg = SchedulerConfig(token_budget=64, max_batch=4, kv_budget_tokens=10**6)
    alone = [Request(0, 0.0, 200, 3)]
    d = serve_device(U280, get_model("llama2-7b"), alone, cfg, slo, None, SOURCES)
    rec = d.run.records[0]
    assert rec.first_token_s == pytest.approx(d.table.iteration(0, 0.0, [(200, 0)])[0])
    assert d.run.iter_tokens[0] == 200                  # one iteration, past the budget
    pair = [Request(0, 0.0, 40, 3), Request(1, 0.0, 40, 3)]
    d = serve_device(U280, get_model("llama2-7b"), pair, cfg, slo, None, SOURCES)
    first, second = (r.first_token_s for r in d.run.records)
    one = d.table.iteration(0, 0.0, [(40, 0)])[0]
    assert first == pytest.approx(one)                  # 40 of 64: the second (40) waits
    assert second == pytest.approx(one + d.table.iteration(1, 40.0, [(40, 0)])[0])
    assert list(d.run.iter_tokens[:2]) == [40, 41]

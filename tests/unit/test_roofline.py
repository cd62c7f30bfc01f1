"""The roofline bound: definition, monotonicity, decode interpolation."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.graph import Phase
from models.workload import Workload
from sim.roofline import graph_bound_s, op_bounds, simulate
from sim.spec import load_preset
from tests.unit.graphs import decoder_like, random_graph

A100 = load_preset("gpu-a100")
U280 = load_preset("flightllm-u280")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_bound_dominates_whole_graph_bounds(seed):
    g = random_graph(random.Random(seed))
    for spec in (A100, U280):
        t = graph_bound_s(spec, g)
        tot = g.totals()
        assert t >= tot.compulsory_bytes / spec.mem_bytes_per_s * (1 - 1e-12)
        peak = max(spec.peak_ops_per_s(d) for d in ("float16", "float32", "int8", "bfloat16"))
        assert t >= tot.flops / peak * (1 - 1e-12)
        assert t == pytest.approx(sum(b.time_s for b in op_bounds(spec, g)), rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1.01, 10))
def test_more_resources_never_slower(seed, factor):
    g = random_graph(random.Random(seed))
    faster_mem = dataclasses.replace(A100, hbm_bytes_per_s=A100.hbm_bytes_per_s * factor)
    faster_compute = dataclasses.replace(
        A100, fp16_flops_per_s=A100.fp16_flops_per_s * factor,
        fp32_flops_per_s=A100.fp32_flops_per_s * factor,
        bf16_flops_per_s=A100.bf16_flops_per_s * factor,
        int8_ops_per_s=A100.int8_ops_per_s * factor)
    base = graph_bound_s(A100, g)
    assert graph_bound_s(faster_mem, g) <= base
    assert graph_bound_s(faster_compute, g) <= base


def test_memory_bound_op_is_labelled():
    g = decoder_like()
    bounds = op_bounds(A100, g)
    assert {b.bound for b in bounds if b.kind.value == "linear"} == {"memory"}


def _workload(prefill: int, decode: int) -> Workload:
    first = decoder_like(context=prefill)
    last = decoder_like(context=prefill + decode - 1)
    pre = dataclasses.replace(decoder_like(context=0), phase=Phase.PREFILL, tokens=prefill)
    return Workload("toy", 1, prefill, decode, pre, first, last)


def test_decode_sum_equals_per_step_graphs():
    w = _workload(16, 40)
    r = simulate(A100, w)
    per_step = sum(graph_bound_s(A100, w.decode_graph(i)) for i in range(40))
    assert abs(r.decode_ms_per_token * 40 - per_step * 1e3) < 1e-9 * per_step * 1e3
    assert abs(r.decode_tokens_per_s - 40 / per_step) < 1e-9 * r.decode_tokens_per_s
    assert r.fidelity == "roofline"


def test_result_json_has_the_contract_fields():
    r = simulate(U280, _workload(8, 4)).to_dict()
    for key in ("hw", "model", "prefill", "decode", "prefill_ms", "decode_ms_per_token",
                "decode_tokens_per_s", "total_ms", "fidelity"):
        assert key in r
    assert r["energy_j"] == 45 * r["total_ms"] / 1e3


def test_a_note_passed_on_from_a_base_run_is_said_once():
    """Speculative roofline passes its baseline's notes on; the memory note must not repeat."""
    from sim.result import result_from_times

    w = Workload("toy", 1, 16, 8, decoder_like(2, 256, 0, Phase.PREFILL),
                 decoder_like(2, 256, 16), decoder_like(2, 256, 23))
    tiny = dataclasses.replace(load_preset("gpu-a100"), hbm_bytes=1024)
    base = result_from_times(tiny, w, "roofline", 1e-3, 1e-3)
    assert not base.fits_memory and len(base.notes) == 1
    again = result_from_times(tiny, w, "roofline", 1e-3, 1e-3, notes=base.notes)
    assert again.notes == base.notes

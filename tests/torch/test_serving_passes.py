"""The serving pass table against whole traced passes (sim/serving/passes.py).

A decode iteration at batch B is the table's dense part (a prefill of B tokens) plus decode
attention; a prompt chunk of C tokens over c0 cached ones is exactly a verify pass of C tokens
over c0. Both are compared with ``sim.registry.run`` on the traced passes themselves.
"""

from __future__ import annotations

import pytest

from models.cache import get_graph
from models.workload import Workload
from sim.registry import run
from sim.serving.passes import build_table, default_sources
from sim.spec import load_preset

MODEL = "llama-68m"   # small: every grid trace takes well under a second


# HADES at both fidelities: the cycle-level simulator splits its passes by op kind too
# (``sim.hades.units.by_kind``), so its table shares the dense ops as the roofline's does.
# Tolerances: the roofline is affine in the context (exact up to float sums); at cycle level
# tile rounding makes attention piecewise in the context, and the table interpolates it.
FIDELITIES = {"roofline": 1e-3, "cycle": 0.01}


@pytest.fixture(scope="module", params=sorted(FIDELITIES))
def table(request):
    return build_table(load_preset("hades"), request.param, *default_sources(MODEL),
                       max_tokens=48, max_batch=4, max_context=160)


def _pass_ms(g, batch: int, context: int, fidelity: str) -> float:
    res = run(load_preset("hades"), Workload(MODEL, batch, context, 1, None, g, g), fidelity)
    return res.decode_ms_per_token


@pytest.mark.parametrize("batch, context", [(3, 40), (4, 150)])
def test_decode_iteration_equals_the_traced_batched_pass(table, batch, context):
    g = get_graph(MODEL, "decode", context=context, batch=batch)
    got, _ = table.iteration(batch, float(batch * context), [])
    # dense ops from a prefill of B tokens (1, B, h) stand for (B, 1, h): same counts
    want = _pass_ms(g, batch, context, table.fidelity)
    assert got * 1e3 == pytest.approx(want, rel=FIDELITIES[table.fidelity])


@pytest.mark.parametrize("chunk, cached", [(16, 16), (12, 36)])
def test_chunk_attention_close_to_the_verify_pass(table, chunk, cached):
    g = get_graph(MODEL, "verify", tokens=chunk, context=cached)
    got, _ = table.iteration(0, 0.0, [(chunk, cached)])
    # C/(c0+C) of a (c0+C)-token prefill's attention: same rows x keys, different masks
    assert got * 1e3 == pytest.approx(_pass_ms(g, 1, cached, table.fidelity), rel=0.03)

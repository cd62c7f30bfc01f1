"""The IR: immutability, JSON round-trip, totals, context interpolation."""

from __future__ import annotations

import dataclasses

import pytest

from models.graph import Graph, OpKind, Param, Phase, interpolate
from tests.unit.graphs import decoder_like


def test_json_round_trip_is_exact(tmp_path):
    g = decoder_like()
    g = g.with_nodes(n.with_attrs(weight_bits=4, pattern=[2, 16]) for n in g.nodes)
    path = tmp_path / "g.json"
    g.to_json(path)
    back = Graph.from_json(path)
    assert back == g
    assert back.to_json() == path.read_text()


def test_nodes_are_immutable():
    n = decoder_like().nodes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.flops = 0  # type: ignore[misc]


def test_totals_sum_nodes_and_params():
    g = decoder_like(layers=3, hidden=32, context=10)
    t = g.totals()
    assert t.nodes == 9
    assert t.flops == 3 * (2 * 32 * 32 + 2 * 32 * 11)
    assert t.kv_read_bytes == 3 * 2 * 32 * 11
    assert t.param_bytes == 2 * (100 * 32 + 3 * 32 * 32)
    assert dict((k, c) for k, c, _, _ in t.by_kind) == {"linear": 3, "kv_append": 3, "matmul": 3}


def test_param_bits_override_dtype_size():
    assert Param("w", (10, 10), "float16").bytes == 200
    assert Param("w", (10, 10), "float16", bits=4).bytes == 50
    assert Param("w", (3,), "float16", bits=3).bytes == 2  # 9 bits round up to 2 bytes


def test_interpolate_reproduces_an_affine_trace():
    lo, hi, mid = decoder_like(context=8), decoder_like(context=40), decoder_like(context=21)
    assert interpolate(lo, hi, 21) == mid
    assert interpolate(lo, hi, 100) == decoder_like(context=100)  # extrapolation too


def test_interpolate_rejects_non_affine_and_mismatched_graphs():
    lo, hi = decoder_like(context=8), decoder_like(context=40)
    bent = hi.with_nodes(dataclasses.replace(n, flops=n.flops + 1) if i == 2 else n
                         for i, n in enumerate(hi.nodes))
    with pytest.raises(ValueError, match="not affine"):
        interpolate(lo, bent, 9)
    with pytest.raises(ValueError, match="same model"):
        interpolate(lo, decoder_like(layers=3, context=40), 9)
    with pytest.raises(ValueError, match="two different"):
        interpolate(lo, lo, 9)


def test_from_json_rejects_other_formats():
    with pytest.raises(ValueError, match="not an llmcosim graph"):
        Graph.from_dict({"format": "other"})


def test_phase_and_kind_are_strings():
    assert Phase("verify") is Phase.VERIFY
    assert OpKind.LINEAR == "linear"

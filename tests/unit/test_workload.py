"""Workload: decode graphs at any context, with mapping passes applied after interpolation."""

from __future__ import annotations

import dataclasses

import pytest

from models.graph import Graph
from models.workload import Workload
from tests.unit.graphs import decoder_like


def _rounding_pass(g: Graph) -> Graph:
    """Rounds KV bytes up to 1 KiB blocks: not affine in the context."""
    return g.with_nodes(dataclasses.replace(n, kv_read_bytes=-(-n.kv_read_bytes // 1024) * 1024)
                        for n in g.nodes)


def _workload(prefill: int = 10, decode: int = 50) -> Workload:
    return Workload("toy", 1, prefill, decode, None, decode_like(prefill),
                    decode_like(prefill + decode - 1))


def decode_like(context: int) -> Graph:
    return decoder_like(context=context, hidden=40)


def test_decode_graph_matches_a_direct_build_at_every_step():
    w = _workload()
    for step in (0, 1, 17, 49):
        assert w.decode_graph(step) == decode_like(10 + step)
    with pytest.raises(IndexError):
        w.decode_graph(50)


def test_passes_apply_after_interpolation():
    w = _workload().map(_rounding_pass)
    for ctx in (10, 23, 59, 64):  # 64 extrapolates past the last trace
        assert w.decode_at(ctx) == _rounding_pass(decode_like(ctx))
    twice = w.map(_rounding_pass)
    assert twice.decode_at(23) == _rounding_pass(_rounding_pass(decode_like(23)))


def test_single_decode_trace_gives_only_its_context():
    g = decode_like(10)
    w = Workload("toy", 1, 10, 1, None, g, g)
    assert w.decode_graph(0) is g
    with pytest.raises(ValueError, match="trace two"):
        w.decode_at(11)

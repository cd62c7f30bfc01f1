"""Compression passes: store linear weights and the KV cache in fewer bits.

Only storage and traffic change here (``weight_bytes``, ``kv_*_bytes``, ``Param.bits``); the
arithmetic stays as traced. Which device computes in which precision is the simulator's
business (FlightLLM dequantises to INT8 MACs). Per-layer bits, N:M sparsity and block-sparse
attention belong to the FlightLLM mapping flow, which builds on these.
"""

from __future__ import annotations

from dataclasses import replace

from models.errors import UserError
from models.graph import Graph, OpKind, dtype_bytes

__all__ = ["ALLOWED_BITS", "check_bits", "quantize"]

ALLOWED_BITS = (2, 3, 4, 8, 16)  # FlightLLM's mixed precision: 2/3/4/8-bit weights, INT8 KV


def check_bits(name: str, bits: int | None) -> None:
    if bits is not None and bits not in ALLOWED_BITS:
        raise UserError(f"--{name} {bits} is not supported; allowed: "
                        f"{', '.join(map(str, ALLOWED_BITS))}")


def _scaled(nbytes: int, bits: int, dtype: str) -> int:
    """``nbytes`` of ``dtype`` elements re-stored at ``bits`` per element (rounded up)."""
    elems = nbytes / dtype_bytes(dtype)
    return -(-int(elems) * bits // 8)


def quantize(g: Graph, *, weight_bits: int | None = None, kv_bits: int | None = None) -> Graph:
    """``g`` with linear (and MoE expert) weights stored at ``weight_bits`` and the KV cache at
    ``kv_bits``."""
    check_bits("weight-bits", weight_bits)
    check_bits("kv-bits", kv_bits)
    param_dtype = {p.name: p.dtype for p in g.params}
    quantized: set[str] = set()
    nodes = []
    for n in g.nodes:
        upd: dict[str, object] = {}
        attrs: dict[str, object] = {}
        if weight_bits is not None and n.kind in (OpKind.LINEAR, OpKind.EXPERTS) and n.weights:
            dt = param_dtype.get(n.weights[0], g.dtype)
            upd["weight_bytes"] = _scaled(n.weight_bytes, weight_bits, dt)
            attrs["weight_bits"] = weight_bits
            if n.kind is OpKind.EXPERTS:  # one expert's bytes, for models.moe.route
                attrs["expert_bytes"] = _scaled(n.attr["expert_bytes"], weight_bits, dt)
            quantized.update(n.weights)
        if kv_bits is not None and (n.kv_read_bytes or n.kv_write_bytes):
            upd["kv_read_bytes"] = _scaled(n.kv_read_bytes, kv_bits, g.dtype)
            upd["kv_write_bytes"] = _scaled(n.kv_write_bytes, kv_bits, g.dtype)
            attrs["kv_bits"] = kv_bits
        m = replace(n, **upd) if upd else n
        nodes.append(m.with_attrs(**attrs) if attrs else m)
    params = tuple(replace(p, bits=weight_bits) if p.name in quantized else p for p in g.params)
    return replace(g, nodes=tuple(nodes), params=params)

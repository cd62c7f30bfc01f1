"""Per-op cost arrays of a decode/verify pass at any context length, without building graphs.

Every count and shape of a decode/verify pass is affine in the context (``models.graph.
interpolate``), so two traces give per-op ``value(c) = v0 + slope * (c - c0)`` exactly. The
speculation schedule evaluates hundreds of passes at different contexts; doing it on numpy
arrays keeps a 512-token speculative decode of LLaMA-2-7B well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from models.graph import Graph, OpKind

__all__ = ["FIELDS", "PE_KINDS", "SFU_PASSES", "AffineGraph"]

FIELDS = ("flops", "weight_bytes", "act_bytes", "kv_read_bytes", "kv_write_bytes",
          "k_dim", "n_dim", "rows", "outer", "elems")
# A mixture-of-experts EXPERTS node is not tiled here (its GEMMs are spread over the experts
# the routing reaches): it runs at the PE array's peak, no faster, plus its weight traffic.
PE_KINDS = (OpKind.LINEAR, OpKind.MATMUL, OpKind.ATTENTION)
# SFU passes over the elements of an op: softmax = max, exp+sum, scale; norm = sum of squares,
# scale; the rest one pass. (Our SFU design, docs/hades.md; RTL: sim/blocks/sfu.py.)
SFU_PASSES = {OpKind.SOFTMAX: 3, OpKind.NORM: 2, OpKind.ACTIVATION: 1, OpKind.ROPE: 1,
              OpKind.ELEMENTWISE: 1, OpKind.REDUCTION: 1}


def _dims(g: Graph) -> dict[str, np.ndarray]:
    cols: dict[str, list[float]] = {f: [] for f in FIELDS}
    for n in g.nodes:
        out = n.out_shape or (1,)
        cols["flops"].append(n.flops)
        cols["weight_bytes"].append(n.weight_bytes)
        cols["act_bytes"].append(n.act_bytes)
        cols["kv_read_bytes"].append(n.kv_read_bytes)
        cols["kv_write_bytes"].append(n.kv_write_bytes)
        k = n.in_shapes[0][-1] if n.in_shapes and n.in_shapes[0] else 1
        cols["k_dim"].append(k)
        cols["n_dim"].append(out[-1])
        cols["rows"].append(out[-2] if len(out) >= 2 else 1)
        cols["outer"].append(math.prod(out[:-2]) if len(out) > 2 else 1)
        cols["elems"].append(math.prod(out))
    return {f: np.asarray(v, dtype=np.float64) for f, v in cols.items()}


@dataclass(frozen=True)
class AffineGraph:
    """Per-op arrays ``base + slope * (context - c0)``; ``at(c)`` evaluates them."""

    model: str
    tokens: int
    c0: int
    base: dict[str, np.ndarray]
    slope: dict[str, np.ndarray]
    kind: np.ndarray        # OpKind values (object array of str)
    layer: np.ndarray       # decoder layer per op (-1 outside)
    dtype: np.ndarray       # storage dtype per op (the roofline's peak depends on it)
    param_bytes: float

    @classmethod
    def from_graphs(cls, g0: Graph, g1: Graph | None = None) -> AffineGraph:
        d0 = _dims(g0)
        if g1 is None or g1.context == g0.context:
            slope = {f: np.zeros_like(v) for f, v in d0.items()}
        else:
            if len(g1.nodes) != len(g0.nodes):
                raise ValueError("AffineGraph needs two traces of the same structure")
            d1 = _dims(g1)
            slope = {f: (d1[f] - d0[f]) / (g1.context - g0.context) for f in FIELDS}
        return cls(g0.model, g0.tokens, g0.context, d0, slope,
                   np.asarray([n.kind.value for n in g0.nodes]),
                   np.asarray([n.layer for n in g0.nodes]),
                   np.asarray([n.dtype for n in g0.nodes]),
                   float(sum(p.bytes for p in g0.params)))

    def at(self, context: float) -> dict[str, np.ndarray]:
        dc = context - self.c0
        return {f: self.base[f] + self.slope[f] * dc for f in FIELDS}

    def mask(self, kinds: tuple[OpKind, ...]) -> np.ndarray:
        return np.isin(self.kind, [k.value for k in kinds])

    @cached_property
    def pe_mask(self) -> np.ndarray:
        """Ops that run on the PE array."""
        return self.mask(PE_KINDS)

    @cached_property
    def sfu_passes(self) -> np.ndarray:
        """SFU passes over each op's output elements (0: not an SFU op)."""
        passes = np.zeros(len(self.kind))
        for kind, n in SFU_PASSES.items():
            passes[self.kind == kind.value] = n
        return passes

    def peaks(self, spec: object) -> np.ndarray:
        """Per-op peak op/s of ``spec`` (by each op's dtype), cached per spec."""
        cache = self.__dict__.setdefault("_peaks", {})
        key = id(spec)
        if key not in cache:
            peak = np.ones(len(self.kind))
            for d in np.unique(self.dtype):
                peak[self.dtype == d] = spec.peak_ops_per_s(str(d))  # type: ignore[attr-defined]
            cache[key] = (spec, peak)   # keep spec alive so its id is not reused
        return cache[key][1]

    def widen(self, n: int) -> AffineGraph:
        """The same pass over ``n`` tokens instead of ``self.tokens`` (draft tree levels).

        Linear in the token count: FLOPs, activations, KV writes and output rows scale; weights
        and KV reads do not. Attention over the new tokens themselves is ignored (n ≪ context).
        """
        f = n / self.tokens
        scale = ("flops", "act_bytes", "kv_write_bytes", "rows", "elems")
        return replace(self, tokens=n,
                       base={k: v * f if k in scale else v for k, v in self.base.items()},
                       slope={k: v * f if k in scale else v for k, v in self.slope.items()})

    def compulsory_bytes(self, context: float) -> float:
        a = self.at(context)
        return float((a["weight_bytes"] + a["kv_read_bytes"] + a["kv_write_bytes"]).sum())

    def roofline_s(self, spec: object, context: float) -> float:
        """``sim.roofline.graph_bound_s`` of the interpolated graph, on arrays."""
        a = self.at(context)
        peak = self.peaks(spec)
        nbytes = a["weight_bytes"] + a["kv_read_bytes"] + a["kv_write_bytes"]
        return float(np.maximum(a["flops"] / peak, nbytes / spec.mem_bytes_per_s).sum())  # type: ignore

"""The op-graph IR: small, immutable, torch-free, JSON round-trip.

A :class:`Graph` is one forward pass of one model in one phase (prefill of T tokens, decode
of 1 token over a KV cache of C, verify of k tokens over C). Nodes are in topological order;
each carries what timing models need — FLOPs, weight bytes, activation bytes, KV-cache bytes —
so simulators never look back at torch.

Byte accounting (per node, at the node's storage dtype unless a mapping pass set
``attrs["weight_bits"]``/``attrs["kv_bits"]``):

- ``weight_bytes``: parameter bytes this op streams (a linear reads its whole weight; an
  embedding reads only the gathered rows; a mixture-of-experts ``EXPERTS`` node reads the
  experts its tokens are routed to, as ``models.moe.route`` sets it).
- ``act_bytes``: activation bytes read and written if the op ran alone (unfused).
- ``kv_read_bytes`` / ``kv_write_bytes``: KV-cache traffic (attention reads the cache,
  ``KV_APPEND`` writes the new rows).

``weight_bytes + kv_read_bytes + kv_write_bytes`` is compulsory off-chip traffic for a batch-1
forward pass whose weights and cache live off chip; it is what the roofline bound uses.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "DTYPE_BYTES",
    "FORMAT",
    "Graph",
    "GraphTotals",
    "Node",
    "OpKind",
    "Param",
    "Phase",
    "dtype_bytes",
    "interpolate",
]

FORMAT = "llmcosim.graph/1"

# Storage size of the dtypes a traced graph can carry (torch names without the "torch." prefix).
DTYPE_BYTES: Mapping[str, float] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1,
    "float8_e5m2": 1, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype``; ValueError naming the known dtypes otherwise."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}") from None


class OpKind(StrEnum):
    """What an op does, at the granularity timing models care about."""

    EMBEDDING = "embedding"      # gather rows of a weight table
    LINEAR = "linear"            # activation x weight (GEMM/GEMV)
    MATMUL = "matmul"            # activation x activation (attention scores/context)
    ATTENTION = "attention"      # fused attention (scaled_dot_product_attention)
    SOFTMAX = "softmax"
    NORM = "norm"                # LayerNorm / RMSNorm (one node per norm module)
    ACTIVATION = "activation"    # SiLU, GELU, ReLU (one node per activation module)
    ROPE = "rope"                # rotary tables and their application to q/k
    ELEMENTWISE = "elementwise"  # add, mul, casts, masks, ...
    REDUCTION = "reduction"      # mean, sum, max, cumsum ...
    KV_APPEND = "kv_append"      # write the new K or V rows into the cache
    DATA = "data"                # copies, concatenation, index creation: no arithmetic
    EXPERTS = "experts"          # a mixture-of-experts block's expert FFNs (models.moe)


class Phase(StrEnum):
    PREFILL = "prefill"   # T prompt tokens, empty cache
    DECODE = "decode"     # 1 token over a cache of C
    VERIFY = "verify"     # k speculative tokens over a cache of C


@dataclass(frozen=True)
class Param:
    """A model parameter (unique; tied weights appear once)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bits: int | None = None   # storage bits per element after compression (None: the dtype's)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes(self) -> int:
        if self.bits is not None:
            return -(-self.numel * self.bits // 8)
        return int(self.numel * dtype_bytes(self.dtype))


@dataclass(frozen=True)
class Node:
    """One IR op. ``inputs`` name producer nodes or graph inputs; shapes are tuples."""

    name: str
    kind: OpKind
    op: str                                  # source ATen op, e.g. "aten.linear.default"
    inputs: tuple[str, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    dtype: str
    flops: int = 0
    weight_bytes: int = 0
    act_bytes: int = 0
    kv_read_bytes: int = 0
    kv_write_bytes: int = 0
    layer: int = -1                          # decoder layer index, -1 outside the layers
    module: str = ""                         # module path in the source model
    weights: tuple[str, ...] = ()            # names of the Params this op reads
    attrs: tuple[tuple[str, Any], ...] = ()  # free attributes set by mapping passes

    @property
    def attr(self) -> dict[str, Any]:
        return dict(self.attrs)

    def with_attrs(self, **updates: Any) -> Node:
        merged = dict(self.attrs)
        merged.update({k: _freeze(v) for k, v in updates.items()})
        return replace(self, attrs=tuple(sorted(merged.items())))

    @property
    def compulsory_bytes(self) -> int:
        """Off-chip bytes no schedule can avoid (weights and KV cache)."""
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes

    @property
    def total_bytes(self) -> int:
        """Bytes moved if this op ran alone, activations included."""
        return self.compulsory_bytes + self.act_bytes

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["kind"] = self.kind.value
        d["in_shapes"] = [list(s) for s in self.in_shapes]
        d["out_shape"] = list(self.out_shape)
        d["inputs"] = list(self.inputs)
        d["weights"] = list(self.weights)
        d["attrs"] = dict(self.attrs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Node:
        return cls(
            name=d["name"], kind=OpKind(d["kind"]), op=d["op"], inputs=tuple(d["inputs"]),
            in_shapes=tuple(tuple(s) for s in d["in_shapes"]), out_shape=tuple(d["out_shape"]),
            dtype=d["dtype"], flops=d["flops"], weight_bytes=d["weight_bytes"],
            act_bytes=d["act_bytes"], kv_read_bytes=d["kv_read_bytes"],
            kv_write_bytes=d["kv_write_bytes"], layer=d["layer"], module=d["module"],
            weights=tuple(d["weights"]), attrs=tuple(sorted(_freeze(d["attrs"]).items())),
        )


def _freeze(value: Any) -> Any:
    """JSON lists back to tuples so nodes stay hashable and compare equal after a round-trip."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class GraphTotals:
    nodes: int
    flops: int
    weight_bytes: int
    act_bytes: int
    kv_read_bytes: int
    kv_write_bytes: int
    param_bytes: int
    params: int
    by_kind: tuple[tuple[str, int, int, int], ...]  # (kind, count, flops, compulsory bytes)

    @property
    def compulsory_bytes(self) -> int:
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes


@dataclass(frozen=True)
class Graph:
    """One forward pass: ``batch`` sequences, ``tokens`` new tokens each over ``context`` cached."""

    model: str
    phase: Phase
    batch: int
    tokens: int
    context: int
    dtype: str
    nodes: tuple[Node, ...]
    params: tuple[Param, ...]
    meta: tuple[tuple[str, Any], ...] = field(default=())  # provenance: versions, config

    def totals(self) -> GraphTotals:
        by: dict[str, list[int]] = {}
        for n in self.nodes:
            row = by.setdefault(n.kind.value, [0, 0, 0])
            row[0] += 1
            row[1] += n.flops
            row[2] += n.compulsory_bytes
        return GraphTotals(
            nodes=len(self.nodes),
            flops=sum(n.flops for n in self.nodes),
            weight_bytes=sum(n.weight_bytes for n in self.nodes),
            act_bytes=sum(n.act_bytes for n in self.nodes),
            kv_read_bytes=sum(n.kv_read_bytes for n in self.nodes),
            kv_write_bytes=sum(n.kv_write_bytes for n in self.nodes),
            param_bytes=sum(p.bytes for p in self.params),
            params=sum(p.numel for p in self.params),
            by_kind=tuple((k, *v) for k, v in sorted(by.items(), key=lambda kv: -kv[1][1])),
        )

    def kinds(self) -> Counter[OpKind]:
        return Counter(n.kind for n in self.nodes)

    def with_nodes(self, nodes: Iterable[Node]) -> Graph:
        return replace(self, nodes=tuple(nodes))

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "model": self.model, "phase": self.phase.value,
            "batch": self.batch, "tokens": self.tokens, "context": self.context,
            "dtype": self.dtype, "meta": dict(self.meta),
            "params": [{"name": p.name, "shape": list(p.shape), "dtype": p.dtype,
                        **({"bits": p.bits} if p.bits is not None else {})}
                       for p in self.params],
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), separators=(",", ":"))
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Graph:
        if d.get("format") != FORMAT:
            raise ValueError(f"not an llmcosim graph: format {d.get('format')!r}, "
                             f"expected {FORMAT!r}")
        return cls(
            model=d["model"], phase=Phase(d["phase"]), batch=d["batch"], tokens=d["tokens"],
            context=d["context"], dtype=d["dtype"],
            nodes=tuple(Node.from_dict(n) for n in d["nodes"]),
            params=tuple(Param(p["name"], tuple(p["shape"]), p["dtype"], p.get("bits"))
                         for p in d["params"]),
            meta=tuple(sorted(_freeze(d.get("meta", {})).items())),
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Graph:
        p = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(text_or_path)
        return cls.from_dict(json.loads(text))


# -- context interpolation -----------------------------------------------------------------
_AFFINE_FIELDS = ("flops", "weight_bytes", "act_bytes", "kv_read_bytes", "kv_write_bytes")


def _affine_int(v0: int, v1: int, c0: int, c1: int, c: int, what: str) -> int:
    num = (v1 - v0) * (c - c0)
    if num % (c1 - c0):
        raise ValueError(f"{what} is not affine in the context length ({v0} at {c0}, {v1} at {c1})")
    return v0 + num // (c1 - c0)


def _affine_shape(s0: tuple[int, ...], s1: tuple[int, ...], c0: int, c1: int, c: int,
                  what: str) -> tuple[int, ...]:
    if len(s0) != len(s1):
        raise ValueError(f"{what}: rank differs between contexts ({s0} vs {s1})")
    return tuple(_affine_int(a, b, c0, c1, c, what) for a, b in zip(s0, s1, strict=True))


@lru_cache(maxsize=32)   # graphs are immutable: a decode bucket seen again is not rebuilt
def interpolate(g0: Graph, g1: Graph, context: int) -> Graph:
    """The graph at ``context`` from two traces of the same model and phase at other contexts.

    Every shape and count in a decoder's decode/verify pass is affine in the cache length, so two
    traces determine all others exactly; anything that is not affine raises ValueError.
    """
    c0, c1 = g0.context, g1.context
    if c0 == c1:
        raise ValueError("interpolate needs graphs traced at two different context lengths")
    same = (g0.model, g0.phase, g0.batch, g0.tokens, g0.dtype, len(g0.nodes))
    if same != (g1.model, g1.phase, g1.batch, g1.tokens, g1.dtype, len(g1.nodes)):
        raise ValueError("interpolate needs two traces of the same model, phase, batch and tokens")
    nodes = []
    for a, b in zip(g0.nodes, g1.nodes, strict=True):
        if (a.name, a.kind, a.op) != (b.name, b.kind, b.op):
            raise ValueError(f"graphs differ in structure at node {a.name!r} / {b.name!r}")
        what = f"node {a.name!r}"
        upd = {f: _affine_int(getattr(a, f), getattr(b, f), c0, c1, context, f"{what}.{f}")
               for f in _AFFINE_FIELDS}
        upd["out_shape"] = _affine_shape(a.out_shape, b.out_shape, c0, c1, context, what)
        upd["in_shapes"] = tuple(_affine_shape(x, y, c0, c1, context, what)
                                 for x, y in zip(a.in_shapes, b.in_shapes, strict=True))
        nodes.append(replace(a, **upd))
    return replace(g0, context=context, nodes=tuple(nodes))

"""Mixture-of-experts routing: which experts' weights a forward pass reads (torch-free).

A traced MoE block is one ``OpKind.EXPERTS`` node (``models.lower``) whose attrs record the
block's structure: ``num_experts`` E, ``top_k`` k, ``tokens`` T routed in this pass (batch x
new tokens), ``expert_bytes`` (one expert's weights), ``expert_flops`` (the GEMM FLOPs of one
token through one expert) and ``expert_gemms`` (one expert's (K, N) matrices). Its FLOPs do not
depend on the routing (every token goes through exactly k experts: T x k x ``expert_flops``
plus the gating arithmetic). What does depend on it is the weight traffic: an expert no token
is routed to is not read. :func:`route` is the pass that sets it from an explicit
:class:`Routing` (``uniform`` by default, as ``models.trace`` applies it):

- ``weight_bytes`` = expected distinct experts x ``expert_bytes``;
- attrs ``expert_tokens`` (expected tokens per expert, summing to T x k), ``distinct_experts``
  and ``routing`` (the routing's label).

The model (assumption: tokens are routed independently of each other). A token picks k distinct
experts; let ``q_e`` be the probability that expert e is among them (``sum q_e = k``). Expert
e then gets Binomial(T, q_e) tokens: ``T q_e`` expected, and it is read at all with probability
``1 - (1 - q_e)^T``, so the expected number of distinct experts is ``sum_e 1 - (1 - q_e)^T``.

- ``uniform``: ``q_e = k / E``, so distinct = ``E (1 - (1 - k/E)^T)``; at batch 1 decode
  (T = 1) that is exactly k experts, and it tends to E as T grows.
- ``zipf:S``: expert popularity ``p_e ~ 1 / (e + 1)^S`` (expert 0 hottest; which experts are hot
  does not change the traffic), ``q_e = min(1, c p_e)`` with c set so that ``sum q_e = k``
  (no expert can be picked twice by one token).
- a trace (JSON or JSONL of per-expert token counts, :func:`load_routing`): the counts of an
  observed run give ``q_e = k c_e / sum c``; when a layer's counts sum to exactly T x k they
  are taken as this pass's own assignment (distinct = experts with a non-zero count).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from models.errors import UserError, read_text
from models.graph import Graph, OpKind

__all__ = ["UNIFORM", "ExpertLoad", "Routing", "expert_load", "inclusion", "load_routing",
           "parse_routing", "route"]


@dataclass(frozen=True)
class Routing:
    """How tokens spread over experts: ``uniform``, ``zipf`` (exponent ``zipf_s``) or ``trace``
    (``counts``: per-expert token counts, one row per MoE layer or one row for all)."""

    kind: str = "uniform"
    zipf_s: float = 0.0
    counts: tuple[tuple[float, ...], ...] = ()
    source: str = ""

    @property
    def label(self) -> str:
        if self.kind == "zipf":
            return f"zipf:{self.zipf_s:g}"
        return f"trace:{self.source}" if self.kind == "trace" else "uniform"

    def row(self, layer: int, layers: int) -> tuple[float, ...] | None:
        """The trace counts of MoE layer ``layer`` of ``layers`` (None: not a trace)."""
        if self.kind != "trace":
            return None
        if len(self.counts) == 1:
            return self.counts[0]
        if len(self.counts) != layers:
            raise UserError(f"routing trace {self.source!r} has {len(self.counts)} layers of "
                            f"counts; the model has {layers} MoE layers (give 1 or {layers})")
        return self.counts[layer]


UNIFORM = Routing()


@dataclass(frozen=True)
class ExpertLoad:
    tokens: tuple[float, ...]   # expected tokens per expert (sums to T x k)
    distinct: float             # expected experts with at least one token


def inclusion(p: list[float], k: int) -> list[float]:
    """Per-expert probability of being among a token's k picks, ``min(1, c p_e)`` with
    ``sum = k`` (c found by clipping the experts that would exceed 1 and rescaling the rest)."""
    clipped: set[int] = set()
    while True:
        rest = sum(p[e] for e in range(len(p)) if e not in clipped)
        c = (k - len(clipped)) / rest if rest > 0 else 0.0
        new = {e for e in range(len(p)) if e not in clipped and c * p[e] >= 1.0}
        if not new:
            return [1.0 if e in clipped else c * p[e] for e in range(len(p))]
        clipped |= new


def _probabilities(routing: Routing, experts: int, row: tuple[float, ...] | None) -> list[float]:
    if row is not None:
        total = sum(row)
        return [c / total for c in row]
    if routing.kind == "zipf":
        w = [(e + 1) ** -routing.zipf_s for e in range(experts)]
        return [x / sum(w) for x in w]
    return [1.0 / experts] * experts


def expert_load(experts: int, top_k: int, tokens: int, routing: Routing = UNIFORM,
                layer: int = 0, layers: int = 1) -> ExpertLoad:
    """Expected per-expert tokens and distinct experts of ``tokens`` tokens routed top-``top_k``
    over ``experts`` experts, in MoE layer ``layer`` of ``layers`` (see the module doc)."""
    row = routing.row(layer, layers)
    if row is not None:
        if len(row) != experts:
            raise UserError(f"routing trace {routing.source!r} has counts for {len(row)} "
                            f"experts; the model has {experts}")
        if sum(row) == tokens * top_k:   # this pass's own assignment
            return ExpertLoad(tuple(float(c) for c in row), float(sum(1 for c in row if c)))
    q = inclusion(_probabilities(routing, experts, row), top_k)
    return ExpertLoad(tuple(tokens * x for x in q), sum(1.0 - (1.0 - x) ** tokens for x in q))


def route(g: Graph, routing: Routing = UNIFORM) -> Graph:
    """``g`` with each experts node's weight traffic and token split set by ``routing``;
    a graph without experts nodes is returned unchanged."""
    moe = [i for i, n in enumerate(g.nodes) if n.kind is OpKind.EXPERTS]
    if not moe:
        return g
    nodes = list(g.nodes)
    for j, i in enumerate(moe):
        n = nodes[i]
        a = n.attr
        load = expert_load(a["num_experts"], a["top_k"], a["tokens"], routing, j, len(moe))
        nodes[i] = replace(n, weight_bytes=round(load.distinct * a["expert_bytes"])).with_attrs(
            routing=routing.label, distinct_experts=round(load.distinct, 6),
            expert_tokens=tuple(round(t, 6) for t in load.tokens))
    return g.with_nodes(nodes)


def _rows_from(data: object, source: str) -> list[list[float]]:
    """Count rows of a routing trace: ``{"counts": [[...], ...]}``, ``[[...], ...]`` or one
    row ``[...]``; JSONL lines ``{"layer": i, "counts": [...]}`` are summed per layer."""
    if isinstance(data, dict) and "counts" in data:
        data = data["counts"]
    if isinstance(data, list) and data and all(isinstance(x, (int, float)) for x in data):
        data = [data]
    ok = isinstance(data, list) and data and all(
        isinstance(r, list) and r and all(isinstance(c, (int, float)) and c >= 0 for c in r)
        and sum(r) > 0 for r in data)
    if not ok:
        raise UserError(f"routing trace {source!r}: expected per-expert token counts "
                        "(non-negative numbers, not all zero) as {\"counts\": [[...] per layer]}"
                        " or JSONL lines {\"layer\": i, \"counts\": [...]}")
    return data  # type: ignore[return-value]


def load_routing(path: str | Path) -> Routing:
    """A trace routing from a JSON file or a JSONL file of per-step records."""
    p = Path(path)
    text = read_text(p, "routing trace", kind="JSON")
    try:
        if p.suffix == ".jsonl":
            by_layer: dict[int, list[float]] = {}
            for line in filter(str.strip, text.splitlines()):
                rec = json.loads(line)
                layer = int(rec.get("layer", 0)) if isinstance(rec, dict) else 0
                (row,) = _rows_from(rec, str(p))
                acc = by_layer.setdefault(layer, [0.0] * len(row))
                if len(acc) != len(row):
                    raise UserError(f"routing trace {str(p)!r}: layer {layer} has rows of "
                                    f"{len(acc)} and {len(row)} experts")
                by_layer[layer] = [a + c for a, c in zip(acc, row, strict=True)]
            rows = [by_layer[k] for k in sorted(by_layer)]
        else:
            rows = _rows_from(json.loads(text), str(p))
    except UserError:
        raise
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise UserError(f"routing trace {str(p)!r} is not valid: {e}") from None
    if not rows:
        raise UserError(f"routing trace {str(p)!r} holds no counts")
    return Routing("trace", counts=tuple(tuple(float(c) for c in r) for r in rows), source=p.name)


def parse_routing(text: str | None) -> Routing:
    """``--routing``: ``uniform`` (default), ``zipf:S`` (S >= 0) or a .json/.jsonl trace."""
    if text is None or text == "uniform":
        return UNIFORM
    if text.startswith("zipf:"):
        try:
            s = float(text[5:])
        except ValueError:
            s = -1.0
        if not s >= 0:
            raise UserError(f"--routing {text!r}: the Zipf exponent must be a number >= 0")
        return Routing("zipf", zipf_s=s)
    if text.endswith((".json", ".jsonl")):
        return load_routing(text)
    raise UserError(f"unknown --routing {text!r}; allowed: uniform, zipf:S (e.g. zipf:1.2), "
                    "or a .json/.jsonl file of per-expert token counts")

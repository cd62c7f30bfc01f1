"""Roofline timing: per op, time = max(FLOPs / peak, compulsory bytes / bandwidth).

It is the lower bound every later simulator is tested against, and the ``--fidelity roofline``
fast path of ``simulate``. Compulsory bytes are weights and KV-cache traffic (see
``models.graph``): activations may stay on chip, so counting them would not be a bound.
Decode passes are evaluated for all context lengths at once: every node's FLOPs and bytes are
affine in the context (``models.graph.interpolate``), so the per-pass costs form a matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.graph import Graph, OpKind
from models.workload import Workload
from sim.result import SimResult, result_from_times
from sim.spec import HardwareSpec

__all__ = ["OpBound", "graph_bound_s", "moe_notes", "op_bounds", "simulate"]


@dataclass(frozen=True)
class OpBound:
    """Roofline of one op: which resource bounds it and for how long."""

    name: str
    kind: OpKind
    flops: int
    bytes: int
    compute_s: float
    memory_s: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def _arrays(spec: HardwareSpec, g: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flops = np.array([n.flops for n in g.nodes], dtype=np.float64)
    nbytes = np.array([n.compulsory_bytes for n in g.nodes], dtype=np.float64)
    peak = np.array([spec.peak_ops_per_s(n.dtype) for n in g.nodes], dtype=np.float64)
    return flops, nbytes, peak


def op_bounds(spec: HardwareSpec, g: Graph) -> list[OpBound]:
    """Per-op roofline of ``g`` on ``spec``."""
    bw = spec.mem_bytes_per_s
    return [OpBound(n.name, n.kind, n.flops, n.compulsory_bytes,
                    n.flops / spec.peak_ops_per_s(n.dtype), n.compulsory_bytes / bw)
            for n in g.nodes]


def graph_bound_s(spec: HardwareSpec, g: Graph) -> float:
    """Lower bound on the time of one forward pass of ``g``."""
    flops, nbytes, peak = _arrays(spec, g)
    return float(np.maximum(flops / peak, nbytes / spec.mem_bytes_per_s).sum())


def _by_kind(g: Graph, per_node_s: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for n, t in zip(g.nodes, per_node_s, strict=True):
        out[n.kind.value] = out.get(n.kind.value, 0.0) + float(t) * 1e3
    return out


def _decode_matrix(spec: HardwareSpec, w: Workload) -> np.ndarray:
    """Seconds per (node, decode pass): costs interpolated linearly in the context."""
    assert w.decode_first is not None and w.decode_last is not None
    f0, b0, peak = _arrays(spec, w.decode_first)
    f1, b1, _ = _arrays(spec, w.decode_last)
    c0, c1 = w.decode_first.context, w.decode_last.context
    ctx = np.asarray(w.decode_contexts, dtype=np.float64)
    frac = (ctx - c0) / (c1 - c0) if c1 != c0 else np.zeros_like(ctx)
    flops = f0[:, None] + (f1 - f0)[:, None] * frac[None, :]   # (nodes, passes)
    nbytes = b0[:, None] + (b1 - b0)[:, None] * frac[None, :]  # (nodes, passes)
    return np.maximum(flops / peak[:, None], nbytes / spec.mem_bytes_per_s)


def moe_notes(spec: HardwareSpec, w: Workload) -> tuple[str, ...]:
    """What a mixture-of-experts workload's weight traffic assumes (empty for dense models)."""
    out = []
    for phase, g in (("prefill", w.prefill), ("decode", w.decode_first)):
        ex = [n.attr for n in g.nodes if n.kind is OpKind.EXPERTS] if g is not None else []
        if ex:
            a = ex[0]
            mean = sum(x.get("distinct_experts", x["num_experts"]) for x in ex) / len(ex)
            out.append(f"{phase}: {a['tokens']} tokens routed top-{a['top_k']} of "
                       f"{a['num_experts']} experts ({a.get('routing', 'unrouted')}): "
                       f"{mean:.2f} experts' weights read per MoE layer")
    if out and spec.kind == "flightllm":
        out.append("FlightLLM's cycle-level flow does not map mixture-of-experts layers: "
                   "roofline only")
    return tuple(out)


def simulate(spec: HardwareSpec, w: Workload) -> SimResult:
    """Roofline prefill + decode of ``w`` on ``spec``."""
    breakdown: dict[str, dict[str, float]] = {}
    counts: dict[str, float] = {}
    prefill_s = 0.0
    if w.prefill is not None:
        flops, nbytes, peak = _arrays(spec, w.prefill)
        per = np.maximum(flops / peak, nbytes / spec.mem_bytes_per_s)
        prefill_s = float(per.sum())
        breakdown["prefill"] = _by_kind(w.prefill, per)
        counts["prefill_flops"] = float(flops.sum())
        counts["prefill_bytes"] = float(nbytes.sum())
    decode_s = 0.0
    if w.decode_tokens:
        mat = _decode_matrix(spec, w)
        decode_s = float(mat.sum())
        breakdown["decode"] = _by_kind(w.decode_first, mat.sum(axis=1))
        t_first, t_last = w.decode_first.totals(), w.decode_last.totals()
        counts["decode_flops"] = (t_first.flops + t_last.flops) / 2 * w.decode_tokens
        counts["decode_bytes"] = (t_first.compulsory_bytes + t_last.compulsory_bytes) / 2 \
            * w.decode_tokens
    power_note = "board/TDP power x time" if spec.power_w else "not published"
    return result_from_times(spec, w, "roofline", prefill_s, decode_s, breakdown_ms=breakdown,
                             counts=counts, extra={"power_source": power_note},
                             notes=moe_notes(spec, w))

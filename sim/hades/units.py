"""HADES units as timing functions of their parameters (cycles per op, vectorised over ops).

- **PE array** (``pe_rows`` × ``pe_cols`` MACs): weight-streaming GEMM/GEMV. A (K × N) operand is
  cut into ⌈K/R⌉·⌈N/C⌉ tiles; each tile is held while the ``rows`` token rows stream through,
  one row per cycle, so an op takes ``outer·⌈K/R⌉·⌈N/C⌉·rows`` cycles plus an R + C cycle
  pipeline fill. Tile quantisation is the only inefficiency; at rows = 1 (decode) that is the
  full array doing a GEMV, which requires the SRAM to deliver R·C weights per cycle (checked in
  ``HadesSpec.check`` only for the activation side; weights arrive at the HBM rate anyway).
- **Off-chip memory**: weights and KV stream at ``offchip_bytes_per_s · offchip_efficiency``,
  double-buffered against compute, so an op takes max(compute, memory).
- **SFU**: ``elems · passes / sfu_lanes`` cycles (softmax 3 passes, norm 2, others 1).
- **Data movement ops** (embedding gathers, KV appends, copies): memory time only.

:func:`pass_cost` returns the whole pass and its per-layer chunks, so the event-driven engine
can let two passes contend for the memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.hades.affine import AffineGraph
from sim.hades.spec import HadesSpec

__all__ = ["PassCost", "by_kind", "pass_cost", "pass_times", "sampling_cycles"]


@dataclass(frozen=True)
class PassCost:
    """One forward pass on one engine (seconds and action counts)."""

    time_s: float                 # alone, with compute/memory overlap per op
    mem_s: float                  # off-chip busy time
    compute_s: float              # PE + SFU busy time
    chunks: tuple[tuple[float, float], ...]   # per layer: (alone s, memory s); () if not asked
    macs: float
    offchip_bytes: float
    sram_bytes: float
    sfu_elems: float
    bound_s: float                # roofline of the same pass on the same engine
    by_kind: dict[str, float] = field(default_factory=dict)   # seconds per op kind (alone)


def by_kind(kinds: np.ndarray, seconds: np.ndarray) -> dict[str, float]:
    """Per-op seconds summed by op kind (``OpKind`` values), as ``breakdown_ms`` groups them."""
    out: dict[str, float] = {}
    for k in np.unique(kinds):
        out[str(k)] = float(seconds[kinds == k].sum())
    return out


def _pe_cycles(a: dict[str, np.ndarray], rows: int, cols: int) -> np.ndarray:
    tiles = np.ceil(a["k_dim"] / rows) * np.ceil(a["n_dim"] / cols)
    mapped = a["outer"] * tiles * a["rows"]
    dense = a["flops"] / (2.0 * rows * cols)   # never faster than the peak
    return np.maximum(mapped, dense) + (rows + cols)


def _op_seconds(spec: HadesSpec, g: AffineGraph, a: dict[str, np.ndarray], draft: bool,
                weights_on_chip: bool, kv_indirect: bool) -> dict[str, np.ndarray]:
    """Per-op compute and memory seconds (arrays broadcast over a leading context axis)."""
    separate = draft and spec.draft_engine == "separate"
    rows, cols = (spec.draft_pe_rows, spec.draft_pe_cols) if separate else \
        (spec.pe_rows, spec.pe_cols)
    f = spec.clock_hz
    cycles = np.where(g.pe_mask, _pe_cycles(a, rows, cols), 0.0)
    sfu_elems = a["elems"] * g.sfu_passes
    # no op beats the array's peak, whichever unit runs it
    floor = a["flops"] / (2.0 * rows * cols)
    compute_s = np.maximum(cycles + sfu_elems / spec.sfu_lanes, floor) / f
    bw = spec.offchip_bytes_per_s * spec.offchip_efficiency
    w, kv_r, kv_w = a["weight_bytes"], a["kv_read_bytes"], a["kv_write_bytes"]
    if weights_on_chip:   # pinned in the draft engine's SRAM: read at SRAM bandwidth
        compute_s = np.maximum(compute_s, w / (spec.draft_sram_bytes_per_cycle * f))
        off = kv_r + kv_w
        mem_s = off / bw
    else:
        off = w + kv_r + kv_w
        eff = spec.kv_indirect_efficiency if kv_indirect else 1.0
        mem_s = (w + kv_w) / bw + kv_r / (bw * eff)
    peak = 2.0 * rows * cols * f
    return {"compute_s": compute_s, "mem_s": mem_s, "sfu_elems": sfu_elems, "off": off,
            "sram": a["act_bytes"] + (w if weights_on_chip else 0.0),
            "bound": np.maximum(a["flops"] / peak, off / spec.offchip_bytes_per_s)}


def pass_cost(spec: HadesSpec, g: AffineGraph, context: float, *, draft: bool = False,
              weights_on_chip: bool = False, kv_indirect: bool = False,
              chunks: bool = True) -> PassCost:
    """Time and counts of pass ``g`` at ``context`` on the main array or the draft engine."""
    a = g.at(context)
    o = _op_seconds(spec, g, a, draft, weights_on_chip, kv_indirect)
    t = np.maximum(o["compute_s"], o["mem_s"])
    per_layer = []
    if chunks:   # only needed when two engines contend for the memory
        for layer in np.unique(g.layer):
            m = g.layer == layer
            per_layer.append((float(t[m].sum()), float(o["mem_s"][m].sum())))
    return PassCost(
        time_s=float(t.sum()), mem_s=float(o["mem_s"].sum()),
        compute_s=float(o["compute_s"].sum()), chunks=tuple(per_layer),
        macs=float(a["flops"].sum() / 2), offchip_bytes=float(o["off"].sum()),
        sram_bytes=float(o["sram"].sum()), sfu_elems=float(o["sfu_elems"].sum()),
        bound_s=float(o["bound"].sum()), by_kind=by_kind(g.kind, t))


def pass_times(spec: HadesSpec, g: AffineGraph, contexts: np.ndarray
               ) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Seconds of pass ``g`` at each of ``contexts`` on the main array, summed counts, and
    seconds per op kind summed over the passes."""
    times = np.empty(len(contexts))
    per_op = np.zeros(len(g.kind))
    counts = dict.fromkeys(("macs", "offchip_bytes", "sram_bytes", "sfu_elems"), 0.0)
    for s in range(0, len(contexts), 256):      # (256 passes, ops) blocks bound the memory
        ctx = np.asarray(contexts[s:s + 256], dtype=np.float64)[:, None]
        a = g.at(ctx)
        o = _op_seconds(spec, g, a, False, False, False)
        t = np.maximum(o["compute_s"], o["mem_s"])
        times[s:s + 256] = t.sum(axis=1)
        per_op += t.sum(axis=0)
        counts["macs"] += float(np.broadcast_to(a["flops"], o["off"].shape).sum() / 2)
        counts["offchip_bytes"] += float(o["off"].sum())
        counts["sram_bytes"] += float(np.broadcast_to(o["sram"], o["off"].shape).sum())
        counts["sfu_elems"] += float(np.broadcast_to(o["sfu_elems"], o["off"].shape).sum())
    return times, counts, by_kind(g.kind, per_op)


def sampling_cycles(spec: HadesSpec, vocab: int, positions: int) -> float:
    """SFU cycles to turn ``positions`` logit rows into probabilities and a top-k shortlist.

    Greedy: one max-reduction pass per row. Sampling: softmax (3 passes) plus a top-k select
    pass, so the verifier sees p and q over ``verify_topk`` candidates.
    """
    per_row = vocab * (1 if spec.verify_mode == "greedy" else 4)
    return positions * per_row / spec.sfu_lanes



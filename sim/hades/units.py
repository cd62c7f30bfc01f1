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

from dataclasses import dataclass

import numpy as np

from sim.hades.affine import PE_KINDS, SFU_PASSES, AffineGraph
from sim.hades.spec import HadesSpec

__all__ = ["PassCost", "pass_cost", "sampling_cycles"]


@dataclass(frozen=True)
class PassCost:
    """One forward pass on one engine (seconds and action counts)."""

    time_s: float                 # alone, with compute/memory overlap per op
    mem_s: float                  # off-chip busy time
    compute_s: float              # PE + SFU busy time
    chunks: tuple[tuple[float, float], ...]   # per layer: (alone seconds, memory seconds)
    macs: float
    offchip_bytes: float
    sram_bytes: float
    sfu_elems: float
    bound_s: float                # roofline of the same pass on the same engine


def _pe_cycles(a: dict[str, np.ndarray], rows: int, cols: int) -> np.ndarray:
    tiles = np.ceil(a["k_dim"] / rows) * np.ceil(a["n_dim"] / cols)
    mapped = a["outer"] * tiles * a["rows"]
    dense = a["flops"] / (2.0 * rows * cols)   # never faster than the peak
    return np.maximum(mapped, dense) + (rows + cols)


def pass_cost(spec: HadesSpec, g: AffineGraph, context: float, *, draft: bool = False,
              weights_on_chip: bool = False, kv_indirect: bool = False) -> PassCost:
    """Time and counts of pass ``g`` at ``context`` on the main array or the draft engine."""
    a = g.at(context)
    separate = draft and spec.draft_engine == "separate"
    rows, cols = (spec.draft_pe_rows, spec.draft_pe_cols) if separate else \
        (spec.pe_rows, spec.pe_cols)
    f = spec.clock_hz
    pe = g.mask(PE_KINDS)
    cycles = np.where(pe, _pe_cycles(a, rows, cols), 0.0)
    passes = np.zeros_like(cycles)
    for kind, n in SFU_PASSES.items():
        passes[g.kind == kind.value] = n
    sfu_elems = a["elems"] * passes
    cycles = cycles + sfu_elems / spec.sfu_lanes
    compute_s = cycles / f
    bw = spec.offchip_bytes_per_s * spec.offchip_efficiency
    w = a["weight_bytes"]
    kv_r, kv_w = a["kv_read_bytes"], a["kv_write_bytes"]
    if weights_on_chip:   # pinned in the draft engine's SRAM: read at SRAM bandwidth
        sram_w_s = w / (spec.draft_sram_bytes_per_cycle * f)
        off = kv_r + kv_w
        mem_s = off / bw
        compute_s = np.maximum(compute_s, sram_w_s)
    else:
        off = w + kv_r + kv_w
        mem_s = (w + kv_w) / bw + kv_r / (bw * (spec.kv_indirect_efficiency if kv_indirect
                                                else 1.0))
    t = np.maximum(compute_s, mem_s)
    chunks = []
    for layer in np.unique(g.layer):
        m = g.layer == layer
        chunks.append((float(t[m].sum()), float(mem_s[m].sum())))
    peak = 2.0 * rows * cols * f
    bound_bytes = (kv_r + kv_w) if weights_on_chip else off
    bound = float(np.maximum(a["flops"] / peak, bound_bytes / spec.offchip_bytes_per_s).sum())
    return PassCost(
        time_s=float(t.sum()), mem_s=float(mem_s.sum()), compute_s=float(compute_s.sum()),
        chunks=tuple(chunks), macs=float(a["flops"].sum() / 2), offchip_bytes=float(off.sum()),
        sram_bytes=float((a["act_bytes"] + (w if weights_on_chip else 0.0)).sum()),
        sfu_elems=float(sfu_elems.sum()), bound_s=bound)


def sampling_cycles(spec: HadesSpec, vocab: int, positions: int) -> float:
    """SFU cycles to turn ``positions`` logit rows into probabilities and a top-k shortlist.

    Greedy: one max-reduction pass per row. Sampling: softmax (3 passes) plus a top-k select
    pass, so the verifier sees p and q over ``verify_topk`` candidates.
    """
    per_row = vocab * (1 if spec.verify_mode == "greedy" else 4)
    return positions * per_row / spec.sfu_lanes



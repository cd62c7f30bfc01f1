"""A plain workload on HADES's draft engine: what speculative serving times drafts with.

``simulate --draft`` runs the draft on the draft engine inside the event-driven speculation
schedule (``sim.hades.engine``). Serving (``sim.serving.speculative``) needs the draft
model's passes at many batches and contexts, as a pass table; this gives them as a
:class:`SimResult` like ``simulate_cycle``'s, per-op-kind breakdown included, but on the
engine ``draft_engine = "separate"`` describes: a ``draft_pe_rows`` × ``draft_pe_cols``
array, the draft's weights read from its SRAM when they fit ``draft_sram_bytes`` (else
streamed from off-chip), K/V off-chip, and the draft's token sampling on the SFU per
sequence (as ``sim.hades.engine._draft_step``).
"""

from __future__ import annotations

import numpy as np

from models.workload import Workload
from sim.hades.affine import AffineGraph
from sim.hades.energy import energy_j
from sim.hades.spec import HadesSpec
from sim.hades.units import PassCost, pass_cost, sampling_cycles
from sim.result import SimResult, result_from_times

__all__ = ["simulate_on_draft_engine"]


def _add(counts: dict[str, float], cost: PassCost) -> None:
    for k in ("macs", "offchip_bytes", "sram_bytes", "sfu_elems"):
        counts[k] = counts.get(k, 0.0) + getattr(cost, k)


def _vocab(w: Workload) -> int:
    g = w.decode_first or w.prefill
    lm = [n for n in g.nodes if n.kind.value == "linear"] if g is not None else []
    return int(lm[-1].out_shape[-1]) if lm else 32000


def simulate_on_draft_engine(spec: HadesSpec, w: Workload) -> SimResult:
    """Prefill and plain decode of ``w`` (the draft model) on the draft engine, cycle level."""
    g0 = w.prefill or w.decode_first
    assert g0 is not None
    on_chip = sum(p.bytes for p in g0.params) <= spec.draft_sram_bytes
    counts: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    prefill_s = 0.0
    if w.prefill is not None:
        cost = pass_cost(spec, AffineGraph.from_graphs(w.prefill), 0, draft=True,
                         weights_on_chip=on_chip, chunks=False)
        _add(counts, cost)
        prefill_s = cost.time_s
        breakdown["prefill"] = {k: v * 1e3 for k, v in cost.by_kind.items()}
    decode_s = 0.0
    if w.decode_tokens:
        g = AffineGraph.from_graphs(w.decode_first, w.decode_last)
        kinds: dict[str, float] = {}
        for ctx in np.asarray(w.decode_contexts, dtype=float):
            cost = pass_cost(spec, g, ctx, draft=True, weights_on_chip=on_chip, chunks=False)
            _add(counts, cost)
            decode_s += cost.time_s
            for k, v in cost.by_kind.items():
                kinds[k] = kinds.get(k, 0.0) + v
        # each sequence samples its draft token: one pass over the vocabulary on the SFU
        samp = sampling_cycles(spec, _vocab(w), 1) * w.batch / spec.clock_hz * w.decode_tokens
        decode_s += samp
        breakdown["decode"] = {k: v * 1e3 for k, v in {**kinds, "sampling": samp}.items()}
    energy = energy_j(spec, counts, prefill_s + decode_s)
    return result_from_times(spec, w, "cycle", prefill_s, decode_s, energy_j=energy["total"],
                             breakdown_ms=breakdown, counts=counts,
                             extra={"engine": "draft", "weights_on_chip": on_chip})

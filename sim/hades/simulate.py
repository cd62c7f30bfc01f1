"""Entry points: the HADES ``event`` fidelity (registered in ``sim.registry``) and the
speculation schedule on any device at roofline fidelity (GPU, FlightLLM), with and without
speculation, so every design is compared the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import plan_rounds, tree_levels
from models.workload import Workload
from sim.hades.affine import AffineGraph
from sim.hades.energy import area_mm2, energy_j
from sim.hades.engine import SpecRun, run_speculative
from sim.hades.spec import HadesSpec
from sim.hades.units import pass_cost, pass_times, sampling_cycles
from sim.perfetto import TraceWriter
from sim.result import SimResult, result_from_times
from sim.roofline import graph_bound_s, moe_notes
from sim.roofline import simulate as roofline_simulate
from sim.spec import HardwareSpec

__all__ = ["plain_decode", "simulate_cycle", "simulate_on_draft_engine", "simulate_speculative",
           "speculative_roofline"]


def _add(into: dict[str, float], cost: Any) -> None:
    into["macs"] = into.get("macs", 0.0) + cost.macs
    into["offchip_bytes"] = into.get("offchip_bytes", 0.0) + cost.offchip_bytes
    into["sram_bytes"] = into.get("sram_bytes", 0.0) + cost.sram_bytes
    into["sfu_elems"] = into.get("sfu_elems", 0.0) + cost.sfu_elems


def _vocab(w: Workload) -> int:
    g = w.decode_first or w.prefill
    lm = [n for n in g.nodes if n.kind.value == "linear"] if g is not None else []
    return int(lm[-1].out_shape[-1]) if lm else 32000


def _ms(seconds: dict[str, float]) -> dict[str, float]:
    return {k: v * 1e3 for k, v in seconds.items()}


def _prefill(spec: HadesSpec, w: Workload, counts: dict[str, float],
             breakdown: dict[str, dict[str, float]] | None = None) -> float:
    if w.prefill is None:
        return 0.0
    cost = pass_cost(spec, AffineGraph.from_graphs(w.prefill), 0)
    _add(counts, cost)
    if breakdown is not None:
        breakdown["prefill"] = _ms(cost.by_kind)
    return cost.time_s


def plain_decode(spec: HadesSpec, w: Workload, counts: dict[str, float],
                 breakdown: dict[str, dict[str, float]] | None = None) -> tuple[float, float]:
    """Non-speculative decode on HADES: (seconds, roofline-bound seconds) of the D passes;
    ``breakdown["decode"]`` gets their milliseconds per op kind (the argmax: ``sampling``).

    The bound uses the mean of the first and last pass: a memory-bound decode is affine in the
    context, so this is exact there and a close estimate otherwise (reported, not asserted).
    """
    if not w.decode_tokens:
        return 0.0, 0.0
    g = AffineGraph.from_graphs(w.decode_first, w.decode_last)
    samp = sampling_cycles(spec, _vocab(w), 1) / spec.clock_hz   # argmax per token
    times, c, kinds = pass_times(spec, g, np.asarray(w.decode_contexts))
    for k, v in c.items():
        counts[k] = counts.get(k, 0.0) + v
    if breakdown is not None:
        breakdown["decode"] = _ms({**kinds, "sampling": samp * w.decode_tokens})
    ends = (w.decode_contexts[0], w.decode_contexts[-1])
    bound = (g.roofline_s(spec, ends[0]) + g.roofline_s(spec, ends[1])) / 2 * w.decode_tokens
    return float(times.sum()) + samp * w.decode_tokens, bound


def _result(spec: HardwareSpec, w: Workload, fidelity: str, prefill_s: float, decode_s: float,
            energy: float | None, extra: dict[str, Any], counts: dict[str, float],
            breakdown: dict[str, dict[str, float]], notes: tuple[str, ...] = ()) -> SimResult:
    return result_from_times(spec, w, fidelity, prefill_s, decode_s, energy_j=energy,
                             notes=notes, breakdown_ms=breakdown, counts=counts, extra=extra)


def _spec_extra(run: SpecRun, w: SpeculativeWorkload, baseline_tps: float) -> dict[str, Any]:
    cfg = w.config
    assert cfg is not None
    rounds = run.rounds
    # per sequence: a batch's round verifies every sequence still generating (Round.paths)
    full = [r for r in rounds if r.emitted == r.accepted + len(r.paths)]
    mean_acc = sum(r.accepted for r in rounds) / sum(len(r.paths) for r in rounds)
    tps = w.batch * w.decode_tokens / run.decode_s if run.decode_s else 0.0
    return {
        "draft": w.draft, **cfg.describe(),
        "rounds": len(rounds),
        "mean_accepted": mean_acc,
        "tokens_per_pass": sum(r.accepted + len(r.paths) for r in full)
        / max(sum(len(r.paths) for r in full), 1),
        "expected_tokens_per_pass": None if cfg.tree else cfg.acceptance.mean_tokens(cfg.gamma),
        "split_ms": {k: v * 1e3 for k, v in run.split.items()},
        "baseline_tokens_per_s": baseline_tps,
        "speedup": tps / baseline_tps if baseline_tps else None,
    }


def simulate_speculative(spec: HadesSpec, w: SpeculativeWorkload,
                         trace: TraceWriter | None = None) -> SimResult:
    """Prefill + speculative decode on HADES (event-driven), with the non-speculative baseline."""
    counts: dict[str, float] = {}
    prefill_s = _prefill(spec, w, counts)
    if w.draft_prefill is not None:   # the draft reads the prompt too (in parallel if separate)
        dc = pass_cost(spec, AffineGraph.from_graphs(w.draft_prefill), 0, draft=True)
        _add(counts, dc)
        prefill_s = max(prefill_s, dc.time_s) if spec.draft_engine == "separate" \
            else prefill_s + dc.time_s
    base_s, _ = plain_decode(spec, w, {})
    run = run_speculative(spec, w, trace)
    base_tps = w.batch * w.decode_tokens / base_s if base_s else 0.0
    for k in ("macs", "offchip_bytes", "sram_bytes", "sfu_elems", "verifier_cycles"):
        counts[k] = counts.get(k, 0.0) + run.counts[k]
    counts.update({k: run.counts[k] for k in ("rollback_bytes", "draft_passes",
                                               "verify_passes")})
    total_s = prefill_s + run.decode_s
    energy = energy_j(spec, counts, total_s)
    extra = _spec_extra(run, w, base_tps)
    extra.update(
        utilisation={k: v / run.decode_s for k, v in run.busy.items()} if run.decode_s else {},
        predraft_hits=run.predraft_hits, draft_engine=spec.draft_engine,
        energy_breakdown_j=energy, area_mm2=area_mm2(spec),
        verify_bound_ms=run.bound_s * 1e3, sim_wall_s=run.wall_s,
        draft_target_cost_ratio=_cost_ratio(spec, w))
    breakdown = {"decode": extra["split_ms"]}
    return _result(spec, w, "cycle", prefill_s, run.decode_s, energy["total"], extra, counts,
                   breakdown)


def _cost_ratio(spec: HadesSpec, w: SpeculativeWorkload) -> float:
    """c = one draft step / one target decode step at the prompt length (on this chip)."""
    d = pass_cost(spec, AffineGraph.from_graphs(w.draft_first), w.prefill_tokens, draft=True,
                  weights_on_chip=spec.draft_engine == "separate" and
                  sum(p.bytes for p in w.draft_first.params) <= spec.draft_sram_bytes)
    t = pass_cost(spec, AffineGraph.from_graphs(w.decode_first), w.prefill_tokens)
    return d.time_s / t.time_s


def simulate_cycle(spec: HadesSpec, w: Workload) -> SimResult:
    """The ``event`` fidelity for HADES: speculative when ``w`` carries a speculation config."""
    if isinstance(w, SpeculativeWorkload) and w.config is not None:
        return simulate_speculative(spec, w)
    counts: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    prefill_s = _prefill(spec, w, counts, breakdown)
    decode_s, bound_s = plain_decode(spec, w, counts, breakdown)
    energy = energy_j(spec, counts, prefill_s + decode_s)
    extra = {"energy_breakdown_j": energy, "area_mm2": area_mm2(spec),
             "decode_bound_ms": bound_s * 1e3}
    return _result(spec, w, "cycle", prefill_s, decode_s, energy["total"], extra, counts,
                   breakdown, moe_notes(spec, w))


def simulate_on_draft_engine(spec: HadesSpec, w: Workload) -> SimResult:
    """Prefill and plain decode of ``w`` (a draft model) on the draft engine, cycle level.

    What speculative serving (``sim.serving.speculative``) times a draft's passes with, as a
    pass table at many batches and contexts: ``simulate_cycle``'s result, per-op-kind
    breakdown included, on the engine ``draft_engine = "separate"`` describes (a
    ``draft_pe_rows`` x ``draft_pe_cols`` array, the weights read from its SRAM when they fit
    ``draft_sram_bytes``, else streamed, K/V off-chip), plus each sequence's sampling of its
    draft token on the SFU: the cost ``sim.hades.engine`` charges per draft step.
    """
    g0 = w.prefill or w.decode_first
    assert g0 is not None
    on_chip = sum(p.bytes for p in g0.params) <= spec.draft_sram_bytes
    counts: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    prefill_s = decode_s = 0.0
    if w.prefill is not None:
        cost = pass_cost(spec, AffineGraph.from_graphs(w.prefill), 0, draft=True,
                         weights_on_chip=on_chip, chunks=False)
        _add(counts, cost)
        prefill_s = cost.time_s
        breakdown["prefill"] = _ms(cost.by_kind)
    if w.decode_tokens:
        g = AffineGraph.from_graphs(w.decode_first, w.decode_last)
        kinds: dict[str, float] = {}
        for ctx in w.decode_contexts:
            cost = pass_cost(spec, g, float(ctx), draft=True, weights_on_chip=on_chip,
                             chunks=False)
            _add(counts, cost)
            decode_s += cost.time_s
            for k, v in cost.by_kind.items():
                kinds[k] = kinds.get(k, 0.0) + v
        samp = sampling_cycles(spec, _vocab(w), 1) * w.batch / spec.clock_hz * w.decode_tokens
        decode_s += samp
        breakdown["decode"] = _ms({**kinds, "sampling": samp})
    energy = energy_j(spec, counts, prefill_s + decode_s)
    return result_from_times(spec, w, "cycle", prefill_s, decode_s, energy_j=energy["total"],
                             breakdown_ms=breakdown, counts=counts,
                             extra={"engine": "draft", "weights_on_chip": on_chip})


def speculative_roofline(spec: HardwareSpec, w: SpeculativeWorkload) -> SimResult:
    """The speculation schedule with every pass at its roofline time on ``spec`` (any kind).

    Draft and target are time-multiplexed on the one device; sampling and rollback are not
    modelled at this fidelity (GPU kernels for them are small next to a 7B pass).
    """
    cfg = w.config
    assert cfg is not None and w.verify_first is not None and w.draft_first is not None
    base = roofline_simulate(spec, w)
    verify = AffineGraph.from_graphs(w.verify_first, w.verify_last)
    draft = AffineGraph.from_graphs(w.draft_first, w.draft_last)
    steps = [draft.widen(n) for n in [1, *tree_levels(cfg.tree)[:-1]]] if cfg.tree else \
        [draft] * cfg.gamma
    run = SpecRun(rounds=plan_rounds(cfg, w.prefill_tokens, w.decode_tokens, w.batch))
    for r in run.rounds:
        if not cfg.zero_cost_draft:
            run.split["draft"] += sum(g.roofline_s(spec, r.context + j)
                                      for j, g in enumerate(steps))
        run.split["verify"] += verify.roofline_s(spec, r.context)
    run.decode_s = sum(run.split.values())
    prefill_s = base.prefill_ms / 1e3 + (graph_bound_s(spec, w.draft_prefill)
                                         if w.draft_prefill is not None else 0.0)
    base_tps = base.decode_tokens_per_s
    extra = _spec_extra(run, w, base_tps)
    first = w.decode_first
    extra["draft_target_cost_ratio"] = (
        graph_bound_s(spec, w.draft_first) / graph_bound_s(spec, first))
    power = spec.power_w
    energy = power * (prefill_s + run.decode_s) if power else None
    return _result(spec, w, "roofline", prefill_s, run.decode_s, energy, extra,
                   {"verify_passes": float(len(run.rounds))}, {"decode": extra["split_ms"]},
                   base.notes)

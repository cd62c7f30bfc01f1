"""Speculative decoding on a GPU under the calibrated kernel model (chain speculation).

Same schedule as every other device (``mapping.speculation.plan_rounds``): per round, gamma
draft decode passes then one target verify pass over gamma + 1 positions, time-multiplexed on
the one GPU; each pass is the calibrated step time of its traced graph at the round's context
(decode and verify graphs are affine in the context, so two traces give every round).
Sampling and rollback kernels are not modelled (a few small kernels per round next to a
7B pass). Tree speculation needs a draft pass over each tree level's width, which has no traced
graph here: it runs at ``--fidelity roofline``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import plan_rounds
from models.errors import UserError
from models.graph import Graph
from sim.gpu.model import GPUCalibration, chip, kernels, step_time_s, step_times_s
from sim.result import SimResult, result_from_times
from sim.spec import HardwareSpec

__all__ = ["pass_time_fn", "speculative_calibrated"]


def pass_time_fn(g0: Graph, g1: Graph | None, c: GPUCalibration, bw: float, peak: float,
                 stack: str, chip: tuple[float, float] = (0.0, 0.0)
                 ) -> Callable[[list[int]], np.ndarray]:
    """Seconds of one pass of ``g0``'s model/phase at each of a list of contexts (``g1``: a
    second trace), evaluated in one batch."""
    k0 = kernels(g0, stack)
    k1 = k0 if g1 is None or g1.context == g0.context else kernels(g1, stack)
    span = (g1.context - g0.context) if k1 is not k0 and g1 is not None else 1

    def at(contexts: list[int]) -> np.ndarray:
        t = (np.asarray(contexts, dtype=np.float64) - g0.context) / span
        return step_times_s(k0.lerp_batch(k1, t), k0.count, c, bw, peak, stack, *chip)[0]

    return at


def speculative_calibrated(spec: HardwareSpec, w: SpeculativeWorkload, stack: str,
                           c: GPUCalibration, base: SimResult) -> SimResult:
    """``base`` is the calibrated non-speculative run of the same request."""
    from sim.hades.engine import SpecRun
    from sim.hades.simulate import _spec_extra

    cfg = w.config
    assert cfg is not None
    if cfg.tree:
        raise UserError("--fidelity calibrated runs chain speculation on GPUs; for a token "
                        "tree use --fidelity roofline")
    assert w.verify_first is not None and w.draft_first is not None
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    ch = chip(spec)
    verify = pass_time_fn(w.verify_first, w.verify_last, c, bw, peak, stack, ch)
    draft = pass_time_fn(w.draft_first, w.draft_last, c, bw, peak, stack, ch)
    run = SpecRun(rounds=plan_rounds(cfg, w.prefill_tokens, w.decode_tokens, w.batch))
    if not cfg.zero_cost_draft:
        run.split["draft"] = float(draft([r.context + j for r in run.rounds
                                          for j in range(cfg.gamma)]).sum())
    run.split["verify"] = float(verify([r.context for r in run.rounds]).sum())
    run.decode_s = sum(run.split.values())
    prefill_s = base.prefill_ms / 1e3
    if w.draft_prefill is not None:
        prefill_s += step_time_s(kernels(w.draft_prefill, stack), c, bw, peak, stack,
                                 *ch)[0]
    extra = {**_spec_extra(run, w, base.decode_tokens_per_s), "stack": stack,
             "calibration": c.source}
    power = base.extra.get("decode_power_w") or spec.power_w
    energy = power * (prefill_s + run.decode_s) if power else None
    notes = base.notes
    if stack == "hf-eager" and c.extras is not None and c.extras.generate is not None:
        # measured for plain generate(); assisted generation's own host work per round is not
        notes += ("speculative rounds: generate()'s per-token host cost is charged to the "
                  "baseline without speculation only (measured for plain decoding)",)
    return result_from_times(
        spec, w, "calibrated", prefill_s, run.decode_s, energy_j=energy,
        decode_energy_j=power * run.decode_s if power else None, notes=notes,
        breakdown_ms={"decode": extra["split_ms"]}, counts={"verify_passes":
                                                            float(len(run.rounds))},
        extra=extra)

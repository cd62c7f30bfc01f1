"""``--fidelity calibrated`` for GPUs: the kernel model of :mod:`sim.gpu.model`, calibrated on
measurements (:mod:`sim.gpu.calibrate`), with the datasheet bandwidth and peak of the preset.

A preset whose GPU was measured uses its own fit and its measured board power; any other GPU
uses the H200 fit (efficiencies are fractions of datasheet peaks, fixed times are kernel
launch/tail costs) and a modelled power, the measured GPUs' fraction of TDP times its TDP
(:mod:`sim.gpu.power`). ``stack`` picks the software: ``graph`` (HF with a static cache,
CUDA-graph replay, masked SDPA: what the whole-model steps measured), ``vllm`` (CUDA graphs and
SDPA without a mask at one query token and in prefill, as vLLM-class stacks run attention) or
``hf-eager`` (HF PyTorch without graphs, host-bound, plus generate()'s own per-token host work
where measured). ``--weight-bits 4/8`` linears use the measured int4 / 8-bit GEMM curves
(:mod:`sim.gpu.curves`; 8 bits: fp8 ``_scaled_mm`` on a GPU that measured it, int8 ``_int_mm``
elsewhere, since a preset does not say whether it has FP8 tensor cores). Every curve a run
needs but its device never measured falls back to the earlier behaviour, and the notes say so.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.errors import UserError
from models.graph import OpKind
from models.workload import Workload
from sim.gpu.calibrate import PRESET_OF_DEVICE, baselines, default_calibration
from sim.gpu.curves import Extras, curve_notes
from sim.gpu.model import STACKS, GPUCalibration, chip, kernels, step_time_s, step_times_s
from sim.gpu.power import generate_power, modelled_power
from sim.result import SimResult, result_from_times
from sim.spec import HardwareSpec

__all__ = ["calibration_for", "simulate"]


def calibration_for(spec: HardwareSpec, host: bool = False) -> GPUCalibration:
    """The calibration used for ``spec``: its own measurements if any, else the H200's."""
    try:
        own = [d for d, preset in PRESET_OF_DEVICE.items() if preset == spec.name
               and d in baselines()]
        return default_calibration(own[0] if own else None, host)
    except ValueError as e:
        raise UserError(f"--fidelity calibrated: {e}") from None


def _decode_s(spec: HardwareSpec, w: Workload, c: GPUCalibration, stack: str
              ) -> tuple[float, dict[str, float], int]:
    """Every decode step at once: the kernels' sizes are affine in the context."""
    if not w.decode_tokens:
        return 0.0, {}, 0
    assert w.decode_first is not None and w.decode_last is not None
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    k0 = kernels(w.decode_first, stack)
    k1 = kernels(w.decode_last, stack) if w.decode_last is not w.decode_first else k0
    span = max(w.decode_tokens - 1, 1)
    batch = k0.lerp_batch(k1, np.arange(w.decode_tokens) / span)
    times, parts = step_times_s(batch, k0.count, c, bw, peak, stack, *chip(spec))
    return float(times.sum()), {k: float(v.sum()) for k, v in parts.items()}, k0.count


def _weight_bits(w: Workload, stack: str) -> set[int]:
    """Stored weight bits of the workload's linears (0: the model dtype)."""
    graphs = [g for g in (w.decode_first, w.prefill) if g is not None]
    return {int(b) for g in graphs for b in kernels(g, stack).lin_wbits}


def simulate(spec: HardwareSpec, w: Workload, stack: str | None = None) -> SimResult:
    """Prefill + decode of ``w`` on the GPU ``spec`` under the calibrated kernel model."""
    stack = stack or "graph"
    if stack not in STACKS:
        raise UserError(f"unknown GPU stack {stack!r}; allowed: {', '.join(STACKS)}")
    c = calibration_for(spec, host=stack == "hf-eager")
    if stack == "hf-eager" and c.host_s_per_call is None:
        raise UserError(f"the calibration from {c.device} has no eager measurements; use "
                        "--gpu-stack graph")
    first = w.decode_first or w.prefill
    if stack == "hf-eager" and first is not None \
            and not dict(first.meta).get("eager_torch_calls"):
        raise UserError(f"--gpu-stack hf-eager needs the torch calls of {w.model}'s eager "
                        "forward, which could not be counted when it was traced (see the "
                        "warning then); use --gpu-stack graph")
    own = PRESET_OF_DEVICE.get(c.device) == spec.name  # calibrated on this very GPU
    x = c.extras or Extras(c.device)
    # fp8 only where the preset's own GPU ran it; int8 elsewhere (the datasheet is silent)
    c = replace(c, extras=replace(x, w8="fp8" if own and x.curve("fp8") else "int8"))
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    prefill_s, pre_parts = 0.0, {}
    if w.prefill is not None:
        prefill_s, pre_parts = step_time_s(kernels(w.prefill, stack), c, bw, peak, stack,
                                           *chip(spec))
    decode_s, dec_parts, count = _decode_s(spec, w, c, stack)
    gen = c.extras.generate if stack == "hf-eager" else None
    if gen is not None and w.decode_tokens:   # one generate() step per decode pass
        dec_parts["generate() host"] = gen.per_token_s * w.decode_tokens
        decode_s += dec_parts["generate() host"]
    energy = decode_energy = None
    notes = [f"calibrated on {c.source}; {spec.name} datasheet bandwidth and peak"]
    notes += curve_notes(c.extras, c.device, stack, _weight_bits(w, stack))
    if first is not None and any(n.kind is OpKind.EXPERTS for n in first.nodes):
        notes.append("mixture of experts: expert FFNs timed as grouped GEMMs on the dense GEMM "
                     "curve (an extrapolation: no MoE kernel was measured)")
    if stack == "hf-eager":
        calls = dict(first.meta).get("eager_torch_calls") if first is not None else None
        notes.append(f"HF eager: host-bound at {c.host_s_per_call * 1e6:.1f} us per torch call x "
                     f"{calls} calls per step (the measuring machine's CPU, not the GPU)")
    gen_w, gen_note = generate_power(spec, gen, own) if stack == "hf-eager" else (None, None)
    if gen_note:
        notes.append(gen_note)
    if own and c.decode_power_w and c.prefill_power_w:
        dw = gen_w or c.decode_power_w
        decode_energy = dw * decode_s
        energy = decode_energy + c.prefill_power_w * prefill_s
        notes.append(f"energy from measured board power ({dw:.0f} W decoding, "
                      f"{c.prefill_power_w:.0f} W in prefill; median of {c.power_runs} runs)")
        power, power_source = dw, "measured"
    elif (m := modelled_power(spec)) is not None:
        m = replace(m, decode_w=gen_w or m.decode_w)
        decode_energy = m.decode_w * decode_s
        energy = decode_energy + m.prefill_w * prefill_s
        notes.append(m.note)
        power, power_source = m.decode_w, "modelled"
    else:   # no GPU's power measured to model it from: result_from_times charges the TDP
        notes.append(f"energy from TDP ({spec.power_w:.0f} W): no power measured on any GPU")
        power, power_source = None, None
    ms = {"prefill": {k: v * 1e3 for k, v in pre_parts.items()},
          "decode": {k: v * 1e3 for k, v in dec_parts.items()}}
    base = result_from_times(
        spec, w, "calibrated", prefill_s, decode_s, energy_j=energy,
        decode_energy_j=decode_energy, notes=tuple(notes), breakdown_ms=ms,
        extra={"stack": stack, "calibration": c.source, "kernels_per_decode_step": count,
               "decode_power_w": power, "power_source": power_source})
    if getattr(w, "config", None) is None:
        return base
    from sim.gpu.speculate import speculative_calibrated

    return speculative_calibrated(spec, w, stack, c, base)  # type: ignore[arg-type]

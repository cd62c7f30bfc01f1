"""Board power the calibrated GPU model charges while decoding and in prefill.

A GPU we measured draws its measured board power (the median over its runs,
:func:`sim.gpu.calibrate.median_power`). Any other preset would be charged its TDP, which
LLaMA-2-7B decoding at batch 1 never reaches: it is memory-bound, and the H100 and H200 drew
about half of their 700 W. So an unmeasured preset is modelled as its TDP times the fraction
of TDP the measured GPUs drew in the same phase (the median over them), and says so.
That assumes the fraction carries across generations (same workload, same software); the
A100/V100S section of ``reports/gpu.md`` checks it against published measurements.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import cache

from sim.gpu.calibrate import PRESET_OF_DEVICE, baselines
from sim.spec import HardwareSpec, load_preset

__all__ = ["PHASES", "ModelledPower", "TDPFraction", "generate_fraction", "generate_power",
           "modelled_power", "tdp_fractions"]

# the measured phase per modelled one: LLaMA-2-7B, context 512, graph-replayed decode at q = 1
# and a 512-token prefill (kernels.measure's power section)
PHASES = {"decode": "decode_q1_c512_graph", "prefill": "prefill_512"}


@dataclass(frozen=True)
class TDPFraction:
    """Board power over TDP in one phase: the median over the measured GPUs, and each one's."""

    phase: str
    fraction: float
    measured: tuple[tuple[str, float, float], ...]   # (preset, median board power W, TDP W)

    def describe(self) -> str:
        each = ", ".join(f"{p.removeprefix('gpu-').upper()} {w:.0f} W / {t:.0f} W = {w / t:.3f}"
                         for p, w, t in self.measured)
        return f"fraction measured on {each}; median"


@dataclass(frozen=True)
class ModelledPower:
    decode_w: float
    prefill_w: float
    note: str


@cache
def tdp_fractions() -> dict[str, TDPFraction]:
    """Per phase, the measured GPUs' board power as a fraction of their preset's TDP."""
    out: dict[str, TDPFraction] = {}
    for phase, key in PHASES.items():
        measured = []
        for device, b in sorted(baselines().items()):
            preset = PRESET_OF_DEVICE.get(device)
            watts = b.power.get(key, {}).get("avg_power_w")
            tdp = load_preset(preset).power_w if preset else 0.0
            if watts and tdp:
                measured.append((preset, float(watts), float(tdp)))
        if measured:
            out[phase] = TDPFraction(phase, statistics.median(w / t for _, w, t in measured),
                                     tuple(measured))
    return out


def modelled_power(spec: HardwareSpec) -> ModelledPower | None:
    """``spec``'s decode and prefill board power as the measured fraction of its TDP, with the
    note that states both numbers; None without a TDP or without measured power."""
    fr = tdp_fractions()
    if not spec.power_w or set(fr) != set(PHASES):
        return None
    d, p = fr["decode"], fr["prefill"]
    tdp = spec.power_w
    note = (f"energy modelled: {d.fraction * tdp:.0f} W decoding = {d.fraction:.3f} x TDP "
            f"{tdp:.0f} W ({d.describe()}), {p.fraction * tdp:.0f} W in prefill = "
            f"{p.fraction:.3f} x TDP ({p.describe()}); no power measured on {spec.name}")
    return ModelledPower(d.fraction * tdp, p.fraction * tdp, note)


@cache
def generate_fraction() -> TDPFraction | None:
    """Board power over TDP while HF generate() runs (``kernels.measure_extra``'s power of the
    main model), the median over the GPUs that measured it; None when none did."""
    measured = []
    for device, b in sorted(baselines().items()):
        preset = PRESET_OF_DEVICE.get(device)
        watts = [r["power"]["avg_power_w"] for r in b.generate
                 if r.get("power", {}).get("available")]
        if preset and watts and load_preset(preset).power_w:
            measured.append((preset, statistics.median(watts), load_preset(preset).power_w))
    if not measured:
        return None
    return TDPFraction("generate", statistics.median(w / t for _, w, t in measured),
                       tuple(measured))


def generate_power(spec: HardwareSpec, gen, own: bool) -> tuple[float | None, str]:
    """Decode board power for ``--gpu-stack hf-eager`` and the note that says where it comes
    from: measured while generate() ran on this GPU (``gen``: a ``sim.gpu.curves.
    GenerateCost``), else the measured GPUs' fraction of TDP, else None (not measured: the
    graph-replay decode power stays, and the note says so)."""
    if own and gen is not None and gen.power_w:
        return gen.power_w, (f"hf-eager decode power measured while generate() ran: "
                             f"{gen.power_w:.0f} W ({gen.model})")
    fr = generate_fraction()
    if fr is not None and spec.power_w:
        w = fr.fraction * spec.power_w
        return w, (f"hf-eager decode power modelled: {w:.0f} W = {fr.fraction:.3f} x TDP "
                   f"{spec.power_w:.0f} W while generate() runs ({fr.describe()}); it "
                   "replaces the graph-replay decode figure")
    return None, ("board power while generate() runs not measured: hf-eager is charged the "
                  "graph-replay decode power (a host-bound GPU draws less)")

"""Board power and energy of a FlightLLM design: static + activity-driven dynamic + HBM traffic.

Counts, then costs. The counts are the design's resources (``sim/flightllm/resources.py``: DSP48E2,
LUT, FF, BRAM36, URAM288 from the RTL's recorded syntheses and the buffer sizes) and each pass's
activity from the cycle simulator (MACs done, MPE busy fraction, HBM bytes moved, seconds). The
costs are the per-unit constants of :data:`CONSTANTS`, each with its source in
:data:`SOURCES`. Nothing here is fitted to the paper's ~45 W board power: ``llmcosim``'s
``docs/flightllm.md`` ("Power") reports the model's figure at the published design next to it.

Energy of one pass of ``t`` seconds (``f`` = clock)::

    E = static_w * t                                           # leakage, HBM/PHY idle, board
      + (lut * e_lut + ff * e_ff) * f * t                      # fabric: always clocked, toggling
      + macs * e_mac                                           # DSP48E2: per MAC done
      + (uram * e_uram + bram * e_bram) * f * t * mpe_busy     # buffers: enabled while the MPE runs
      + hbm_bytes * 8 * e_hbm_bit                              # HBM2 array + I/O per bit moved

Monotone in every resource count and in the bytes moved (a test checks it). LUT/FF figures are
those of our RTL (its LUT total is 135% of the XCU280 at the published design, far above the
real FlightLLM build), so the fabric term is an upper side of the real design's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.spec import FlightLLMSpec

__all__ = ["CONSTANTS", "SOURCES", "DesignPower", "EnergyTally", "design_power", "pass_energy",
           "result_energy"]

# Per-unit costs. e_* in picojoules; a per-cycle figure is one clocked primitive's energy per
# cycle at the activity named in SOURCES.
CONSTANTS: dict[str, float] = {
    "static_w": 20.0,
    "lut_pj_per_cycle": 0.04,
    "ff_pj_per_cycle": 0.01,
    "dsp_pj_per_mac": 1.25,
    "uram_pj_per_cycle": 15.0,
    "bram_pj_per_cycle": 8.0,
    "hbm_pj_per_bit": 3.9,
}
SOURCES: dict[str, str] = {
    "static_w": (
        "an idle Alveo card with its shell loaded reads 17.4 W board power in xbutil "
        "(Xilinx/XRT pull request #3697, 'xbutil --new examine' sample output; VCCINT 0.851 V "
        "x 5.62 A = 4.8 W of it); + ~2.6 W assumed for the U280's HBM2 stacks idling "
        "(refresh, PHY), which that card lacks"),
    "lut_pj_per_cycle": (
        "assumption: one 16 nm LUT with its routing at XPE's default 12.5% toggle rate "
        "(UG440 'Using the Logic Sheet': 12.5% default, average fanout 3); 0.04 pJ/cycle "
        "= ~9 W for 1M LUTs at 225 MHz, the order of a full large UltraScale+ design's "
        "logic + signal power"),
    "ff_pj_per_cycle": (
        "assumption: one CLB flip-flop's clock pin and local clock tree per cycle at the "
        "same 12.5% data toggle (UG440)"),
    "dsp_pj_per_mac": (
        "assumption: a DSP48E2 in the 27x18 mode XPE assumes (UG440 'Using the DSP Sheet'), "
        "~38% data toggle for random data (UG440), ~2.5 pJ per enabled cycle; two INT8 MACs "
        "packed per DSP48 (FlightLLM CSD-Chain) -> 1.25 pJ per MAC"),
    "uram_pj_per_cycle": (
        "assumption: one enabled URAM288 4K x 72 access per cycle (UG573/UG440 URAM sheet: "
        "power scales with enable rate), ~2x a BRAM36 access for the larger array"),
    "bram_pj_per_cycle": (
        "assumption: one enabled RAMB36E2 72-bit access per cycle (UG440 block RAM sheet: "
        "power scales with enable rate and width)"),
    "hbm_pj_per_bit": (
        "O'Connor et al., 'Fine-Grained DRAM', MICRO'17: HBM2 ~3.9 pJ/bit (array + data "
        "movement + I/O), as configs/hw/hades.toml's offchip_pj_per_bit"),
}


@dataclass(frozen=True)
class DesignPower:
    """A design's resource counts for the power model (None: no resource estimate)."""

    lut: float
    ff: float
    dsp: float
    bram: float
    uram: float
    clock_hz: float
    macs_slots_per_cycle: float     # cores x mm_macs_per_cycle (PassResult.dsp_utilisation's base)


def design_power(spec: FlightLLMSpec, *, weight_bits: int = 4,
                 speculation: bool = False) -> DesignPower | None:
    """The resource counts of ``spec`` (None where the resource model lacks synthesis data)."""
    from sim.flightllm.resources import estimate

    bits = weight_bits if weight_bits in (2, 3, 4, 8) else 4
    t = estimate(spec, weight_bits=bits, speculation=speculation).totals
    if any(t[k] is None for k in ("lut", "ff", "dsp", "bram36", "uram288")):
        return None
    return DesignPower(lut=float(t["lut"]), ff=float(t["ff"]), dsp=float(t["dsp"]),  # type: ignore[arg-type]
                       bram=float(t["bram36"]), uram=float(t["uram288"]),  # type: ignore[arg-type]
                       clock_hz=spec.clock_hz,
                       macs_slots_per_cycle=float(spec.cores * spec.mm_macs_per_cycle))


def pass_energy(d: DesignPower, *, seconds: float, macs: float, hbm_bytes: float,
                mpe_busy: float, c: dict[str, float] | None = None) -> dict[str, float]:
    """Joules of one pass by component (static, fabric, dsp, buffers, hbm) and their total."""
    c = CONSTANTS if c is None else c
    cycles = d.clock_hz * seconds
    busy = min(max(mpe_busy, 0.0), 1.0)
    out = {
        "static": c["static_w"] * seconds,
        "fabric": (d.lut * c["lut_pj_per_cycle"] + d.ff * c["ff_pj_per_cycle"]) * cycles * 1e-12,
        "dsp": macs * c["dsp_pj_per_mac"] * 1e-12,
        "buffers": (d.uram * c["uram_pj_per_cycle"] + d.bram * c["bram_pj_per_cycle"])
        * cycles * busy * 1e-12,
        "hbm": hbm_bytes * 8 * c["hbm_pj_per_bit"] * 1e-12,
    }
    out["total"] = sum(out.values())
    return out


def result_energy(d: DesignPower, p: Any) -> dict[str, float]:
    """:func:`pass_energy` of a simulated ``PassResult`` (sim.flightllm.simulate)."""
    macs = p.dsp_utilisation * d.macs_slots_per_cycle * p.cycles
    busy = max(p.busy.get("MV", 0.0), p.busy.get("MM", 0.0))
    return pass_energy(d, seconds=p.seconds, macs=macs, hbm_bytes=p.hbm_bytes, mpe_busy=busy)



class EnergyTally:
    """Energy of a run: each pass's activity (DSP, buffers, HBM) as passes are added, and the
    design's always-on part (static, fabric) over the run's wall time at :meth:`close`, so
    passes that overlap (a separate draft engine beside the cores) are not charged the static
    power twice. ``design`` None: no resource estimate, no model (board power used)."""

    def __init__(self, spec: FlightLLMSpec, *, weight_bits: int = 4,
                 speculation: bool = False) -> None:
        self.design = design_power(spec, weight_bits=weight_bits, speculation=speculation)
        self.parts: dict[str, float] = dict.fromkeys(("static", "fabric", "dsp", "buffers",
                                                      "hbm"), 0.0)
        self.other = 0.0   # totals computed elsewhere (add_joules)

    def add(self, p: Any, times: int = 1) -> None:
        """One simulated pass (``PassResult``), ``times`` over: its activity terms."""
        if self.design is None:
            return
        e = result_energy(self.design, p)
        for k in ("dsp", "buffers", "hbm"):
            self.parts[k] += e[k] * times

    def add_bytes(self, nbytes: float) -> None:
        """HBM bytes moved outside a simulated pass (a tree rollback's compaction)."""
        if self.design is not None:
            self.parts["hbm"] += pass_energy(self.design, seconds=0.0, macs=0.0,
                                             hbm_bytes=nbytes, mpe_busy=0.0)["hbm"]

    def close(self, wall_s: float) -> None:
        """The static and fabric energy over ``wall_s`` seconds of the run."""
        if self.design is None:
            return
        e = pass_energy(self.design, seconds=wall_s, macs=0.0, hbm_bytes=0.0, mpe_busy=0.0)
        self.parts["static"] += e["static"]
        self.parts["fabric"] += e["fabric"]

    def add_joules(self, joules: float | None) -> None:
        """Add a total computed elsewhere (another tally's), e.g. a base run's prefill."""
        if self.design is not None and joules is not None:
            self.other += joules

    @property
    def total(self) -> float | None:
        return None if self.design is None else sum(self.parts.values()) + self.other

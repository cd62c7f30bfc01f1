"""Per-action energy and area of HADES, each number with its source: counts → joules, mm².

Logic and SRAM numbers are Horowitz's 45 nm figures (ISSCC 2014, "Computing's energy problem
(and what we can do about it)", Fig. 1.1.9/1.1.10), scaled to ``tech_node_nm`` by the first-order
rules below; off-chip energy per bit is a spec field (the preset names its source) because it
depends on the memory, not the logic node. Sweeps trade these by editing the table or the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.hades.spec import HadesSpec

__all__ = ["ENERGY_TABLE", "EnergyEntry", "area_mm2", "energy_j", "node_scale", "peak_power_w"]


@dataclass(frozen=True)
class EnergyEntry:
    value: float     # at 45 nm (energy pJ, area µm²) unless ``scales`` is False
    unit: str
    source: str
    scales: str = "energy"   # "energy", "area" or "none"


ENERGY_TABLE: dict[str, EnergyEntry] = {
    # MAC = multiply + add at the array's dtype (accumulation in the add's width)
    "mac_float16": EnergyEntry(1.1 + 0.4, "pJ/MAC",
                               "Horowitz ISSCC'14: 16b FP mult 1.1 pJ + 16b FP add 0.4 pJ (45 nm)"),
    "mac_bfloat16": EnergyEntry(1.1 + 0.4, "pJ/MAC", "as float16 (same multiplier/adder class)"),
    "mac_int8": EnergyEntry(0.2 + 0.1, "pJ/MAC",
                            "Horowitz ISSCC'14: 8b mult 0.2 pJ + 32b add 0.1 pJ (45 nm)"),
    # SRAM: the big SRAM is built from ~32 KB banks; one access reads one bank (20 pJ per
    # 64 bits = 2.5 pJ/B). Global wires to the array are not charged (optimistic).
    "sram_byte": EnergyEntry(20 / 8, "pJ/B",
                             "Horowitz ISSCC'14: 32 KB SRAM 64-bit read 20 pJ (45 nm)"),
    "sfu_elem": EnergyEntry(3.7 + 0.9, "pJ/elem",
                            "assumption: one FP32 mult + add per element-pass (Horowitz: "
                            "3.7 + 0.9 pJ, 45 nm); exp/rsqrt via piecewise tables cost similar"),
    "verifier_cycle": EnergyEntry(64 * 0.03 * 4, "pJ/cycle",
                                  "assumption: ~4 x 64 8-bit-add equivalents per cycle "
                                  "(compare/prefix/encode; Horowitz 8b add 0.03 pJ, 45 nm)"),
    # area (µm² at 45 nm)
    "area_mac_float16": EnergyEntry(1640 + 1360, "µm²",
                                    "Horowitz ISSCC'14: 16b FP mult 1640 + add 1360 µm² (45 nm)",
                                    "area"),
    "area_mac_bfloat16": EnergyEntry(1640 + 1360, "µm²", "as float16", "area"),
    "area_mac_int8": EnergyEntry(282 + 137, "µm²",
                                 "Horowitz ISSCC'14: 8b mult 282 µm² + 32b add 137 µm² (45 nm)",
                                 "area"),
    "area_sram_bit": EnergyEntry(0.027 / 0.5, "µm²/bit at 7 nm",
                                 "TSMC N7 HD 6T bitcell 0.027 µm² (Jeong et al., IEDM 2017) "
                                 "at an assumed 50% array efficiency; scaled by node²/7²",
                                 "sram7"),
}


def node_scale(node_nm: float, what: str) -> float:
    """Scale a 45 nm figure to ``node_nm``.

    Energy: C·V² with C ∝ feature size and V from 0.9 V (45 nm) to 0.75 V (≤ 7 nm, linear in
    between) — first-order and optimistic below 16 nm (wires scale worse). Area: ∝ node² (ideal;
    real logic density gains below 16 nm are smaller, so this flatters small nodes).
    """
    if what == "energy":
        v = 0.9 - 0.15 * min(1.0, max(0.0, (45 - node_nm) / 38))
        return (node_nm / 45) * (v / 0.9) ** 2
    if what == "area":
        return (node_nm / 45) ** 2
    if what == "sram7":
        return (node_nm / 7) ** 2
    return 1.0


def _e(name: str, node: float) -> float:
    e = ENERGY_TABLE[name]
    return e.value * node_scale(node, e.scales) * 1e-12


def energy_j(spec: HadesSpec, counts: dict[str, float], seconds: float) -> dict[str, float]:
    """Joules per component from action counts (keys: macs, sram_bytes, offchip_bytes, sfu_elems,
    verifier_cycles) plus static power × time."""
    node = spec.tech_node_nm
    out = {
        "pe": counts.get("macs", 0.0) * _e(f"mac_{spec.mac_dtype}", node),
        "sram": counts.get("sram_bytes", 0.0) * _e("sram_byte", node),
        "offchip": counts.get("offchip_bytes", 0.0) * 8 * spec.offchip_pj_per_bit * 1e-12,
        "sfu": counts.get("sfu_elems", 0.0) * _e("sfu_elem", node),
        "verifier": counts.get("verifier_cycles", 0.0) * _e("verifier_cycle", node),
        "static": spec.static_power_w * seconds,
    }
    out["total"] = sum(out.values())
    return out


def peak_power_w(spec: HadesSpec) -> float:
    """Every MAC busy and the memory at peak bandwidth, plus static power."""
    s = spec
    macs = s.pe_rows * s.pe_cols
    if s.draft_engine == "separate":
        macs += s.draft_pe_rows * s.draft_pe_cols
    node = s.tech_node_nm
    pe = macs * s.clock_hz * _e(f"mac_{s.mac_dtype}", node)
    mem = s.offchip_bytes_per_s * 8 * s.offchip_pj_per_bit * 1e-12
    return pe + mem + s.static_power_w


def area_mm2(spec: HadesSpec) -> dict[str, float]:
    """Die area of the PE arrays and SRAMs (mm²); SFU/verifier/control are not counted."""
    s = spec
    node = s.tech_node_nm
    mac = ENERGY_TABLE[f"area_mac_{s.mac_dtype}"]
    per_mac = mac.value * node_scale(node, "area") * 1e-6
    bit = ENERGY_TABLE["area_sram_bit"].value * node_scale(node, "sram7") * 1e-6
    draft = s.draft_engine == "separate"
    out = {
        "pe_array": s.pe_rows * s.pe_cols * per_mac,
        "sram": s.sram_bytes * 8 * bit,
        "draft_pe": (s.draft_pe_rows * s.draft_pe_cols * per_mac) if draft else 0.0,
        "draft_sram": (s.draft_sram_bytes * 8 * bit) if draft else 0.0,
    }
    out["total"] = sum(out.values())
    return out

"""``HadesSpec``: the speculation-aware ASIC's knobs (kind ``hades``), loaded from TOML.

Every field is a design knob with a range; the presets in ``configs/hw/hades*.toml`` give and
justify the defaults (docs/hades.md explains the microarchitecture). Importing this module
registers the kind with :func:`sim.spec.register_kind`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from sim.spec import _f, _SpecBase, register_kind

__all__ = ["DRAFT_ENGINES", "KV_TREE_MODES", "VERIFY_MODES", "HadesSpec"]

DRAFT_ENGINES = ("shared", "separate")
KV_TREE_MODES = ("gather", "indirection")
VERIFY_MODES = ("greedy", "sample")
_MAC_BYTES = {"float16": 2, "bfloat16": 2, "int8": 1}


def _s(doc: str, default: str) -> str:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class HadesSpec(_SpecBase):
    """HADES: a PE array + SRAM + HBM/LPDDR + SFU with a verifier, KV rollback and draft engine."""

    kind: ClassVar[str] = "hades"
    tech_node_nm: float = _f(3, 65, "process node (scales energy and area)")
    clock_hz: float = _f(1e8, 3e9, "core clock")
    pe_rows: int = _f(1, 1024, "PE array rows (reduction dimension K per cycle)")
    pe_cols: int = _f(1, 1024, "PE array columns (output dimension N per cycle)")
    mac_dtype: str = _s("MAC datatype: float16, bfloat16 or int8", "float16")
    sram_bytes: float = _f(1e5, 1e9, "on-chip SRAM for weight/KV tiles and activations")
    sram_bytes_per_cycle: int = _f(64, 1 << 20, "SRAM read bandwidth into the array")
    offchip_bytes: float = _f(1e8, 1e12, "off-chip memory capacity (HBM or LPDDR)")
    offchip_bytes_per_s: float = _f(1e9, 1e14, "off-chip peak bandwidth")
    offchip_channels: int = _f(1, 256, "off-chip channels (informational; bandwidth is the total)")
    offchip_efficiency: float = _f(0.1, 1.0, "sustained fraction of peak for streaming reads")
    offchip_pj_per_bit: float = _f(0.1, 100, "off-chip access energy per bit")
    sfu_lanes: int = _f(1, 4096, "SFU elements per cycle (exp, rsqrt, SiLU, compare)")
    draft_engine: str = _s("shared: draft time-multiplexed on the PE array; separate: own "
                           "engine running in parallel with verification", "separate")
    draft_pe_rows: int = _f(1, 1024, "separate draft engine: PE rows")
    draft_pe_cols: int = _f(1, 1024, "separate draft engine: PE columns")
    draft_sram_bytes: float = _f(0, 1e9, "separate draft engine: SRAM that can pin draft "
                                 "weights (0: draft weights stream from off-chip)")
    draft_sram_bytes_per_cycle: int = _f(64, 1 << 20, "draft SRAM read bandwidth")
    verify_mode: str = _s("greedy (argmax match) or sample (rejection sampling)", "greedy")
    verify_topk: int = _f(2, 64, "sampling mode: candidates per position (shortlist size)")
    kv_tree_mode: str = _s("tree KV rollback: gather (compact accepted rows) or indirection "
                           "(logical->physical row table)", "gather")
    kv_indirect_efficiency: float = _f(0.1, 1.0, "indirection mode: KV read efficiency "
                                       "relative to contiguous rows")
    rollback_cycles: int = _f(0, 10_000, "chain rollback: cycles to reset the KV length "
                              "pointers of target and draft")
    static_power_w: float = _f(0, 1000, "leakage + clock tree + I/O while running")
    price_usd: float = _f(0, 1e6, "unit price assumed for cost efficiency")

    @property
    def macs_per_cycle(self) -> int:
        return self.pe_rows * self.pe_cols

    def peak_ops_per_s(self, dtype: str) -> float:
        # every dtype is computed in the array's MAC dtype (weights converted on load)
        return 2.0 * self.macs_per_cycle * self.clock_hz

    def draft_peak_ops_per_s(self) -> float:
        if self.draft_engine == "shared":
            return self.peak_ops_per_s(self.mac_dtype)
        return 2.0 * self.draft_pe_rows * self.draft_pe_cols * self.clock_hz

    @property
    def mem_bytes_per_s(self) -> float:
        return self.offchip_bytes_per_s

    @property
    def mem_capacity_bytes(self) -> float:
        return self.offchip_bytes

    @property
    def power_w(self) -> float:
        """Peak power from the energy table: every MAC busy, memory at peak, plus static."""
        from sim.hades.energy import peak_power_w

        return peak_power_w(self)

    def check(self) -> list[str]:
        problems = []
        for name, allowed in (("mac_dtype", tuple(_MAC_BYTES)), ("draft_engine", DRAFT_ENGINES),
                              ("verify_mode", VERIFY_MODES), ("kv_tree_mode", KV_TREE_MODES)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} = {getattr(self, name)!r}; allowed: "
                                f"{', '.join(allowed)}")
        if self.mac_dtype in _MAC_BYTES:
            need = self.macs_per_cycle * _MAC_BYTES[self.mac_dtype] // self.pe_rows
            if self.sram_bytes_per_cycle < need:
                problems.append(f"sram_bytes_per_cycle = {self.sram_bytes_per_cycle} cannot feed "
                                f"one activation row per cycle to {self.pe_cols} columns x "
                                f"{_MAC_BYTES[self.mac_dtype]} B ({need} B/cycle)")
        if self.draft_engine == "separate" and \
                self.draft_pe_rows * self.draft_pe_cols > self.macs_per_cycle:
            problems.append("the separate draft engine has more MACs than the main PE array")
        return problems


register_kind(HadesSpec)

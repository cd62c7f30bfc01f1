"""Hardware specs: frozen dataclasses with units in field names, loaded from TOML presets.

Each preset in ``configs/hw/`` is a flat TOML table with ``kind`` (which spec class), the
fields of that class, and an optional ``[sources]`` table naming where each number comes from.
Loading validates everything once: an unknown key, a unit of the wrong dimension, a value out
of range or an impossible combination gives one :class:`SpecError` that names the file, the
field and what is allowed. Sweeps derive variants with :func:`dataclasses.replace` and
:func:`validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from models.errors import UserError, read_toml
from sim.units import parse_quantity, unit_of_field

__all__ = [
    "DRAFT_ENGINES",
    "DRAFT_WEIGHTS",
    "HW_DIR",
    "FlightLLMSpec",
    "GPUSpec",
    "HardwareSpec",
    "SpecError",
    "list_presets",
    "load_preset",
    "load_spec",
    "spec_from_dict",
    "validate",
]

# FlightLLM draft placement (mirrors HADES's draft_engine: sim/hades/spec.py DRAFT_ENGINES)
DRAFT_WEIGHTS = ("hbm", "uram")
DRAFT_ENGINES = ("shared", "separate")

HW_DIR = Path(__file__).resolve().parent.parent / "configs" / "hw"


class SpecError(UserError):
    """A hardware spec that cannot be loaded: the message names file, field and allowed range."""


def _f(lo: float, hi: float, doc: str, default: Any = dataclasses.MISSING) -> Any:
    """A spec field with its allowed closed range [lo, hi] and a one-line description."""
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True, kw_only=True)
class _SpecBase:
    kind: ClassVar[str]
    name: str
    description: str
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    # -- what every timing model may ask ---------------------------------------------------
    def peak_ops_per_s(self, dtype: str) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def mem_bytes_per_s(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def mem_capacity_bytes(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def power_w(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self) -> list[str]:
        """Cross-field consistency problems (empty when consistent)."""
        return []

    def source_of(self, field_name: str) -> str:
        return dict(self.sources).get(field_name, "")


@dataclass(frozen=True, kw_only=True)
class _HBMSpec(_SpecBase):
    """A device with one off-chip memory (HBM or DRAM) and a unit price."""

    hbm_bytes: float = _f(1e8, 1e13, "off-chip memory capacity")
    hbm_bytes_per_s: float = _f(1e9, 1e14, "off-chip memory peak bandwidth")
    price_usd: float = _f(0, 1e6, "unit price assumed for cost efficiency (0: not published)")

    @property
    def mem_bytes_per_s(self) -> float:
        return self.hbm_bytes_per_s

    @property
    def mem_capacity_bytes(self) -> float:
        return self.hbm_bytes


@dataclass(frozen=True, kw_only=True)
class GPUSpec(_HBMSpec):
    """A GPU from its datasheet: dense tensor-core peaks per dtype, memory, power, price."""

    kind: ClassVar[str] = "gpu"
    clock_hz: float = _f(1e8, 5e9, "boost clock")
    sm_count: int = _f(1, 1000, "streaming multiprocessors")
    fp16_flops_per_s: float = _f(1e12, 1e17, "dense FP16 tensor-core peak")
    bf16_flops_per_s: float = _f(0, 1e17, "dense BF16 tensor-core peak (0: unsupported)")
    fp32_flops_per_s: float = _f(1e11, 1e16, "FP32 (non-tensor) peak")
    int8_ops_per_s: float = _f(0, 1e17, "dense INT8 peak (tensor cores or DP4A)")
    l2_bytes: float = _f(1e5, 1e9, "L2 cache")
    tdp_w: float = _f(10, 3000, "board power limit (TDP)")

    def peak_ops_per_s(self, dtype: str) -> float:
        by = {"float16": self.fp16_flops_per_s, "bfloat16": self.bf16_flops_per_s,
              "float32": self.fp32_flops_per_s, "int8": self.int8_ops_per_s}
        peak = by.get(dtype, 0.0)
        return peak if peak > 0 else self.fp16_flops_per_s  # unsupported: emulate via FP16

    @property
    def power_w(self) -> float:
        return self.tdp_w


@dataclass(frozen=True, kw_only=True)
class FlightLLMSpec(_HBMSpec):
    """A FlightLLM FPGA accelerator (FPGA'24): one compute core per SLR, HBM pseudo-channels.

    Compute runs in INT8 after dequantisation, so every op's peak is the INT8 MAC rate.
    """

    kind: ClassVar[str] = "flightllm"
    clock_hz: float = _f(1e7, 2e9, "accelerator clock")
    cores: int = _f(1, 16, "compute cores, one per SLR/die")
    dsp_count: int = _f(0, 100_000, "DSP slices used (0: not published)")
    macs_per_dsp: int = _f(1, 4, "INT8 MACs per DSP per cycle (DSP48 packing: 2)")
    mm_macs_per_cycle: int = _f(1, 1_000_000, "MPE MACs per cycle per core in MM (prefill) mode")
    mv_macs_per_cycle: int = _f(1, 1_000_000, "MPE MACs per cycle per core in MV (decode) mode")
    sfu_elems_per_cycle: int = _f(1, 4096, "SFU elements per cycle per core")
    hbm_channels: int = _f(1, 256, "HBM pseudo-channels")
    hbm_channel_bytes_per_s: float = _f(1e8, 1e12, "peak bandwidth of one pseudo-channel")
    hbm_eff_same_channel: float = _f(0.01, 1.0, "achievable fraction within one channel")
    hbm_eff_cross_channel: float = _f(0.01, 1.0, "achievable fraction across channels")
    board_power_w: float = _f(0, 1000, "board power while decoding (0: not published)")
    # -- FlightLLM core details (defaults: the authors' artifact vhk158_config.yaml) --------
    mm_rows: int = _f(2, 4096, "MM tile token rows (artifact MM_START_M_NUM)", default=128)
    mm_tile_cols: int = _f(16, 4096, "MM tile output columns (artifact MM_START_N_NUM)",
                           default=16)
    mv_tile_cols: int = _f(16, 8192, "MV tile output columns (artifact MV_START_N_NUM)",
                           default=512)
    weight_channels: int = _f(1, 64, "HBM channels feeding the A buffer per core (artifact)",
                              default=8)
    # A design knob, not a FlightLLM number: token rows one MV computes from ONE read of its
    # weight or K/V tile from the A buffer. 1 = FlightLLM as published (artifact
    # MV_PARALLEL_M 1). An MV uses mv_macs_per_cycle / 16 CSD-Chains on one DSP48 lane; the MM
    # path has mm_macs_per_cycle / 32 chains x 2 lanes (two INT8 MACs share a weight per
    # DSP48). Feeding one weight beat to m rows needs m x mv_macs_per_cycle MACs per cycle,
    # which the core's DSPs give for m <= mm_macs_per_cycle // mv_macs_per_cycle (``check``).
    # Not charged: the beat's broadcast to the extra chains and m x 16 B/cycle of vectors
    # from the B buffer (docs/flightllm.md, 'Small-M MV').
    mv_rows: int = _f(1, 256, "token rows one MV computes from one A-buffer read of its tile "
                      "(1: FlightLLM as published; at most mm_macs_per_cycle // "
                      "mv_macs_per_cycle)", default=1)
    a_buffer_bytes: float = _f(1024, 1e9, "A buffer per core (artifact 4096 x 256 B)",
                               default=4096 * 256)
    b_buffer_bytes: float = _f(256, 1e9, "B buffer per core (artifact 4096 x 32 B)",
                               default=4096 * 32)
    global_buffer_bytes: float = _f(256, 1e9, "global buffer per core (artifact 512 x 256 B)",
                                    default=512 * 256)
    meta_buffer_bytes: float = _f(16, 1e9, "sparse-index buffer (artifact 4096 x 16 B)",
                                  default=4096 * 16)
    fsb_buffer_bytes: float = _f(16, 1e9, "FSB buffer (artifact 4096 x 1 B)", default=4096)
    hbm_latency_cycles: int = _f(0, 10_000, "HBM request latency in accelerator cycles",
                                 default=24)
    # -- memory-system physics measured or documented for the device (0 / -1: not modelled) --
    hbm_refresh_interval_ns: float = _f(0, 1e6, "HBM refresh interval tREFI (0: no refresh "
                                        "modelled)", default=0)
    hbm_refresh_ns: float = _f(0, 1e5, "HBM all-bank refresh time tRFC: the pseudo-channel "
                               "moves no data for this long every tREFI", default=0)
    hbm_slr: int = _f(-1, 15, "SLR (= core index) whose die holds the HBM interface; the other "
                      "cores' requests cross SLR boundaries (-1: every core next to its "
                      "channels)", default=-1)
    slr_crossing_cycles: int = _f(0, 100, "pipeline latency of one SLR boundary crossing, one "
                                  "way, in accelerator cycles", default=0)
    # -- FPGA device capacities and the paper's reported use (0: not given) ------------------
    fpga_part: str = field(default="", metadata={"doc": "FPGA device part (e.g. XCU280)"})
    fpga_dsp_count: int = _f(0, 1_000_000, "DSP slices on the device (0: not given)", default=0)
    fpga_lut_count: int = _f(0, 100_000_000, "CLB LUTs on the device (0: not given)", default=0)
    fpga_ff_count: int = _f(0, 100_000_000, "CLB flip-flops on the device (0: not given)",
                            default=0)
    fpga_bram36_count: int = _f(0, 1_000_000, "36 Kb block RAMs on the device (0: not given)",
                                default=0)
    fpga_uram288_count: int = _f(0, 1_000_000, "288 Kb UltraRAMs on the device (0: not given)",
                                 default=0)
    reported_bram36_count: int = _f(0, 1_000_000, "BRAM36 the published build uses (0: not "
                                    "published)", default=0)
    reported_uram288_count: int = _f(0, 1_000_000, "URAM288 the published build uses (0: not "
                                     "published)", default=0)
    # -- speculative decoding: where the draft model runs (sim/flightllm/speculate.py) ------
    draft_weights: str = field(default="hbm", metadata={
        "doc": "draft weights: hbm (streamed from HBM every draft pass) or uram (held on chip "
               "in the URAM the design leaves free; refused if they do not fit)"})
    draft_engine: str = field(default="shared", metadata={
        "doc": "draft engine: shared (time-multiplexed on the cores) or separate (a one-core "
               "engine of draft_macs_per_cycle MV MACs beside them, pre-drafting the next "
               "chain while the cores verify, as HADES's separate engine)"})
    draft_macs_per_cycle: int = _f(16, 1_000_000, "separate draft engine: MV MACs per cycle "
                                   "(default: one core's MV MPE, artifact 64x16x1)",
                                   default=1024)

    def peak_ops_per_s(self, dtype: str) -> float:
        return 2.0 * self.mm_macs_per_cycle * self.cores * self.clock_hz

    @property
    def power_w(self) -> float:
        return self.board_power_w

    def check(self) -> list[str]:
        problems = []
        macs = max(self.mm_macs_per_cycle, self.mv_macs_per_cycle) * self.cores
        if self.dsp_count and macs > self.dsp_count * self.macs_per_dsp:
            problems.append(
                f"mm_macs_per_cycle x cores = {macs} MACs/cycle needs more than dsp_count "
                f"{self.dsp_count} x macs_per_dsp {self.macs_per_dsp} = "
                f"{self.dsp_count * self.macs_per_dsp}")
        most = max(1, self.mm_macs_per_cycle // self.mv_macs_per_cycle)
        if self.mv_rows > most:
            problems.append(
                f"mv_rows = {self.mv_rows} is out of range: allowed 1 to {most} = "
                f"mm_macs_per_cycle {self.mm_macs_per_cycle} // mv_macs_per_cycle "
                f"{self.mv_macs_per_cycle} (an MV of m rows runs m x mv_macs_per_cycle MACs "
                "per cycle on the DSP48 lanes the MM path already has)")
        total = self.hbm_channels * self.hbm_channel_bytes_per_s
        if not math.isclose(total, self.hbm_bytes_per_s, rel_tol=0.05):
            problems.append(
                f"hbm_channels x hbm_channel_bytes_per_s = {total:.4g} bytes/s differs from "
                f"hbm_bytes_per_s = {self.hbm_bytes_per_s:.4g} by more than 5%")
        if self.hbm_eff_cross_channel > self.hbm_eff_same_channel:
            problems.append("hbm_eff_cross_channel must not exceed hbm_eff_same_channel")
        if self.hbm_refresh_ns and self.hbm_refresh_ns >= self.hbm_refresh_interval_ns:
            problems.append("hbm_refresh_ns (tRFC) must be shorter than hbm_refresh_interval_ns "
                            "(tREFI)")
        if self.hbm_slr >= self.cores:
            problems.append(f"hbm_slr = {self.hbm_slr} names no core (cores = {self.cores})")
        for used, cap in (("dsp_count", "fpga_dsp_count"),
                          ("reported_bram36_count", "fpga_bram36_count"),
                          ("reported_uram288_count", "fpga_uram288_count")):
            if getattr(self, cap) and getattr(self, used) > getattr(self, cap):
                problems.append(f"{used} = {getattr(self, used)} exceeds the device's "
                                f"{cap} = {getattr(self, cap)}")
        for name, allowed in (("draft_weights", DRAFT_WEIGHTS), ("draft_engine", DRAFT_ENGINES)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} = {getattr(self, name)!r}; allowed: "
                                f"{', '.join(allowed)}")
        if self.draft_engine == "separate" and \
                self.draft_macs_per_cycle > self.mv_macs_per_cycle * self.cores:
            problems.append(f"draft_macs_per_cycle = {self.draft_macs_per_cycle}: the separate "
                            "draft engine has more MV MACs than all the cores "
                            f"({self.mv_macs_per_cycle} x {self.cores})")
        return problems


HardwareSpec = GPUSpec | FlightLLMSpec
_KINDS: dict[str, type[_SpecBase]] = {c.kind: c for c in (GPUSpec, FlightLLMSpec)}


def register_kind(cls: type[_SpecBase]) -> type[_SpecBase]:
    """Add a spec class (used by the FlightLLM/HADES packages for their own kinds)."""
    _KINDS[cls.kind] = cls
    return cls


def _import_kind(kind: str) -> None:
    """Spec kinds outside this module live in ``sim/<kind>/spec.py`` and register on import."""
    if not kind.isidentifier():
        return
    try:
        importlib.import_module(f"sim.{kind}.spec")
    except ModuleNotFoundError as e:
        if e.name not in (f"sim.{kind}", f"sim.{kind}.spec"):
            raise


def _known_kinds() -> list[str]:
    for path in Path(__file__).parent.glob("*/spec.py"):
        _import_kind(path.parent.name)
    return sorted(_KINDS)


def _spec_fields(cls: type[_SpecBase]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls) if f.name not in ("sources",)}


def _describe(f: dataclasses.Field[Any]) -> str:
    lo, hi = f.metadata.get("range", (None, None))
    unit = unit_of_field(f.name)
    u = f" {unit[0]}" if unit else ""
    return f"[{lo:g}, {hi:g}]{u}" if lo is not None else "a string"


def _coerce(where: str, f: dataclasses.Field[Any], raw: Any) -> Any:
    if f.type in ("str", str):
        if not isinstance(raw, str):
            raise SpecError(f"{where}: {f.name} = {raw!r}: expected a string")
        return raw
    try:
        value = parse_quantity(f.name, raw)
    except ValueError as e:
        raise SpecError(f"{where}: {e}") from None
    lo, hi = f.metadata["range"]
    if not (lo <= value <= hi) or math.isnan(value):
        raise SpecError(f"{where}: {f.name} = {raw!r} is out of range; allowed {_describe(f)}"
                        f" ({f.metadata['doc']})")
    if f.type in ("int", int):
        if value != int(value):
            raise SpecError(f"{where}: {f.name} = {raw!r}: must be a whole number")
        return int(value)
    return float(value)


def spec_from_dict(data: Mapping[str, Any], where: str = "<spec>") -> HardwareSpec:
    """A validated spec from a parsed TOML table; ``where`` names the source in errors."""
    data = dict(data)
    kind = data.pop("kind", None)
    if isinstance(kind, str) and kind not in _KINDS:
        _import_kind(kind)
    if kind not in _KINDS:
        raise SpecError(f"{where}: 'kind' must be one of {', '.join(_known_kinds())}; "
                        f"got {kind!r}")
    cls = _KINDS[kind]
    fields = _spec_fields(cls)
    sources = data.pop("sources", {})
    if not isinstance(sources, dict):
        raise SpecError(f"{where}: [sources] must be a table of field = \"source\"")
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r} ({_describe(fields[close[0]])})?" if close else ""
            raise SpecError(f"{where}: unknown key {key!r} for a {kind} spec{hint} "
                            f"allowed keys: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise SpecError(f"{where}: missing key {name!r} ({_describe(f)}"
                                f"{', ' + f.metadata['doc'] if f.metadata else ''})")
            continue
        values[name] = _coerce(where, f, data[name])
    spec = cls(**values, sources=tuple(sorted((k, str(v)) for k, v in sources.items())))
    return validate(spec, where)


def validate(spec: HardwareSpec, where: str = "<spec>") -> HardwareSpec:
    """Range-check every field and the cross-field rules of ``spec`` (after ``replace``)."""
    for name, f in _spec_fields(type(spec)).items():
        if "range" in f.metadata:
            _coerce(where, f, getattr(spec, name))
    problems = spec.check()
    if problems:
        raise SpecError(f"{where}: impossible spec: " + "; ".join(problems))
    return spec


def _raw_spec(path: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A hardware TOML as a dict, with its ``base`` preset's keys under its own.

    ``base = "flightllm-u280"`` (a preset name or a path, relative to the file) makes a design
    variant that states only what it changes; the base's ``[sources]`` carry over, so a
    variant never drifts from the board it modifies when the board's preset gains fields.
    """
    data = read_toml(path, "hardware file", SpecError,
                     expected="kind = \"gpu\", \"flightllm\" or \"hades\" and that "
                     "device's fields (configs/hw/*.toml), or base = \"PRESET\" and the "
                     "fields a variant changes")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise SpecError(f"{path}: base = {base!r}: expected a preset name or a .toml path")
    if base.endswith(".toml") or "/" in base:
        bpath = Path(path).parent / base
        bpath = bpath if bpath.exists() else Path(base)
    else:
        bpath = HW_DIR / f"{base}.toml"
        if not bpath.exists():
            raise SpecError(f"{path}: base = {base!r}: unknown hardware preset; presets: "
                            f"{', '.join(list_presets())} (or a path to a .toml file)")
    key = str(bpath.resolve())
    if key in seen:
        raise SpecError(f"{path}: base = {base!r} refers back to itself")
    merged = _raw_spec(bpath, (*seen, key))
    sources = {**merged.pop("sources", {}), **data.pop("sources", {})}
    merged.update(data)
    if sources:
        merged["sources"] = sources
    return merged


def load_spec(path: str | Path) -> HardwareSpec:
    return spec_from_dict(_raw_spec(path, (str(Path(path).resolve()),)), str(path))


def list_presets() -> list[str]:
    return sorted(p.stem for p in HW_DIR.glob("*.toml"))


def load_preset(name_or_path: str) -> HardwareSpec:
    """A preset by name (``gpu-a100``) or a TOML file path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_spec(name_or_path)
    path = HW_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise SpecError(f"unknown hardware preset {name_or_path!r}; presets: "
                        f"{', '.join(list_presets())} (or a path to a .toml file)")
    return load_spec(path)

"""FPGA resources of a FlightLLM preset: RTL blocks from recorded Yosys runs, buffers from sizes.

Counts, then costs: :func:`block_instances` says how many of each RTL block a preset needs (and
why), :func:`buffer_banks` how its on-chip buffers are banked, and :func:`estimate` prices them
with the per-instance counts recorded in ``configs/resources/rtl_synth.json`` (Yosys
``synth_xilinx``, written by ``verification/resource_synth.py``; replayed here, so no Yosys run
is needed) and the memory-primitive mapping rule of :func:`bram36_per_bank` /
:func:`uram288_per_bank`. A block configuration missing from the data file makes its resources
(and every total they enter) ``None`` with a note, never 0.

Not modelled (no RTL): HBM controllers and AXI interconnect, the instruction scheduler/decoder,
the per-core control; the CLI shows the gap to the paper's U280 build in numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import UserError
from sim.spec import FlightLLMSpec

__all__ = ["CSD_PATTERNS", "DATA_FILE", "RESOURCES", "BlockUse", "BufferUse", "ResourceReport",
           "block_instances", "bram36_per_bank", "buffer_banks", "check_device", "draft_buffers",
           "entry_key", "estimate", "load_synth_data", "uram288_per_bank"]

DATA_FILE = Path(__file__).resolve().parents[2] / "configs" / "resources" / "rtl_synth.json"
RESOURCES = ("dsp", "lut", "ff", "bram36", "uram288")
_ENTRY_FIELD = {"dsp": "dsp48e2", "lut": "lut", "ff": "ff", "bram36": "bram36",
                "uram288": "uram288"}
# FlightLLM §CSD-Chain: N:16 with N in {2, 4, 8, 16 (dense)} (shared/papers/flightllm.md)
CSD_PATTERNS = ("2:16", "4:16", "8:16", "dense")
CHAIN_DSP48 = 16  # artifact MM_PARALLEL_K 16: a VPU's chain takes 16 weights per cycle
DEQUANT_LANES = 16  # lanes of one synthesized dequantizer instance (verification defaults)
BANK_BYTES = 16  # artifact A/GLOBAL_BUFFER_PER_BANK_WIDTH_B
BANKS_PER_CHANNEL = 16  # artifact A/GLOBAL_BUFFER_MM_PER_CHANNEL_BANK_NUM
BIAS_BANK = (4096, 64)  # artifact BIAS_BUFFER_DEPTH x BIAS_BUFFER_BANK_WIDTH_B (no preset field)
# UG573 (UltraScale Memory Resources): RAMB36E2 aspect ratios (depth, width); x72 is simple
# dual-port only. Widths 9/18/36/72 include the parity bits, usable as data.
BRAM36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))
URAM288_SHAPE = (4096, 72)  # UG573: URAM288 has one fixed 4K x 72 organisation


def entry_key(block: str, params: dict[str, Any], options: tuple[str, ...] | list[str] = ()) -> str:
    """The data file's key of one block configuration, e.g. ``dequant:bits=4,group=64,lanes=16``."""
    text = f"{block}:" + ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return text + ("|" + " ".join(options) if options else "")


_LOADED: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}


def load_synth_data(path: Path | str = DATA_FILE) -> dict[str, dict[str, Any]]:
    """Entries of the recorded synthesis results by :func:`entry_key` (empty if no file).

    Read once per file version (sweeps price many points; ``--synth`` rewrites the file).
    """
    path = Path(path)
    if not path.exists():
        return {}
    key = (str(path), path.stat().st_mtime)
    if key not in _LOADED:
        _LOADED[key] = {e["key"]: e for e in json.loads(path.read_text())["entries"]}
    return dict(_LOADED[key])


def bram36_per_bank(depth: int, width_bits: int) -> int:
    """RAMB36E2s for one ``depth`` x ``width_bits`` bank: the cheapest UG573 aspect ratio.

    A bank narrower than a shape's width still takes a whole primitive column.
    """
    return min(math.ceil(depth / d) * math.ceil(width_bits / w) for d, w in BRAM36_SHAPES)


def uram288_per_bank(depth: int, width_bits: int) -> int:
    """URAM288s for one bank: 4K x 72 tiles (cascaded in depth, side by side in width)."""
    d, w = URAM288_SHAPE
    return math.ceil(depth / d) * math.ceil(width_bits / w)


@dataclass(frozen=True)
class BlockUse:
    """``count`` instances of one RTL block configuration (the max over ``alternatives``)."""

    name: str
    block: str
    alternatives: tuple[tuple[dict[str, Any], tuple[str, ...]], ...]
    count: int
    why: str
    per_instance: dict[str, float] | None = None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class BufferUse:
    """``count`` banks of ``depth`` x ``width_bits`` in ``memory`` (bram36 or uram288)."""

    name: str
    count: int
    depth: int
    width_bits: int
    memory: str
    why: str

    @property
    def per_bank(self) -> int:
        fn = uram288_per_bank if self.memory == "uram288" else bram36_per_bank
        return fn(self.depth, self.width_bits)

    @property
    def total(self) -> int:
        return self.count * self.per_bank


@dataclass(frozen=True)
class ResourceReport:
    """Modelled resources of one preset: per block, per buffer, totals (None: unknown)."""

    spec: str
    blocks: tuple[BlockUse, ...]
    buffers: tuple[BufferUse, ...]
    totals: dict[str, float | None]
    by_source: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _csd_chains(spec: FlightLLMSpec) -> int:
    """Chains per core: the DSP48s MM (two MACs each) or MV (one token: one MAC each) needs."""
    dsp = max(math.ceil(spec.mm_macs_per_cycle / spec.macs_per_dsp), spec.mv_macs_per_cycle)
    return math.ceil(dsp / CHAIN_DSP48)


def block_instances(spec: FlightLLMSpec, *, weight_bits: int = 4, dequant_on_dsp: bool = False,
                    speculation: bool = False) -> list[BlockUse]:
    """The RTL blocks ``spec`` needs, with instance counts and where each count comes from."""
    chains = _csd_chains(spec)
    pats = tuple(({"chain": CHAIN_DSP48, "pattern": p}, ()) for p in CSD_PATTERNS)
    beat_bytes = math.ceil(spec.hbm_channel_bytes_per_s / spec.clock_hz - 1e-9)
    per_channel = math.ceil(beat_bytes * 8 / weight_bits / DEQUANT_LANES)
    channels = spec.weight_channels + 1
    dq = {"bits": weight_bits, "lanes": DEQUANT_LANES, "group": 64}
    uses = [
        BlockUse("CSD-Chain", "csd_chain", pats, chains * spec.cores,
                 f"{spec.cores} cores x {chains} chains of {CHAIN_DSP48} DSP48 (max(mm_macs/"
                 f"macs_per_dsp, mv_macs) / {CHAIN_DSP48}); configurable for "
                 f"{'/'.join(CSD_PATTERNS)}: the max over the fixed-pattern syntheses (a lower "
                 "bound: rtl/csd_chain.py builds one pattern per instance)"),
        BlockUse("dequantizer", "dequant", ((dq, () if dequant_on_dsp else ("-nodsp",)),),
                 per_channel * channels * spec.cores,
                 f"{spec.cores} cores x {channels} weight channels (A's {spec.weight_channels} + "
                 f"B's) x {per_channel} ({DEQUANT_LANES}-lane, INT{weight_bits}) per channel: "
                 f"one lane per code of a {beat_bytes} B HBM beat/cycle (dequant in the memory "
                 "unit, on the load path); "
                 + ("scale multiply on DSP48E2" if dequant_on_dsp else
                    "scale multiply in LUTs (-nodsp: the paper's DSP total leaves no DSP "
                    "per lane)")),
        BlockUse("SFU (softmax)", "sfu", (({"n": 64, "lanes": spec.sfu_elems_per_cycle}, ()),),
                 spec.cores, f"one per core, {spec.sfu_elems_per_cycle} lanes "
                 "(sfu_elems_per_cycle); n = 64-element vector buffer of the RTL"),
    ]
    if speculation:
        uses.append(BlockUse("verifier", "verifier",
                             (({"mode": "greedy", "gamma": 4, "token_bits": 16}, ()),), 1,
                             "one per device (speculative decoding, greedy, gamma 4)"))
    if speculation and spec.draft_engine == "separate":
        n = math.ceil(spec.draft_macs_per_cycle / CHAIN_DSP48)   # MV: one MAC per DSP48
        uses.append(BlockUse("draft engine CSD-Chain", "csd_chain", pats, n,
                             f"separate draft engine: draft_macs_per_cycle "
                             f"{spec.draft_macs_per_cycle} MV MACs / {CHAIN_DSP48} per chain "
                             "(its dequantizers and SFU not counted)"))
    return uses


def draft_buffers(spec: FlightLLMSpec, draft_weight_bytes: int | None = None
                  ) -> list[BufferUse]:
    """On-chip memory speculation adds (``sim.flightllm.draft``): a separate draft engine's
    buffers (a one-core FlightLLM's, A in URAM) and, with ``draft_weights = "uram"``, the
    draft's weights (``draft_weight_bytes``) in 4K x 72 URAM288s, 9 bytes a row."""
    out = []
    if spec.draft_engine == "separate":
        from sim.flightllm.draft import draft_engine_spec

        out += [dataclasses.replace(b, name=f"draft engine {b.name}")
                for b in buffer_banks(draft_engine_spec(spec))]
    if spec.draft_weights == "uram" and draft_weight_bytes:
        out.append(BufferUse("draft weights", 1, math.ceil(draft_weight_bytes / 9), 72,
                             "uram288", f"draft_weights = uram: {draft_weight_bytes:,} bytes "
                             "of the draft's linear weights (compressed)"))
    return out


def buffer_banks(spec: FlightLLMSpec, *, uram_buffers: tuple[str, ...] = ("A",)) -> list[BufferUse]:
    """Per-device buffer banks from the artifact's bank shapes (vhk158_config.yaml).

    A and global are banked per weight channel (16 banks of 16 B each, per channel); B, meta,
    FSB and bias are one bank each on one channel. Buffers in ``uram_buffers`` map to URAM288
    (the A buffer by default: docs/flightllm.md reads 768 of the U280's 792 URAMs as 3 cores x
    8 channels x 16 banks x 2), the others to BRAM36 (Vivado infers block RAM unless a memory
    carries ``ram_style = "ultra"``).
    """
    c, ch = spec.cores, spec.weight_channels
    row = BANK_BYTES * BANKS_PER_CHANNEL  # bytes of one channel row (artifact 256 B)
    # B is read 32 B a cycle by the MM (artifact B_BUFFER_MM_BANK_WIDTH_B: 2 tokens x 16) and
    # 16 B by an MV (B_BUFFER_MV_BANK_WIDTH_B); an MV of mv_rows rows reads mv_rows x 16 B
    b_width = max(32, 16 * spec.mv_rows)
    shapes = [
        ("A", c * ch * BANKS_PER_CHANNEL, int(spec.a_buffer_bytes) // row, BANK_BYTES * 8,
         "cores x channels x 16 banks; depth a_buffer_bytes / 256 B per channel"),
        ("global", c * ch * BANKS_PER_CHANNEL, int(spec.global_buffer_bytes) // row,
         BANK_BYTES * 8, "cores x channels x 16 banks; depth global_buffer_bytes / 256 B"),
        ("B", c, int(spec.b_buffer_bytes) // b_width, b_width * 8,
         f"one {b_width} B bank per core" + (f" (mv_rows {spec.mv_rows} x 16 B)"
                                             if b_width > 32 else "")),
        ("meta", c, int(spec.meta_buffer_bytes) // 16, 128, "one 16 B bank per core"),
        ("FSB", c, int(spec.fsb_buffer_bytes), 8, "one 1 B bank per core"),
        ("bias", c, BIAS_BANK[0], BIAS_BANK[1] * 8, "one 64 B x 4096 bank per core (artifact)"),
    ]
    return [BufferUse(n, k, max(d, 1), w, "uram288" if n in uram_buffers else "bram36", why)
            for n, k, d, w, why in shapes]


def _price(use: BlockUse, data: dict[str, dict[str, Any]]) -> BlockUse:
    found = [data.get(entry_key(use.block, p, o)) for p, o in use.alternatives]
    missing = tuple(entry_key(use.block, p, o) for (p, o), e in zip(use.alternatives, found,
                                                                      strict=True)
                    if e is None)
    if missing:
        return BlockUse(**{**use.__dict__, "missing": missing})
    per = {r: float(max(e[_ENTRY_FIELD[r]] for e in found)) for r in RESOURCES}
    return BlockUse(**{**use.__dict__, "per_instance": per})


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]


def estimate(spec: FlightLLMSpec, *, data: dict[str, dict[str, Any]] | None = None,
             weight_bits: int = 4, dequant_on_dsp: bool = False, speculation: bool = False,
             uram_buffers: tuple[str, ...] = ("A",),
             draft_weight_bytes: int | None = None) -> ResourceReport:
    """Modelled DSP, LUT, FF, BRAM36 and URAM288 of ``spec`` (None where data is missing).

    ``speculation``: the verifier, and the draft's placement (``draft_buffers``): with
    ``draft_weights = "uram"`` the draft's on-chip weights need ``draft_weight_bytes``
    (``sim.flightllm.draft.onchip_weight_bytes``; None: not counted, with a note)."""
    if not isinstance(spec, FlightLLMSpec):
        raise UserError(f"resources: {spec.name!r} is not a FlightLLM preset (kind "
                        f"{spec.kind!r}); the resource model covers FlightLLM FPGAs only")
    data = load_synth_data() if data is None else data
    blocks = tuple(_price(u, data) for u in block_instances(
        spec, weight_bits=weight_bits, dequant_on_dsp=dequant_on_dsp, speculation=speculation))
    buffers = tuple(buffer_banks(spec, uram_buffers=uram_buffers))
    extra_notes: tuple[str, ...] = ()
    if speculation:
        buffers += tuple(draft_buffers(spec, draft_weight_bytes))
        if spec.draft_weights == "uram" and not draft_weight_bytes:
            extra_notes = ("draft_weights = uram: the draft's URAM is not counted (no draft "
                           "given)",)
    by_source: dict[str, dict[str, float | None]] = {}
    for b in blocks:
        by_source[b.name] = {r: None if b.per_instance is None else b.count * b.per_instance[r]
                             for r in RESOURCES}
    for m in ("bram36", "uram288"):
        by_source[f"buffers ({m})"] = {r: float(sum(x.total for x in buffers if x.memory == m))
                                       if r == m else 0.0 for r in RESOURCES}
    totals = {r: _sum([v[r] for v in by_source.values()]) for r in RESOURCES}
    notes = tuple(f"{b.name}: no synthesis data for {', '.join(b.missing)} (run `llmcosim "
                  f"resources --hw {spec.name} --synth`)" for b in blocks if b.missing)
    notes += extra_notes
    return ResourceReport(spec.name, blocks, buffers, totals, by_source, notes)


# resources a design must fit on its device: the DSP, BRAM and URAM counts, which our model
# prices close to the paper's build (docs/flightllm.md, 'Resources'). LUT and FF are not
# checked: our RTL's sparse muxes and LUT dequantizer put even the published design at 135%
# of the U280's LUTs, so a LUT rule would refuse FlightLLM itself.
_DEVICE_LIMITS = (("dsp", "fpga_dsp_count", "DSP"), ("bram36", "fpga_bram36_count", "BRAM36"),
                  ("uram288", "fpga_uram288_count", "URAM288"))


def check_device(spec: FlightLLMSpec) -> None:
    """UserError when the modelled design needs more DSP, BRAM36 or URAM288 than the device
    has (presets without device capacities, 0, are not checked)."""
    totals = None
    for key, cap_field, label in _DEVICE_LIMITS:
        cap = getattr(spec, cap_field)
        if not cap:
            continue
        totals = totals or estimate(spec).totals
        need = totals.get(key)
        if need is not None and need > cap:
            where = spec.fpga_part or "the device"
            raise UserError(
                f"{spec.name}: the design needs {need:,.0f} {label} and {where} has {cap:,} "
                f"({cap_field}); `llmcosim resources` on this hardware itemises the need "
                "(shrink the buffers, cores or MPE, or pick a larger device)")

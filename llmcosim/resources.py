"""``llmcosim resources``: DSP/LUT/FF/BRAM36/URAM288 of a FlightLLM preset (wiring only).

The model is ``sim/flightllm/resources.py`` (recorded Yosys counts per RTL block, buffers from
their sizes); ``--synth`` runs Yosys for configurations missing from the data file
(``verification/resource_synth.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from models.errors import UserError

__all__ = ["NOT_MODELLED", "add_resources_parser", "cmd_resources", "report_rows"]

_out = Console(width=None if sys.stdout.isatty() else 220)
NOT_MODELLED = ("HBM controllers and AXI interconnect, instruction scheduler/decoder, "
                "per-core control and FIFOs (no RTL)")
_LABEL = {"dsp": "DSP", "lut": "LUT", "ff": "FF", "bram36": "BRAM36", "uram288": "URAM288"}


def add_resources_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("resources", help="FPGA resources of a FlightLLM preset from the RTL "
                       "blocks' Yosys counts and the buffers' sizes, against the paper and device")
    s.add_argument("--hw", default="flightllm-u280", help="FlightLLM preset or .toml "
                   "(default flightllm-u280)")
    s.add_argument("--weight-bits", type=int, default=4, choices=(2, 3, 4, 8),
                   help="weight code width the dequantizers take (default 4: the artifact)")
    s.add_argument("--dequant-dsp", action="store_true",
                   help="dequantizer scale multiply on DSP48E2 (default: in LUTs)")
    s.add_argument("--speculation", action="store_true",
                   help="add the speculative-decoding verifier (one per device) and the draft's "
                   "placement (draft_engine, draft_weights of the preset)")
    s.add_argument("--draft", default=None, metavar="MODEL",
                   help="with --speculation and draft_weights = uram: the draft whose weights "
                   "URAM holds (default llama-68m)")
    s.add_argument("--synth", action="store_true", help="run Yosys for block configurations "
                   "missing from configs/resources/rtl_synth.json (about 10-60 s each)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_resources)


def _reference(spec) -> dict[str, tuple[float, float]]:
    """resource -> (paper's reported use, device capacity); 0 where not given."""
    return {"dsp": (spec.dsp_count, spec.fpga_dsp_count), "lut": (0, spec.fpga_lut_count),
            "ff": (0, spec.fpga_ff_count),
            "bram36": (spec.reported_bram36_count, spec.fpga_bram36_count),
            "uram288": (spec.reported_uram288_count, spec.fpga_uram288_count)}


def report_rows(spec, rep) -> list[dict]:
    """One row per resource: modelled by source, total, paper, device, utilisation, gap."""
    rows = []
    for r, (paper, cap) in _reference(spec).items():
        total = rep.totals[r]
        rows.append({
            "resource": _LABEL[r], "by_source": {k: v[r] for k, v in rep.by_source.items()},
            "modelled": total, "paper": paper or None, "device": cap or None,
            "utilisation": total / cap if cap and total is not None else None,
            "not_modelled": paper - total if paper and total is not None else None})
    return rows


def _fmt(v) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _table(spec, rep, rows) -> Table:
    t = Table(title=f"llmcosim resources — {spec.name} ({spec.fpga_part or 'device not given'})")
    t.add_column("resource")
    for src in rep.by_source:
        t.add_column(src, justify="right")
    for col in ("modelled", "paper", "device", "util.", "paper − model"):
        t.add_column(col, justify="right")
    for row in rows:
        util = "—" if row["utilisation"] is None else f"{row['utilisation']:.1%}"
        t.add_row(row["resource"], *(_fmt(v) for v in row["by_source"].values()),
                  _fmt(row["modelled"]), _fmt(row["paper"]), _fmt(row["device"]), util,
                  _fmt(row["not_modelled"]))
    return t


def _synth(spec, args) -> None:
    from llmcosim.progress import TaskProgress
    from verification.resource_synth import synth_missing

    with TaskProgress(f"resources {spec.name}", "Yosys runs", verb="synthesized",
                      enabled=not args.json) as prog:
        synth_missing([spec], progress=prog, weight_bits=args.weight_bits)


def _draft_bytes(spec, draft: str | None) -> int | None:
    """The draft's on-chip weight bytes (compressed as FlightLLM's cycle run compresses it)
    when the preset holds them in URAM; None otherwise."""
    if spec.draft_weights != "uram":
        return None
    from mapping.flightllm.compression import apply_compression
    from models.cache import get_graph
    from sim.flightllm.draft import onchip_weight_bytes
    from sim.hades.speculate import DEFAULT_DRAFT

    g = get_graph(draft or DEFAULT_DRAFT, "decode", context=1)
    return onchip_weight_bytes(apply_compression(g))


def cmd_resources(args: argparse.Namespace) -> int:
    from sim.flightllm.resources import estimate
    from sim.spec import FlightLLMSpec, load_preset

    spec = load_preset(args.hw)
    if not isinstance(spec, FlightLLMSpec):
        raise UserError(f"--hw {args.hw!r}: a {spec.kind} preset; resources covers FlightLLM "
                        "presets only (flightllm-u280, flightllm-vhk158)")
    if args.synth:
        _synth(spec, args)
    if args.draft is not None and not args.speculation:
        raise UserError("--draft counts a draft's on-chip weights: give --speculation too")
    rep = estimate(spec, weight_bits=args.weight_bits, dequant_on_dsp=args.dequant_dsp,
                   speculation=args.speculation,
                   draft_weight_bytes=_draft_bytes(spec, args.draft)
                   if args.speculation else None)
    rows = report_rows(spec, rep)
    gaps = ", ".join(f"{r['resource']} {r['not_modelled']:+,.0f}" for r in rows
                     if r["not_modelled"] is not None)
    left_out = f"Not modelled: {NOT_MODELLED}" + (
        f"; the paper's build minus the model: {gaps}" if gaps else "")
    if args.json:
        print(json.dumps({"hw": spec.name, "part": spec.fpga_part, "rows": rows,
                          "blocks": [asdict(b) for b in rep.blocks],
                          "buffers": [asdict(b) | {"per_bank": b.per_bank, "total": b.total}
                                      for b in rep.buffers],
                          "not_modelled": left_out, "notes": list(rep.notes)}, indent=1))
        return 0
    _out.print(_table(spec, rep, rows))
    for b in rep.blocks:
        _out.print(f"  {b.name}: {b.count:,} x ({b.why})")
    for b in rep.buffers:
        _out.print(f"  buffer {b.name}: {b.count:,} banks {b.depth} x {b.width_bits} bit -> "
                   f"{b.per_bank} {b.memory} each = {b.total:,} ({b.why})")
    _out.print(left_out)
    for note in rep.notes:
        _out.print(f"[yellow]note:[/] {note}")
    return 0

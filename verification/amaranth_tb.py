"""Run a block's packed vectors in Amaranth's own simulator (fast unit tests, no Verilog).

Same stimulus and expected beats as the cocotb runs (``verification.blocks.make_vectors``),
with the same idle/backpressure inserters and the same latency/II probe, driven through
``amaranth.sim`` testbenches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from verification.blocks import BlockConfig, Vectors, build_component

__all__ = ["AmaranthRun", "run_amaranth"]


@dataclass
class AmaranthRun:
    """Outputs and timing seen in one Amaranth simulation."""

    outputs: list[list[int]]
    latency: list[int]
    ii: list[int]


def _port(dut, name):
    return getattr(dut, name)


async def _drive(ctx, port, txns, rng, idle, log, timing_txns, done):
    beats = [(t, b) for t, bs in enumerate(txns) for b in bs]
    cycle = 0
    for txn, beat in beats:
        while txn >= timing_txns and not done["timing"]:
            await ctx.tick()
            cycle += 1
        if txn >= timing_txns and idle:
            for _ in range(rng.randint(1, 3) if rng.random() < idle else 0):
                await ctx.tick()
        ctx.set(port.payload.as_value(), beat)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        # the handshake belongs to the cycle before the edge that moved the beat
        log.append((txn, ctx.get(done["clock"]) - 1))
        ctx.set(port.valid, 0)


def run_amaranth(cfg: BlockConfig, vec: Vectors, *, seed: int = 0, idle: float = 0.3,
                 backpressure: float = 0.3, timing_txns: int = 4) -> AmaranthRun:
    """Simulate ``vec`` on ``cfg`` and return what came out (compare with ``vec.expected``)."""
    dut = build_component(cfg)
    rng = random.Random(seed)
    top = Module()
    top.submodules.dut = dut
    clock = Signal(32)  # free-running cycle counter read by all testbenches
    top.d.sync += clock.eq(clock + 1)
    done = {"timing": False, "clock": clock}
    logs: dict[str, list] = {name: [] for name in vec.inputs}
    outputs: list[list[int]] = [[] for _ in vec.expected]
    first_valid: dict[int, int] = {}
    sim = Simulator(top)
    sim.add_clock(1e-8)
    for name, txns in vec.inputs.items():
        async def tb(ctx, name=name, txns=txns):
            await _drive(ctx, _port(dut, name), txns, random.Random(rng.random()), idle,
                         logs[name], timing_txns, done)
        sim.add_testbench(tb)

    async def sink(ctx):
        port = _port(dut, vec.output)
        beats = [(t, i) for t, bs in enumerate(vec.expected) for i in range(len(bs))]
        for txn, i in beats:
            if txn >= timing_txns:
                done["timing"] = True
            ready_rng = backpressure if done["timing"] else 0.0
            while True:
                ctx.set(port.ready, 0 if rng.random() < ready_rng else 1)
                if ctx.get(port.valid) and i == 0 and txn not in first_valid:
                    first_valid[txn] = ctx.get(clock)
                if ctx.get(port.valid) and ctx.get(port.ready):
                    outputs[txn].append(ctx.get(port.payload.as_value()))
                    await ctx.tick()
                    break
                await ctx.tick()
        ctx.set(port.ready, 0)

    sim.add_testbench(sink)
    sim.run_until(1e-8 * (100 + 60 * sum(len(b) for s in vec.inputs.values() for b in s)))
    return AmaranthRun(outputs, *_timing(vec, logs, first_valid, timing_txns))


def _timing(vec, logs, first_valid, n):
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for log in logs.values():
        for txn, cyc in log:
            first[txn] = min(first.get(txn, cyc), cyc)
            last[txn] = max(last.get(txn, cyc), cyc)
    anchor = last if vec.anchor == "last" else first
    n = min(n, len(vec.expected))
    lat = sorted({first_valid[t] - anchor[t] for t in range(n) if t in first_valid})
    ii = sorted({first[t + 1] - first[t] for t in range(n - 1)})
    return lat, ii

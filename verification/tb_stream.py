"""Generic cocotb testbench for stream blocks: drivers, monitor, scoreboard, timing probe.

The pytest side (``verification/runner.py``) writes a JSON vector file: packed input beats per
stream and the reference kernel's packed output beats, grouped by transaction, plus the timing
the ``sim/blocks`` model predicts. This module drives the beats, checks every output beat
bit-exactly, checks the stream protocol (a valid payload is held until taken), measures latency
and initiation interval, writes a JSON result file and fails with the seed in the message.

Phases: the first ``timing_txns`` transactions run with inputs always valid and the output
always ready (the timing probe); the rest run with the idle inserters on every input stream and
the backpressure inserter on the output.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["run_vectors"]


def _read(handle) -> int | None:
    try:
        return handle.value.to_unsigned()
    except ValueError:  # X or Z bits
        return None


class _Driver:
    """Source of one input stream with an idle inserter (random gaps between beats)."""

    def __init__(self, dut, name: str, txns: list[list[int]], rng: random.Random):
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.beats = [(t, beat) for t, beats in enumerate(txns) for beat in beats]
        self.pos, self.idle_left, self.rng = 0, 0, rng
        self.handshakes: list[tuple[int, int]] = []  # (txn, cycle)
        self.driven: tuple[int, int | None] = (0, None)  # writes cost: only write changes

    def drive(self, txn_limit: int) -> None:
        offer = (self.idle_left == 0 and self.pos < len(self.beats)
                 and self.beats[self.pos][0] < txn_limit)
        if not offer:
            self.idle_left = max(0, self.idle_left - 1)
        payload = self.beats[self.pos][1] if offer else self.driven[1]
        if (int(offer), payload) != self.driven:
            self.valid.value = int(offer)
            if payload != self.driven[1]:
                self.payload.value = payload
            self.driven = (int(offer), payload)

    def sample(self, cycle: int, idle_prob: float, errors: list[str]) -> None:
        if self.driven[0] and not self.ready.value.is_resolvable:
            errors.append(f"cycle {cycle}: {self.name}.ready is X/Z while valid is high")
        if self.driven[0] and self.ready.value == 1:
            self.handshakes.append((self.beats[self.pos][0], cycle))
            self.pos += 1
            if idle_prob and self.rng.random() < idle_prob:
                self.idle_left = self.rng.randint(1, 4)


class _Monitor:
    """Sink of the output stream: backpressure inserter, protocol check and scoreboard."""

    def __init__(self, dut, name: str, txns: list[list[int]], rng: random.Random):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.expected = [(t, i, beat) for t, beats in enumerate(txns)
                         for i, beat in enumerate(beats)]
        self.rng = rng
        self.ready_now: int | None = None
        self.pos = 0
        self.first_valid: int | None = None
        self.held: int | None = None  # payload offered but not taken last cycle
        self.first_valid_of_txn: dict[int, int] = {}
        self.mismatches: list[dict] = []
        self.protocol_errors: list[str] = []

    def drive(self, bp_prob: float) -> None:
        ready = 0 if bp_prob and self.rng.random() < bp_prob else 1
        if ready != self.ready_now:
            self.ready.value = ready
            self.ready_now = ready

    def sample(self, cycle: int) -> None:
        if not self.valid.value.is_resolvable:
            self.protocol_errors.append(f"cycle {cycle}: output valid is X/Z")
        valid = self.valid.value == 1
        if self.held is not None and not valid:
            self.protocol_errors.append(f"cycle {cycle}: valid dropped before the beat was taken")
        if not valid:
            self.held = None
            return
        got = _read(self.payload)
        if self.held is not None and got != self.held:
            self.protocol_errors.append(f"cycle {cycle}: payload changed while not taken")
        if self.first_valid is None:
            self.first_valid = cycle
        if not self.ready_now:
            self.held = got
            return
        self.held = None
        self._score(got, cycle)

    def _score(self, got: int | None, cycle: int) -> None:
        if self.pos >= len(self.expected):
            self.protocol_errors.append(f"cycle {cycle}: unexpected extra output beat")
            return
        txn, beat, want = self.expected[self.pos]
        if beat == 0:
            self.first_valid_of_txn[txn] = self.first_valid
        if got != want:
            self.mismatches.append({"txn": txn, "beat": beat, "expected": want, "got": got,
                                    "cycle": cycle})
        self.pos += 1
        self.first_valid = None

    def txns_done(self) -> int:
        return self.expected[self.pos][0] if self.pos < len(self.expected) else 1 << 62


def _timing(spec: dict, drivers: list[_Driver], mon: _Monitor) -> dict:
    n = min(spec["timing_txns"], len(mon.first_valid_of_txn))
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for d in drivers:
        for txn, cycle in d.handshakes:
            first[txn] = min(first.get(txn, cycle), cycle)
            last[txn] = max(last.get(txn, cycle), cycle)
    anchor = last if spec["anchor"] == "last" else first
    lat = [mon.first_valid_of_txn[t] - anchor[t] for t in range(n)]
    ii = [first[t + 1] - first[t] for t in range(n - 1)]
    return {"latency": sorted(set(lat)), "ii": sorted(set(ii))}


@cocotb.test()
async def run_vectors(dut):
    """Drive every transaction of the vector file and score the outputs."""
    with open(os.environ["LLMCOSIM_VECTORS"]) as f:
        spec = json.load(f)
    seed = spec["seed"]
    rng = random.Random(seed)
    drivers = [_Driver(dut, name, txns, rng) for name, txns in spec["inputs"].items()]
    mon = _Monitor(dut, spec["output"], spec["expected"], rng)
    ntx = len(spec["expected"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for d in drivers:
        d.valid.value = 0
    mon.ready.value = 0
    mon.ready_now = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    cycle, timing_phase = 0, True
    while mon.pos < len(mon.expected) and cycle < spec["max_cycles"]:
        await FallingEdge(dut.clk)
        cycle += 1
        limit = spec["timing_txns"] if timing_phase else ntx
        for d in drivers:
            d.drive(limit)
        mon.drive(0.0 if timing_phase else spec["backpressure"])
        await ReadOnly()
        for d in drivers:
            d.sample(cycle, 0.0 if timing_phase else spec["idle"], mon.protocol_errors)
        mon.sample(cycle)
        if timing_phase and mon.txns_done() >= spec["timing_txns"]:
            timing_phase = False
    result = {"cycles": cycle, "beats_checked": mon.pos, "mismatches": mon.mismatches[:20],
              "mismatch_count": len(mon.mismatches), "protocol_errors": mon.protocol_errors[:20],
              **_timing(spec, drivers, mon)}
    with open(os.environ["LLMCOSIM_RESULT"], "w") as f:
        json.dump(result, f)
    _check(spec, result, len(mon.expected))


def _check(spec: dict, res: dict, beats: int) -> None:
    seed = spec["seed"]
    assert res["beats_checked"] == beats, (
        f"seed {seed}: only {res['beats_checked']}/{beats} output beats in {res['cycles']} cycles")
    assert not res["protocol_errors"], f"seed {seed}: {res['protocol_errors'][0]}"
    if res["mismatch_count"]:
        mm = res["mismatches"][0]
        raise AssertionError(f"seed {seed}: {res['mismatch_count']} mismatching beats; first: "
                             f"txn {mm['txn']} beat {mm['beat']} expected {mm['expected']:#x} "
                             f"got {mm['got'] if mm['got'] is None else hex(mm['got'])}")
    assert res["latency"] == [spec["expect_latency"]], (
        f"latency measured {res['latency']} cycles, sim/blocks model {spec['expect_latency']}")
    if res["ii"]:
        assert res["ii"] == [spec["expect_ii"]], (
            f"II measured {res['ii']} cycles, sim/blocks model {spec['expect_ii']}")

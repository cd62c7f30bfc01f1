"""Reference engine (SimPy): one process per queue per core, token FIFOs as stores.

The readable statement of the semantics that ``engine_fast`` implements: in-order queues; an
instruction takes one token per ``wait`` bit (FIFO ``src -> queue``), runs for its cycles and
puts one token per ``release`` bit. LD dispatches in ``ISSUE_CYCLES`` to a pseudo-channel
(a capacity-1 resource served in request order) and retires in order, releasing its tokens at
retirement. SYS is a barrier across cores (the k-th SYS of every core starts together).
"""

from __future__ import annotations

import numpy as np
import simpy

from mapping.flightllm.isa import Program, Queue
from sim.flightllm.timing import ISSUE_CYCLES, ports

__all__ = ["run_simpy"]


class _Core:
    def __init__(self, env: simpy.Environment, arr: np.ndarray):
        self.env, self.arr = env, arr
        self.fifo = {(s, d): simpy.Store(env) for s in Queue for d in Queue}
        self.start = np.full(len(arr), -1, np.int64)
        self.finish = np.full(len(arr), -1, np.int64)
        self.dispatched = env.event()
        self.port = np.zeros(len(arr), np.int64)

    def take(self, i: int, q: int):
        for s in Queue:
            if int(self.arr["wait"][i]) >> s & 1:
                yield self.fifo[(s, Queue(q))].get()

    def give(self, i: int, q: int) -> None:
        for d in Queue:
            if int(self.arr["release"][i]) >> d & 1:
                self.fifo[(Queue(q), d)].put(i)


def _queue(core: _Core, q: Queue, idx: np.ndarray, sys: list, channels: dict):
    env = core.env
    done_events = []
    if q == Queue.LD:
        env.process(_retire(core, idx, done_events))
    for k, i in enumerate(idx):
        yield from core.take(i, q)
        if q == Queue.SYS:
            bar = sys[k]
            bar["arrived"] += 1
            if bar["arrived"] == bar["need"]:
                bar["event"].succeed()
            yield bar["event"]
        core.start[i] = env.now
        if q == Queue.LD:
            ev = env.event()
            done_events.append(ev)
            core.dispatched.succeed()
            core.dispatched = env.event()
            env.process(_transfer(core, i, channels[int(core.port[i])], ev))
            yield env.timeout(ISSUE_CYCLES)
            continue
        yield env.timeout(int(core.arr["cycles"][i]))
        core.finish[i] = env.now
        core.give(i, q)


def _transfer(core: _Core, i: int, chan: simpy.Resource, ev: simpy.Event):
    with chan.request() as req:
        yield req
        yield core.env.timeout(int(core.arr["cycles"][i]))
    ev.succeed(core.env.now)


def _retire(core: _Core, idx: np.ndarray, events: list):
    for k, i in enumerate(idx):
        while len(events) <= k:  # not dispatched yet: wait for the dispatch
            yield core.dispatched
        yield events[k]
        core.finish[i] = core.env.now
        core.give(i, Queue.LD)


def run_simpy(program: Program, nchan: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and finish cycle of every instruction, per core (slow; the reference)."""
    env = simpy.Environment()
    cores = [_Core(env, arr) for arr in program.cores]
    port, nport = ports(program, nchan)
    channels = {c: simpy.Resource(env, capacity=1) for c in range(nport)}
    for core, pt in zip(cores, port, strict=True):
        core.port = pt
    nsys = int((program.cores[0]["queue"] == Queue.SYS).sum())
    sys = [{"arrived": 0, "need": len(cores), "event": env.event()} for _ in range(nsys)]
    for core in cores:
        for q in Queue:
            idx = np.flatnonzero(core.arr["queue"] == q)
            env.process(_queue(core, q, idx, sys, channels))
    env.run()
    return [c.start for c in cores], [c.finish for c in cores]

"""Perfetto/Chrome trace of FlightLLM passes: one track per queue per core, one per HBM port.

Queue tracks (``core0/MV``, ``core0/MISC``...) show each instruction from start to finish. LD
runs on one track per HBM port (``core0/LD port 3``): the transfer on its pseudo-channel,
recomputed with the engines' rule (dispatch at the LD's start, a port serves transfers in
dispatch order; in-order retirement may release tokens later). Passes follow each other on
the time axis; each pass gets an equal share of ``max_events`` (a prefill pass has ~300k
instructions), the instructions past it are counted in ``otherData.dropped_events``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapping.flightllm.isa import MISC_OPS, Queue
from sim.flightllm.timing import ports
from sim.perfetto import TraceWriter
from sim.spec import FlightLLMSpec

__all__ = ["write_trace"]

_MISC_NAMES = {v: k for k, v in MISC_OPS.items()}


def _name(prog, r) -> str:
    q = Queue(int(r["queue"]))
    node = prog.nodes[int(r["node"])] if r["node"] >= 0 else ""
    if q == Queue.MISC:
        return f"{_MISC_NAMES.get(int(r['op']), 'misc')} {node}".strip()
    return f"{q.name} {node}".strip()


def _add_pass(tw: TraceWriter, label: str, res, spec: FlightLLMSpec, t0: int,
              budget: int) -> int:
    """Spans of one pass from cycle ``t0`` (at most ``budget`` events; the rest are dropped)."""
    prog = res.program
    stop = len(tw.events) + budget
    clk = spec.clock_hz
    port, _ = ports(prog, spec.hbm_channels)
    for c, arr in enumerate(prog.cores):
        st, fi = res.start[c], res.finish[c]
        chan_free: dict[int, int] = {}
        for i in range(len(arr)):
            if len(tw.events) >= stop:
                tw.dropped += 1
                continue
            q = Queue(int(arr["queue"][i]))
            s = int(st[i])
            if q == Queue.LD:
                p = int(port[c][i])
                ts = max(s, chan_free.get(p, 0))
                chan_free[p] = ts + int(arr["cycles"][i])
                tw.span(f"core{c}/LD port {p}", _name(prog, arr[i]), (t0 + ts) / clk,
                        int(arr["cycles"][i]) / clk, bytes=int(arr["nbytes"][i]), phase=label)
                continue
            tw.span(f"core{c}/{q.name}", _name(prog, arr[i]), (t0 + s) / clk,
                    (int(fi[i]) - s) / clk, cycles=int(arr["cycles"][i]), phase=label)
    return t0 + res.cycles


def write_trace(path: str | Path, passes: list[tuple[str, object]], spec: FlightLLMSpec,
                max_events: int = 300_000) -> Path:
    """Write ``passes`` (``(label, PassResult)``, run one after the other) to ``path``."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tw = TraceWriter(f"FlightLLM {spec.name}", max_events=max_events)
    t0 = 0
    budget = max_events // max(1, len(passes)) - 1   # every pass gets its share of events
    for label, res in passes:
        tw.span("passes", label, t0 / spec.clock_hz, res.cycles / spec.clock_hz)
        t0 = _add_pass(tw, label, res, spec, t0, budget)
    tw.counter("instructions", 0.0, total=float(np.sum([r.program.total for _, r in passes])))
    return tw.write(p)

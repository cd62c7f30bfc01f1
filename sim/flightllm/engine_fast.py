"""Fast engine (numba): the reference semantics of ``engine_simpy`` as a list scheduler.

Per core, each queue runs its instructions in order; an instruction starts when its queue is
free and one token per ``wait`` bit is available (the k-th token of a queue pair is the k-th
release in the producer's program order). LD dispatches in one cycle to its pseudo-channel,
which serves transfers in dispatch order, and retires in order (tokens at retirement). SYS
starts when every core reached its SYS of the same index. Start/finish times equal the
SimPy model's (tests check this on random and LLaMA programs).
"""

from __future__ import annotations

import numba
import numpy as np

from mapping.flightllm.isa import Program
from sim.flightllm.timing import ISSUE_CYCLES, ports

__all__ = ["DeadlockError", "run_fast"]

NQ = 6
LD, SYS = 0, 5


class DeadlockError(RuntimeError):
    pass


@numba.njit(cache=True)
def _run(queue, wait, release, channel, cycles, core_off, nchan):  # noqa: C901
    ncores = core_off.size - 1
    n = queue.size
    start = np.full(n, -1, np.int64)
    finish = np.full(n, -1, np.int64)
    # per core, per queue: instruction lists
    qcount = np.zeros((ncores, NQ), np.int64)
    for c in range(ncores):
        for i in range(core_off[c], core_off[c + 1]):
            qcount[c, queue[i]] += 1
    qoff = np.zeros((ncores, NQ + 1), np.int64)
    qlist = np.empty(n, np.int64)
    pos = 0
    for c in range(ncores):
        for q in range(NQ):
            qoff[c, q] = pos
            pos += qcount[c, q]
        qoff[c, NQ] = pos
    fillp = qoff[:, :NQ].copy()
    for c in range(ncores):
        for i in range(core_off[c], core_off[c + 1]):
            qlist[fillp[c, queue[i]]] = i
            fillp[c, queue[i]] += 1
    # token FIFOs: produced times per (core, src, dst)
    tcount = np.zeros((ncores, NQ, NQ), np.int64)
    for c in range(ncores):
        for i in range(core_off[c], core_off[c + 1]):
            for d in range(NQ):
                if release[i] >> d & 1:
                    tcount[c, queue[i], d] += 1
    toff = np.zeros((ncores, NQ, NQ), np.int64)
    tot = 0
    for c in range(ncores):
        for s in range(NQ):
            for d in range(NQ):
                toff[c, s, d] = tot
                tot += tcount[c, s, d]
    ttime = np.empty(max(tot, 1), np.int64)
    tprod = np.zeros((ncores, NQ, NQ), np.int64)
    tcons = np.zeros((ncores, NQ, NQ), np.int64)
    head = qoff[:, :NQ].copy()
    qfree = np.zeros((ncores, NQ), np.int64)
    chan_free = np.zeros(nchan, np.int64)
    ld_retire = np.zeros(ncores, np.int64)
    nsys = qcount[0, SYS]
    sys_arrive = np.full((max(nsys, 1), ncores), -1, np.int64)
    sys_idx = np.zeros(ncores, np.int64)
    done = 0
    progress = True
    while progress:
        progress = False
        for c in range(ncores):
            for q in range(NQ):
                while head[c, q] < qoff[c, q] + qcount[c, q]:
                    i = qlist[head[c, q]]
                    ok = True
                    t = qfree[c, q]
                    for s in range(NQ):
                        if wait[i] >> s & 1:
                            if tcons[c, s, q] >= tprod[c, s, q]:
                                ok = False
                                break
                            tt = ttime[toff[c, s, q] + tcons[c, s, q]]
                            if tt > t:
                                t = tt
                    if not ok:
                        break
                    if q == SYS:
                        k = sys_idx[c]
                        sys_arrive[k, c] = t
                        for o in range(ncores):
                            if sys_arrive[k, o] < 0:
                                ok = False
                        if not ok:
                            break
                        for o in range(ncores):
                            if sys_arrive[k, o] > t:
                                t = sys_arrive[k, o]
                    for s in range(NQ):
                        if wait[i] >> s & 1:
                            tcons[c, s, q] += 1
                    start[i] = t
                    if q == LD:
                        qfree[c, q] = t + ISSUE_CYCLES
                        ch = channel[i]
                        ts = max(t, chan_free[ch])
                        f = ts + cycles[i]
                        chan_free[ch] = f
                        f = max(f, ld_retire[c])
                        ld_retire[c] = f
                    else:
                        f = t + cycles[i]
                        qfree[c, q] = f
                    if q == SYS:
                        sys_idx[c] += 1
                    finish[i] = f
                    for d in range(NQ):
                        if release[i] >> d & 1:
                            ttime[toff[c, q, d] + tprod[c, q, d]] = f
                            tprod[c, q, d] += 1
                    head[c, q] += 1
                    done += 1
                    progress = True
    return start, finish, done


def run_fast(program: Program, nchan: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and finish cycle of every instruction, per core."""
    arrs = program.cores
    port, nport = ports(program, nchan)
    off = np.zeros(len(arrs) + 1, np.int64)
    off[1:] = np.cumsum([len(a) for a in arrs])

    def field(name: str) -> np.ndarray:   # per field: a structured concatenate is slow
        return np.concatenate([a[name] for a in arrs]).astype(np.int64)

    n = int(off[-1])
    start, finish, done = _run(field("queue"), field("wait"), field("release"),
                               np.concatenate(port), field("cycles"), off, nport)
    if done != n:
        raise DeadlockError(f"program deadlocks: {n - done} of {n} instructions "
                            "never start (unmatched wait/release tokens or SYS)")
    return ([start[off[c]:off[c + 1]] for c in range(len(arrs))],
            [finish[off[c]:off[c + 1]] for c in range(len(arrs))])

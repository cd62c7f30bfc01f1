"""The FlightLLM instruction set (artifact): six in-order queues with wait/release tokens.

A program is one numpy structured array per core (``INSTR``); each row is one instruction.
``wait``/``release`` are bit masks over the queues: an instruction consumes one token from the
FIFO ``src -> its queue`` for every ``wait`` bit ``src`` before it starts, and pushes one token
into ``its queue -> dst`` for every ``release`` bit ``dst`` when it finishes (decoupled
access/execute, double buffering). ``cycles`` is filled by the timing model.

An MM/MV instruction computes one fixed tile: the artifact's MM/MV fields are K (in 16-blocks),
sparse/bias/relu flags and buffer addresses, with no output-column count, and its timing model
charges every MV ``MV_START_N_NUM`` (512) columns and every MM ``MM_START_M_NUM`` x
``MM_START_N_NUM`` (128 x 16). ``cols`` holds the columns a layer needs from the tile (the MACs
that count as work), ``pad`` the rest of the tile, computed all the same (the last column tile
of a linear on a core, the 128 head dimensions of a decode head's PV, ...).

Binary encoding (32-bit words; counts from the artifact: LD 7, ST 3, MM 4, MV 4, MISC 3, SYS 1):
word 0 of every instruction = ``queue[3] | op[5] | wait[6] | release[6] | cross[1] | flags[3]``
from bit 0 up, and in an MV's top 8 bits its token rows - 1 (0 as published, MV_PARALLEL_M 1;
more with the ``mv_rows`` design knob, so FlightLLM's own programs encode as before); the
other words carry the fields listed in ``_FIELDS`` (one field
per word, as 32-bit two's complement), the rest are zero. ``decode`` reads them back and
``listing`` prints them. Not encoded, as in the artifact: an MM's N (the FSB buffer holds N per
16 x 16 weight block) and the padded columns of a tile (the tile is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

__all__ = ["FLAG_BIAS", "FLAG_RELU", "FLAG_SPARSE", "INSTR", "MISC_OPS", "WORDS", "Program",
           "Queue", "decode", "encode", "listing", "storage_bytes"]


class Queue(IntEnum):
    LD = 0
    ST = 1
    MM = 2
    MV = 3
    MISC = 4
    SYS = 5


WORDS = {Queue.LD: 7, Queue.ST: 3, Queue.MM: 4, Queue.MV: 4, Queue.MISC: 3, Queue.SYS: 1}
# artifact MISC op codes; rope is three of them (mul sin, mul cos, add), as the artifact emits
MISC_OPS = {"eltwise_add": 0, "eltwise_mul": 1, "softmax": 2, "layernorm": 3, "rmsnorm": 4,
            "silu": 5}
# MM/MV flags (artifact fields: sparse, bias, relu): N:16 weights with FSB/indices, add the
# bias (first K chunk of an output tile), apply ReLU (last K chunk; OPT's fc1 needs no SFU op)
FLAG_SPARSE, FLAG_BIAS, FLAG_RELU = 1, 2, 4
# LD targets (artifact: B, meta, bias, FSB, A, global buffers)
LD_TARGETS = {"B": 0, "meta": 1, "bias": 2, "FSB": 3, "A": 4, "global": 5}

INSTR = np.dtype([
    ("queue", "i1"), ("op", "i1"), ("wait", "u1"), ("release", "u1"),
    ("channel", "i2"),      # LD/ST: HBM pseudo-channel (core-global index)
    ("cross", "i1"),        # LD/ST: 1 when the data sits in another core's channels
    ("nbytes", "i8"),       # LD/ST bytes
    ("rows", "i4"),         # MM: token rows; MISC: vectors
    ("cols", "i4"),         # MM/MV: output columns; MISC: elements per vector
    ("pad", "i4"),          # MM/MV: columns computed past ``cols`` to fill the fixed tile
    ("k", "i4"),            # MM/MV: dot-product length (elements)
    ("n", "i1"),            # MM/MV: N of the N:16 pattern (16: dense)
    ("flags", "u1"),        # MM/MV: FLAG_SPARSE | FLAG_BIAS | FLAG_RELU
    ("node", "i4"),         # index into Program.nodes (-1: none)
    ("cycles", "i8"),       # filled by the timing model
])

_FIELDS = {Queue.LD: ("channel", "nbytes", "rows", "cols", "k", "node"),
           Queue.ST: ("channel", "nbytes"), Queue.MM: ("rows", "cols", "k"),
           Queue.MV: ("cols", "k", "n"), Queue.MISC: ("rows", "cols"), Queue.SYS: ()}


@dataclass
class Program:
    """Instruction streams of all cores for one forward pass (one length bucket)."""

    cores: list[np.ndarray]
    nodes: list[str] = field(default_factory=list)     # op names referenced by ``node``
    meta: dict[str, object] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Instructions per queue, all cores together."""
        out = {q.name: 0 for q in Queue}
        for arr in self.cores:
            for q in Queue:
                out[q.name] += int((arr["queue"] == q).sum())
        return out

    @property
    def total(self) -> int:
        return sum(len(a) for a in self.cores)


def storage_bytes(counts: dict[str, int]) -> int:
    """Encoded size of instructions with per-queue ``counts`` (4-byte words)."""
    return 4 * sum(WORDS[Queue[q]] * c for q, c in counts.items())


def _starts(queues: np.ndarray) -> tuple[np.ndarray, int]:
    size = np.array([WORDS[Queue(q)] for q in range(len(Queue))])[queues.astype(np.int64)]
    ends = np.cumsum(size)
    return ends - size, int(ends[-1]) if len(ends) else 0


def encode(arr: np.ndarray) -> np.ndarray:
    """One core's instructions as uint32 words (see the module docstring)."""
    q = arr["queue"].astype(np.int64)
    start, total = _starts(q)
    out = np.zeros(total, np.uint32)
    out[start] = ((q & 7) | (arr["op"].astype(np.int64) & 31) << 3
                  | arr["wait"].astype(np.int64) << 8 | arr["release"].astype(np.int64) << 14
                  | (arr["cross"].astype(np.int64) & 1) << 20
                  | (arr["flags"].astype(np.int64) & 7) << 21
                  | (np.where(q == Queue.MV, arr["rows"].astype(np.int64) - 1, 0) & 255) << 24)
    for queue, fields in _FIELDS.items():
        sel = q == queue
        for j, f in enumerate(fields):
            out[start[sel] + 1 + j] = arr[f][sel].astype(np.int64) & 0xFFFFFFFF
    return out


def decode(words: np.ndarray) -> np.ndarray:
    """Instructions (``INSTR``, ``cycles`` 0; an MM's ``n`` 16 and ``pad`` 0, which the words
    do not hold) from the uint32 ``words`` of one core (``encode``'s inverse)."""
    words = np.asarray(words, np.uint32)
    size = [WORDS[Queue(q)] if q < len(Queue) else 0 for q in range(8)]
    start, i = [], 0
    while i < len(words):
        n = size[int(words[i]) & 7]
        if n == 0 or i + n > len(words):
            raise ValueError(f"word {i}: not an instruction (queue {int(words[i]) & 7}) or "
                             f"truncated; {len(words)} words")
        start.append(i)
        i += n
    st = np.asarray(start, np.int64)
    w0 = words[st].astype(np.int64)
    arr = np.zeros(len(st), INSTR)
    arr["queue"], arr["op"] = w0 & 7, w0 >> 3 & 31
    arr["wait"], arr["release"] = w0 >> 8 & 63, w0 >> 14 & 63
    arr["cross"], arr["flags"] = w0 >> 20 & 1, w0 >> 21 & 7
    arr["rows"] = np.where(arr["queue"] == Queue.MV, (w0 >> 24 & 255) + 1, 0)
    arr["node"], arr["n"] = -1, 16
    signed = words.view(np.int32)
    for queue, fields in _FIELDS.items():
        sel = arr["queue"] == queue
        for j, f in enumerate(fields):
            arr[f][sel] = signed[st[sel] + 1 + j]
    return arr


_OP_NAMES = {Queue.LD: {v: k for k, v in LD_TARGETS.items()},
             Queue.MISC: {v: k for k, v in MISC_OPS.items()}}
_FLAG_NAMES = ((FLAG_SPARSE, "sparse"), (FLAG_BIAS, "bias"), (FLAG_RELU, "relu"))


def _mask(bits: int) -> str:
    return ",".join(q.name for q in Queue if bits >> q & 1) or "-"


def listing(arr: np.ndarray, nodes: list[str] | None = None, start: int = 0) -> list[str]:
    """One line per instruction: index, queue, op, the encoded fields, tokens (``wait`` from /
    ``release`` to those queues) and, for an LD with a node, the op it belongs to."""
    lines = []
    for i, r in enumerate(arr, start):
        q = Queue(int(r["queue"]))
        op = _OP_NAMES.get(q, {}).get(int(r["op"]), "")
        flags = ",".join(n for b, n in _FLAG_NAMES if int(r["flags"]) & b)
        fields = " ".join(f"{f}={int(r[f])}" for f in _FIELDS[q]
                          if f != "node" and (int(r[f]) or f == "channel"))
        extra = (" cross" if r["cross"] else "") + (f" [{flags}]" if flags else "")
        if q == Queue.MV and int(r["rows"]) > 1:  # an MV of several rows (mv_rows knob)
            extra += f" rows={int(r['rows'])}"
        node = int(r["node"])
        name = f"  ; {nodes[node]}" if nodes and "node" in _FIELDS[q] \
            and 0 <= node < len(nodes) else ""
        lines.append(f"{i:>8}  {q.name:<4} {op:<12} {fields}{extra}  wait={_mask(int(r['wait']))}"
                     f" release={_mask(int(r['release']))}{name}")
    return lines

"""Program builder: per-core instruction lists and FIFO-consistent wait/release tokens.

``dep(p, c)`` makes instruction ``c`` wait for ``p`` (both on one core). Tokens of a queue
pair are matched in program order, so the builder keeps, per (src, dst), the last producer that
released to dst: an older producer is already implied (queues are in order and LD retires in
order), and a consumer that already waits on src moves that token to the newer producer.

Storage: instructions are generated as Python lists (``rows``, fast to append and patch) and
moved into a numpy ``INSTR`` array (``frozen``) when a block of recorded instructions is
appended (``append_block``, sub-layer replication, replay.py) or the program is built; an
instruction's index on its core is the same wherever it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mapping.flightllm.isa import INSTR, Program, Queue

__all__ = ["Arch", "Builder", "queue_positions"]


@dataclass(frozen=True)
class Arch:
    """What code generation needs of the hardware (built by the simulator from its spec)."""

    cores: int = 4                       # artifact SLR_NUM (VHK158)
    channels_per_core: int = 8           # 32 pseudo-channels / 4 cores
    weight_channels: int = 8             # artifact A_BUFFER_HBM_CHANNEL_NUM
    a_buffer_bytes: int = 4096 * 256     # artifact A 4096 deep x 256 B
    b_buffer_bytes: int = 4096 * 32      # artifact B 4096 deep x 32 B
    global_buffer_bytes: int = 512 * 256  # artifact global 512 deep x 256 B
    meta_buffer_bytes: int = 4096 * 16   # artifact meta 4096 deep x 16 B
    fsb_buffer_bytes: int = 4096 * 1     # artifact FSB 4096 deep x 1 B
    mv_tile_cols: int = 512              # artifact MV_START_N_NUM
    mm_tile_rows: int = 128              # artifact MM_START_M_NUM
    mm_tile_cols: int = 16               # artifact MM_START_N_NUM
    # token rows one MV instruction computes from one A-buffer read of its tile (a design
    # knob, ``FlightLLMSpec.mv_rows``; the artifact's MV_PARALLEL_M is 1)
    mv_rows: int = 1
    on_chip_decode: bool = True          # FlightLLM always-on-chip decode
    fuse: bool = True                    # linear+SiLU/eltwise/RoPE, attention+softmax
    # decode (MV) sparse indices: True = next to each kept weight in the A-buffer stream over
    # the weight channels (the one path wide enough for the MV, see docs/flightllm.md);
    # False = through the meta buffer from its one HBM channel (artifact
    # META_BUFFER_HBM_CHANNEL_NUM 1), the meta buffer's 16 B/cycle read width not applied
    index_in_weights: bool = True


@dataclass
class _Core:
    rows: list[list[int]] = field(default_factory=list)  # instruction off + j is rows[j]
    off: int = 0                                          # instructions [0, off) in frozen
    frozen: np.ndarray = field(default_factory=lambda: np.zeros(0, INSTR))  # capacity >= off
    qidx: list[int] = field(default_factory=list)     # position in its queue, of live rows
    fq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # ... of frozen
    qlen: list[int] = field(default_factory=lambda: [0] * len(Queue))
    last: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # -> (p, c)
    floor: int = -1                                   # ``watch``: producers below it go to ext
    ext: set[int] = field(default_factory=set)


_NAMES = INSTR.names
_IX = {n: i for i, n in enumerate(_NAMES)}
_TEMPLATE = [0] * len(_NAMES)
_TEMPLATE[_IX["node"]], _TEMPLATE[_IX["n"]] = -1, 16
_W, _R = _IX["wait"], _IX["release"]


def queue_positions(arr: np.ndarray) -> np.ndarray:
    """Each instruction's position in its queue within ``arr`` (for ``append_block``)."""
    q = arr["queue"].astype(np.int64)
    order = np.argsort(q, kind="stable")
    counts = np.bincount(q, minlength=len(Queue))
    starts = np.cumsum(counts) - counts
    pos = np.empty(len(arr), np.int64)
    pos[order] = np.arange(len(arr)) - np.repeat(starts, counts)
    return pos


_VOID = np.dtype((np.void, INSTR.itemsize))


def _raw(a: np.ndarray) -> np.ndarray:
    """``INSTR`` rows as opaque bytes: copies as a memcpy (a structured copy goes field by
    field, ~30x slower)."""
    return a.view(_VOID)


def _as_instr(rows: list[list[int]]) -> np.ndarray:
    m = np.array(rows, dtype=np.int64).reshape(len(rows), len(_NAMES))
    arr = np.zeros(len(rows), dtype=INSTR)
    for j, name in enumerate(_NAMES):
        arr[name] = m[:, j]
    return arr


class Builder:
    """Collects instructions per core; ``emit`` returns the instruction's index on its core."""

    def __init__(self, cores: int):
        self._cores = [_Core() for _ in range(cores)]
        self.nodes: list[str] = []
        self._node_ix: dict[str, int] = {}

    def node(self, name: str) -> int:
        if name not in self._node_ix:
            self._node_ix[name] = len(self.nodes)
            self.nodes.append(name)
        return self._node_ix[name]

    def emit(self, core: int, queue: Queue, *, after: tuple[int | None, ...] = (),
             **fields: int) -> int:
        c = self._cores[core]
        row = _TEMPLATE.copy()
        row[0] = int(queue)
        for k, v in fields.items():
            row[_IX[k]] = v
        i = c.off + len(c.rows)
        c.rows.append(row)
        c.qidx.append(c.qlen[queue])
        c.qlen[queue] += 1
        for p in after:
            if p is not None:
                self.dep(core, p, i)
        return i

    def like(self, core: int, i: int, **fields: int) -> int:
        """A copy of instruction ``i`` (same queue, no tokens) with ``fields`` changed.

        For the fan-out of one transfer over several channels: the copies follow ``i`` in the
        in-order queue, so its tokens already order them (what ``dep`` would conclude too).
        """
        c = self._cores[core]
        row = c.rows[i - c.off].copy()   # ``i`` was just emitted: not frozen
        row[_W] = row[_R] = 0
        for k, v in fields.items():
            row[_IX[k]] = v
        c.rows.append(row)
        q = row[0]
        c.qidx.append(c.qlen[q])
        c.qlen[q] += 1
        return c.off + len(c.rows) - 1

    def dep(self, core: int, p: int, c: int) -> None:
        """Instruction ``c`` starts only after ``p`` finished (same core)."""
        k = self._cores[core]
        if p < k.floor:
            k.ext.add(p)
        off = k.off
        crow = k.rows[c - off]       # ``c``: just emitted, never frozen
        src = k.rows[p - off][0] if p >= off else int(k.frozen["queue"][p])
        dst = crow[0]
        if src == dst:
            return  # in-order queue
        last = k.last.get((src, dst))
        if last is not None:
            qi, lp = k.qidx, last[0]
            if (qi[p - off] if p >= off else k.fq[p]) <= (qi[lp - off] if lp >= off
                                                          else k.fq[lp]):
                return  # an older producer: implied by the token already matched
        if last is not None and last[1] == c:  # move this consumer's token to the newer p
            self.set_release(core, last[0], self.release_of(core, last[0]) & ~(1 << dst))
        if p >= off:
            k.rows[p - off][_R] |= 1 << dst
        else:
            self.set_release(core, p, self.release_of(core, p) | 1 << dst)
        crow[_W] |= 1 << src
        k.last[(src, dst)] = (p, c)

    # -- access by index, wherever the instruction is stored ------------------------------
    def count(self, core: int) -> int:
        c = self._cores[core]
        return c.off + len(c.rows)

    def queue_of(self, core: int, i: int) -> int:
        c = self._cores[core]
        return c.rows[i - c.off][0] if i >= c.off else int(c.frozen["queue"][i])

    def release_of(self, core: int, i: int) -> int:
        c = self._cores[core]
        return c.rows[i - c.off][_R] if i >= c.off else int(c.frozen["release"][i])

    def set_release(self, core: int, i: int, bits: int) -> None:
        c = self._cores[core]
        if i >= c.off:
            c.rows[i - c.off][_R] = bits
        else:
            c.frozen["release"][i] = bits

    def releases(self, core: int) -> list[int]:
        """Every instruction's release bits, in order."""
        c = self._cores[core]
        return c.frozen["release"][:c.off].tolist() + [r[_R] for r in c.rows]

    def row_lists(self, core: int, a: int, b: int) -> list[list[int]]:
        """Instructions [a, b) as field lists (``INSTR`` order)."""
        self.freeze(core)
        m = self._cores[core].frozen[a:b]
        return np.stack([m[n].astype(np.int64) for n in _NAMES], axis=1).tolist()

    def qidx(self, core: int, i: int) -> int:
        """Position of instruction ``i`` in its queue."""
        c = self._cores[core]
        return c.qidx[i - c.off] if i >= c.off else int(c.fq[i])

    def qlen(self, core: int, q: int) -> int:
        return self._cores[core].qlen[q]

    # -- blocks (sub-layer replication) ---------------------------------------------------
    def freeze(self, core: int) -> None:
        """Move the core's Python rows into its numpy array."""
        c = self._cores[core]
        if c.rows:
            self._reserve(c, len(c.rows))
            _raw(c.frozen[c.off:c.off + len(c.rows)])[:] = _raw(_as_instr(c.rows))
            c.fq[c.off:c.off + len(c.rows)] = c.qidx
            c.off += len(c.rows)
            c.rows, c.qidx = [], []

    def block(self, core: int, a: int) -> np.ndarray:
        """A copy of instructions [a, count) (``INSTR``)."""
        self.freeze(core)
        c = self._cores[core]
        return _raw(c.frozen[a:c.off]).copy().view(INSTR)

    def append_block(self, core: int, arr: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """Append instructions ``arr`` (``INSTR``, tokens as they are); ``qpos``: each one's
        position in its queue counted from the block's start (``queue_positions``). Returns
        the stored block (a view, for renaming nodes in place)."""
        self.freeze(core)
        c = self._cores[core]
        n = len(arr)
        self._reserve(c, n)
        a, b = c.off, c.off + n
        _raw(c.frozen[a:b])[:] = _raw(arr)
        queue = arr["queue"].astype(np.intp)
        np.add(qpos, np.asarray(c.qlen, np.int64)[queue], out=c.fq[a:b])
        for q, cnt in enumerate(np.bincount(queue, minlength=len(Queue)).tolist()):
            c.qlen[q] += cnt
        c.off = b
        return c.frozen[a:b]

    def append_rows(self, core: int, rows: list[list[int]]) -> None:
        """Append instructions given as field lists (tokens as they are)."""
        c = self._cores[core]
        qlen, qidx = c.qlen, c.qidx
        for r in rows:
            c.rows.append(r)
            q = r[0]
            qidx.append(qlen[q])
            qlen[q] += 1

    @staticmethod
    def _reserve(c: _Core, n: int) -> None:
        if c.off + n > len(c.frozen):
            # untouched capacity costs no memory (pages are mapped when first written)
            size = max(4 * len(c.frozen), c.off + n, 1 << 16)
            grown, fq = np.empty(size, INSTR), np.empty(size, np.int64)
            _raw(grown[:c.off])[:] = _raw(c.frozen[:c.off])
            fq[:c.off] = c.fq[:c.off]
            c.frozen, c.fq = grown, fq

    def watch(self, core: int) -> tuple[int, set[int]]:
        """Record the producers ``dep`` gets from before the current end of the core; returns
        the enclosing watch, for ``unwatch`` (watches nest)."""
        c = self._cores[core]
        outer = (c.floor, c.ext)
        c.floor, c.ext = self.count(core), set()
        return outer

    def unwatch(self, core: int, outer: tuple[int, set[int]] | None = None) -> set[int]:
        """The producers seen since ``watch``; the enclosing watch sees those before it."""
        c = self._cores[core]
        ext = c.ext
        c.floor, c.ext = outer if outer is not None else (-1, set())
        self.note(core, ext)
        return ext

    def note(self, core: int, producers) -> None:
        """Tell the current watch that instructions ``producers`` were depended on."""
        c = self._cores[core]
        c.ext.update(p for p in producers if p < c.floor)

    def program(self, meta: dict[str, object]) -> Program:
        arrs = []
        for core, c in enumerate(self._cores):
            self.freeze(core)
            arrs.append(c.frozen[:c.off])   # a view: the builder is done with it
        return Program(arrs, list(self.nodes), dict(meta))

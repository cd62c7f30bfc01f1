"""Sub-layer replication for prefill: a linear (or a row tile of one) whose instructions would
repeat an earlier one's on the same core is copied from it, not generated tile by tile.

Prefill layers differ where their attention masks differ (per-layer block-sparse attention),
so whole layers rarely repeat (``replicate.py``), but their linears do: the same shapes,
compression and tiling in every layer, ~90% of a prefill's instructions. What one core's part
of a prefill linear emits (``_LinearUnit``) is a function of

- what it reads of the op and of the generator (its key): the op's signature, the core, its
  column segments, the fused epilogue, ReLU, bias, where the input comes from, the norm passes
  waiting to run on the input (``deferred``, ``prefill.py``) with their arguments;
- the earlier instructions it depends on (its refs): the input's producer (``ready``) and the
  two MPE ops that free the weight buffer's halves (``mpe_done[-2:]``), each with what
  ``Builder.dep`` reads of it (``_dynamic``: its queue, release bits, order among the refs,
  and whether it is older than the last producer matched per queue pair).

The same holds one level down: a row tile after a linear's first (128 tokens, ``prefill.py``)
is a function of the row-tile state (``_RowUnit``: the activation halves, output chunks,
column-tile count) and of the instructions that state points at. (The row tile's position
is in no instruction field: the ISA carries no addresses.)

The first unit with a key is generated and recorded: its rows, the release bits it set on
those earlier instructions, the token matches, MPE ops and generator state it left. A later
unit with the same key is the record appended at its position, node ids renamed. A record
is kept only if the builder saw no other earlier instruction referenced (``Builder.watch``),
no node was registered, every node id in its rows is one the key renames, and nothing stays
deferred; else that unit is simply generated each time. ``tests/unit/test_flightllm_replay.py``
and ``tests/torch/test_flightllm_replay.py`` check replayed == generated programs, cycle for
cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from mapping.flightllm.builder import queue_positions
from mapping.flightllm.isa import Queue
from mapping.flightllm.replicate import signature
from models.graph import Node

__all__ = ["LinearReplay"]


class _LinearUnit:
    """Core ``c``'s part of a prefill linear (``prefill_linear``)."""

    def __init__(self, gen, node: Node, c: int, segs: list, k: int, sparse: bool,
                 epi: list[str], from_all: bool):
        self.gen, self.c = gen, c
        self.args = (node, c, segs, k, sparse, epi, from_all)
        self.key, self.ids = None, ()
        done = gen.mpe_done[c]
        self.refs = (gen.ready[c], done[-2] if len(done) >= 2 else None,
                     done[-1] if done else None)
        deferred, ids = [], [gen.b.node(node.name)]
        for fn in gen.deferred[c]:
            if not (isinstance(fn, partial) and fn.func == gen._sfu_pass and not fn.keywords):
                return   # not replayable
            core, chunks, size, nid, kind, split = fn.args
            deferred.append((core, tuple(chunks), size, kind, split))
            ids.append(nid)
        self.key = ("linear", c, signature((node,)), tuple(segs), k, sparse, tuple(epi),
                    gen.relu, gen.bias_left, from_all, gen.exch_layout if from_all else None,
                    gen.t, tuple(deferred))
        self.ids = tuple(ids)

    def run(self) -> None:
        self.gen.prefill_linear(*self.args)

    def save(self, enc) -> tuple:
        return (enc(self.gen.ready[self.c]), self.gen.bias_left)

    def load(self, saved: tuple, dec) -> None:
        gen, c = self.gen, self.c
        gen.ready[c], gen.bias_left = dec(saved[0]), saved[1]
        gen.pf_node, gen.pf[c], gen.out_heads = self.ids[0], None, None
        gen.deferred[c] = []   # the norm passes it waited for are in the rows


class _RowUnit:
    """A row tile after the first of core ``c``'s part of a prefill linear (its input's
    producer known, nothing deferred): ``PrefillMixin.row_tile``."""

    def __init__(self, gen, node: Node, c: int, segs: list, k: int, sparse: bool,
                 epi: list[str]):
        self.gen, self.c, self.args = gen, c, (node, c, segs, k, sparse, epi)
        rt, done = gen.pf[c], gen.mpe_done[c]
        h0, h1 = rt.halves
        self.refs = (rt.inp, h0.ld, h0.last, h1.ld, h1.last,
                     rt.sts[-2] if len(rt.sts) >= 2 else None, rt.sts[-1] if rt.sts else None,
                     done[-2] if len(done) >= 2 else None, done[-1] if done else None)
        self.ids = (gen.b.node(node.name),)
        self.key = None if rt.inp == -1 or gen.deferred[c] else (
            "row", c, signature((node,)), tuple(segs), k, sparse, tuple(epi), gen.relu,
            gen.bias_left, rt.from_all, gen.exch_layout if rt.from_all else None, gen.t,
            rt.rows, rt.k, rt.cols, rt.coltiles, rt.chunks, h0.key, h1.key)
        self.nsts = len(rt.sts)

    def run(self) -> None:
        self.gen.row_tile(*self.args)

    def save(self, enc) -> tuple:
        gen, rt = self.gen, self.gen.pf[self.c]
        return (enc(gen.ready[self.c]), gen.bias_left,
                tuple((h.key, enc(h.ld), enc(h.last)) for h in rt.halves),
                tuple(enc(x) for x in rt.sts[self.nsts:]), rt.cols, rt.coltiles, rt.chunks,
                enc(rt.last))

    def load(self, saved: tuple, dec) -> None:
        gen, rt = self.gen, self.gen.pf[self.c]
        ready, gen.bias_left, halves, sts, rt.cols, rt.coltiles, rt.chunks, last = saved
        gen.ready[self.c], rt.last = dec(ready), dec(last)
        for h, (key, ld, hl) in zip(rt.halves, halves, strict=True):
            h.key, h.ld, h.last = key, dec(ld), dec(hl)
        rt.sts.extend(dec(x) for x in sts)


def _dynamic(b, c: int, refs: tuple[int | None, ...]) -> tuple:
    """What ``Builder.dep`` reads of the earlier instructions ``refs``: each one's queue and
    release bits, its order among the refs in its queue (``dep`` compares queue positions;
    the unit's own instructions come after all of them), and per queue pair whether it is
    older than the producer the last token matched."""
    last = b._cores[c].last
    at = {e: (b.queue_of(c, e), b.qidx(c, e)) for e in refs if e is not None}
    out = []
    for e in refs:
        if e is None:
            out.append(None)
            continue
        q, i = at[e]
        rank = sum(1 for x, j in set(at.values()) if x == q and j < i)
        # no token matched yet on (q, d) acts as an older one: ``dep`` goes on either way
        older = tuple((q, d) in last and i <= b.qidx(c, last[(q, d)][0])
                      for d in range(len(Queue)))
        out.append((refs.index(e), q, b.release_of(c, e), rank, older))
    return tuple(out)


@dataclass
class _Record:
    rows: np.ndarray            # INSTR, tokens as the unit left them
    qpos: np.ndarray            # each row's position in its queue from the record's start
    where: list[np.ndarray]     # per node id of the key: rows whose node is that id
    rel: tuple                  # per ref: release bits after the unit (None: no ref)
    used: tuple[int, ...]       # the refs it depended on
    last: dict                  # token matches it set: pair -> (at, at), see ``_enc``
    done: np.ndarray            # its MPE ops, relative to its first row
    saved: Any                  # the unit's state after it (``save``)


def _enc(x: int | None, base: int, refs: tuple) -> tuple | None:
    """An instruction as ("row", offset) in the unit or ("ref", i) of ``refs``."""
    if x is None:
        return None
    if x >= base:
        return ("row", x - base)
    if x in refs:
        return ("ref", refs.index(x))
    raise LookupError(x)


def _dec(x: tuple | None, base: int, refs: tuple) -> int | None:
    if x is None:
        return None
    return base + x[1] if x[0] == "row" else refs[x[1]]


_MISSING = object()


class LinearReplay:
    """Records of prefill linears and row tiles per key, for one ``generate`` call."""

    def __init__(self):
        self.records: dict[tuple, _Record | None] = {}   # None: not replayable
        self.replayed = {"linear": 0, "row": 0}   # units appended from records, by kind

    def linear(self, gen, node: Node, c: int, segs: list, k: int, sparse: bool,
               epi: list[str], from_all: bool) -> None:
        """``gen.prefill_linear`` of core ``c``, replayed when an earlier one had its key."""
        self._run(gen, c, _LinearUnit(gen, node, c, segs, k, sparse, epi, from_all))

    def row_tile(self, gen, node: Node, c: int, segs: list, k: int, sparse: bool,
                 epi: list[str]) -> None:
        """``gen.row_tile``, replayed when an earlier one had its key."""
        self._run(gen, c, _RowUnit(gen, node, c, segs, k, sparse, epi))

    def _run(self, gen, c: int, unit) -> None:
        if unit.key is None or gen.tiles[c] != len(gen.mpe_done[c]):
            unit.run()     # (``next_slot`` reads ``mpe_done`` by the tile count)
            return
        key = (unit.key, _dynamic(gen.b, c, unit.refs))
        rec = self.records.get(key, _MISSING)
        if rec is _MISSING:
            self.records[key] = self._record(gen, c, unit)
        elif rec is None:
            unit.run()
        else:
            self._apply(gen, c, unit, rec)

    def _record(self, gen, c: int, unit) -> _Record | None:
        b, refs = gen.b, unit.refs
        base, nodes, before = b.count(c), len(b.nodes), dict(b._cores[c].last)
        nd = len(gen.mpe_done[c])
        outer = b.watch(c)
        unit.run()
        ext = b.unwatch(c, outer)
        if not ext <= {e for e in refs if e is not None} or len(b.nodes) != nodes or \
                gen.deferred[c] or gen.tiles[c] != len(gen.mpe_done[c]):
            return None
        done = np.asarray(gen.mpe_done[c][nd:], np.int64) - base
        if (done < 0).any():
            return None
        rows = b.block(c, base)
        where = [rows["node"] == i for i in unit.ids]
        if not np.all(np.logical_or.reduce(where + [rows["node"] == -1])):
            return None
        try:
            last = {pair: (_enc(p, base, refs), _enc(q, base, refs))
                    for pair, (p, q) in b._cores[c].last.items() if before.get(pair) != (p, q)}
            saved = unit.save(lambda x: _enc(x, base, refs))
        except LookupError:
            return None
        rel = tuple(None if e is None else b.release_of(c, e) for e in refs)
        used = tuple(sorted({refs.index(e) for e in ext}))
        return _Record(rows, queue_positions(rows), where, rel, used, last, done, saved)

    def _apply(self, gen, c: int, unit, rec: _Record) -> None:
        b, refs = gen.b, unit.refs
        base = b.count(c)
        rows = b.append_block(c, rec.rows, rec.qpos)
        node = rows["node"]
        for sel, nid in zip(rec.where, unit.ids, strict=True):
            node[sel] = nid
        b.note(c, [refs[i] for i in rec.used])   # an enclosing record depends on them too
        for e, bits in zip(refs, rec.rel, strict=True):
            if e is not None:
                b.set_release(c, e, bits)
        last = b._cores[c].last
        for pair, (p, q) in rec.last.items():
            last[pair] = (_dec(p, base, refs), _dec(q, base, refs))
        gen.mpe_done[c].extend((rec.done + base).tolist())
        gen.tiles[c] += len(rec.done)
        unit.load(rec.saved, lambda x: _dec(x, base, refs))
        self.replayed[unit.key[0]] += 1

"""Sub-layer replication for prefill: a linear whose instructions would repeat an earlier
linear's on the same core is copied from it, not generated tile by tile.

Prefill layers differ where their attention masks differ (per-layer block-sparse attention),
so whole layers rarely repeat (``replicate.py``), but their linears do: the same shapes,
compression and tiling in every layer, ~90% of a prefill's instructions. What one core's part
of a prefill linear emits is a function of

- what it reads of the op and of the generator (``_static``): the op's signature, the core, its
  column segments, the fused epilogue, ReLU, bias, where the input comes from, the norm passes
  waiting to run on the input (``deferred``, ``prefill.py``) with their arguments;
- the earlier instructions it depends on (``_dynamic``): the input's producer (``ready``) and
  the two MPE ops that free the weight buffer's halves (``mpe_done[-2:]``), each with what
  ``Builder.dep`` reads of it (its queue, release bits, position from the end of its queue,
  and whether it is older than the last producer matched per queue pair).

The first linear with a key is generated and recorded: its rows, the release bits it set on
those earlier instructions, the token matches, MPE ops and ready it left. A later linear with
the same key is the record appended at its position, node ids renamed. A record is kept only
if the builder saw no other earlier instruction referenced (``Builder.watch``), no node was
registered, every node id in its rows is one the key renames, and nothing stays deferred;
else that linear is simply generated each time. ``tests/unit/test_flightllm_replay.py`` and
``tests/torch/test_flightllm_llama.py`` check replayed == generated programs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from mapping.flightllm.builder import queue_positions
from mapping.flightllm.isa import Queue
from mapping.flightllm.replicate import signature
from models.graph import Node

__all__ = ["LinearReplay"]


def _static(gen, node: Node, c: int, segs: list, k: int, sparse: bool, epi: list[str],
            from_all: bool) -> tuple[tuple, tuple[int, ...]] | None:
    """(key, node ids the rows may carry), or None if a deferred step is not a norm pass."""
    deferred, ids = [], [gen.b.node(node.name)]
    for fn in gen.deferred[c]:
        if not (isinstance(fn, partial) and fn.func == gen._sfu_pass and not fn.keywords):
            return None
        core, chunks, size, nid, kind, split = fn.args
        deferred.append((core, tuple(chunks), size, kind, split))
        ids.append(nid)
    key = (c, signature((node,)), tuple(segs), k, sparse, tuple(epi), gen.relu, gen.bias_left,
           from_all, gen.exch_layout if from_all else None, gen.t, tuple(deferred))
    return key, tuple(ids)


def _refs(gen, c: int) -> tuple[int | None, ...] | None:
    """The earlier instructions a prefill linear on core ``c`` may depend on, or None if the
    weight tile count and the MPE ops disagree (``next_slot`` would read elsewhere)."""
    done = gen.mpe_done[c]
    if gen.tiles[c] != len(done):
        return None
    return (gen.ready[c], done[-2] if len(done) >= 2 else None, done[-1] if done else None)


def _dynamic(b, c: int, refs: tuple[int | None, ...]) -> tuple:
    last = b._cores[c].last
    out = []
    for e in refs:
        if e is None:
            out.append(None)
            continue
        q, at = b.queue_of(c, e), b.qidx(c, e)
        # no token matched yet on (q, d) acts as an older one: ``dep`` goes on either way
        older = tuple((q, d) in last and at <= b.qidx(c, last[(q, d)][0])
                      for d in range(len(Queue)))
        out.append((refs.index(e), q, b.release_of(c, e), b.qlen(c, q) - at, older))
    return tuple(out)


@dataclass
class _Record:
    ids: tuple[int, ...]        # node ids in ``rows``, renamed to the replaying key's ids
    rows: np.ndarray            # INSTR, tokens as the linear left them
    qpos: np.ndarray            # each row's position in its queue from the record's start
    where: list[np.ndarray]     # per id: rows whose node is that id
    rel: tuple                  # per ref: release bits after the linear (None: no ref)
    last: dict                  # token matches it set: pair -> (at, at), see ``_enc``
    done: list[int]             # its MPE ops, relative to its first row
    ready: tuple                # ``ready`` after it
    bias_left: int


def _enc(x: int | None, base: int, refs: tuple) -> tuple | None:
    """An instruction as ("row", offset) in the linear or ("ref", i) of ``refs``."""
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


class LinearReplay:
    """Records of prefill linears per key, for one ``generate`` call."""

    def __init__(self):
        self.records: dict[tuple, _Record | None] = {}   # None: not replayable
        self.replayed = 0

    def linear(self, gen, node: Node, c: int, segs: list, k: int, sparse: bool,
               epi: list[str], from_all: bool) -> None:
        """``gen.prefill_linear`` of core ``c``, replayed when an earlier one had its key."""
        st, refs = _static(gen, node, c, segs, k, sparse, epi, from_all), _refs(gen, c)
        if st is None or refs is None:
            gen.prefill_linear(node, c, segs, k, sparse, epi, from_all)
            return
        key = (st[0], _dynamic(gen.b, c, refs))
        if key in self.records:
            rec = self.records[key]
            if rec is not None:
                self._apply(gen, c, rec, st[1], refs)
                return
            gen.prefill_linear(node, c, segs, k, sparse, epi, from_all)
            return
        self.records[key] = self._record(gen, node, c, segs, k, sparse, epi, from_all,
                                         st[1], refs)

    def _record(self, gen, node: Node, c: int, segs: list, k: int, sparse: bool,
                epi: list[str], from_all: bool, ids: tuple[int, ...],
                refs: tuple) -> _Record | None:
        b = gen.b
        base, nodes, before = b.count(c), len(b.nodes), dict(b._cores[c].last)
        nd = len(gen.mpe_done[c])
        b.watch(c)
        gen.prefill_linear(node, c, segs, k, sparse, epi, from_all)
        ext = b.unwatch(c)
        if not ext <= {e for e in refs if e is not None} or len(b.nodes) != nodes or \
                gen.deferred[c] or gen.tiles[c] != len(gen.mpe_done[c]):
            return None
        new = [x - base for x in gen.mpe_done[c][nd:]]
        if any(x < 0 for x in new):
            return None
        rows = b.block(c, base)
        where = [rows["node"] == i for i in ids]
        if not np.all(np.logical_or.reduce(where + [rows["node"] == -1])):
            return None
        try:
            last = {pair: (_enc(p, base, refs), _enc(q, base, refs))
                    for pair, (p, q) in b._cores[c].last.items() if before.get(pair) != (p, q)}
            ready = _enc(gen.ready[c], base, refs)
        except LookupError:
            return None
        rel = tuple(None if e is None else b.release_of(c, e) for e in refs)
        return _Record(ids, rows, queue_positions(rows), where, rel, last, new, ready,
                       gen.bias_left)

    def _apply(self, gen, c: int, rec: _Record, ids: tuple[int, ...], refs: tuple) -> None:
        b = gen.b
        base = b.count(c)
        rows = b.append_block(c, rec.rows, rec.qpos)
        node = rows["node"]
        for sel, nid in zip(rec.where, ids, strict=True):
            node[sel] = nid
        for e, bits in zip(refs, rec.rel, strict=True):
            if e is not None:
                b.set_release(c, e, bits)
        last = b._cores[c].last
        for pair, (p, q) in rec.last.items():
            last[pair] = (_dec(p, base, refs), _dec(q, base, refs))
        gen.mpe_done[c].extend(base + x for x in rec.done)
        gen.tiles[c] += len(rec.done)
        gen.ready[c] = _dec(rec.ready, base, refs)
        gen.bias_left = rec.bias_left
        gen.pf_node, gen.pf[c], gen.out_heads = ids[0], None, None
        gen.deferred[c] = []   # the norm passes it waited for are in the rows
        self.replayed += 1


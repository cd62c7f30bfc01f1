"""Layer replication for code generation: identical layers get identical instructions.

A decoder's layers are the same ops on the same shapes, so once the generator reached a
periodic state, layer L's instructions are layer L-1's shifted by the layer's instruction
count (node ids renamed, the same release bits set on the previous layer's tail). ``Period``
is measured on two generated layers and *checked*: rows, token bookkeeping and generator state
of layer 2 must be layer 1's shifted exactly; otherwise (per-layer masks in prefill, per-layer
sparsity or bits) nothing is replicated. A layer is replicated only if its ops have the same
signature as the measured one; the first that differs and everything after it are generated
normally. ``tests/unit/test_flightllm_codegen.py`` checks replicated == generated programs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mapping.flightllm.builder import _IX, _R
from models.graph import Graph, Node

__all__ = ["Period", "Snapshot", "layer_ranges", "signature", "snapshot"]

_NODE = _IX["node"]


def layer_ranges(g: Graph) -> list[tuple[int, int, int]]:
    """``(layer, start, end)`` node ranges of the layers, or [] if a layer is not contiguous."""
    out: list[tuple[int, int, int]] = []
    for i, n in enumerate(g.nodes):
        if n.layer < 0:
            continue
        if out and out[-1][0] == n.layer and out[-1][2] == i:
            out[-1] = (n.layer, out[-1][1], i + 1)
        elif any(r[0] == n.layer for r in out):
            return []
        else:
            out.append((n.layer, i, i + 1))
    return out


def signature(nodes: tuple[Node, ...]) -> tuple:
    """What code generation reads of a layer's ops, without names and layer indices."""
    return tuple((n.kind, n.in_shapes, n.out_shape, n.flops, n.weight_bytes, n.act_bytes,
                  n.kv_read_bytes, n.kv_write_bytes,
                  tuple((k, v) for k, v in n.attr.items() if k != "layer"), len(n.inputs))
                 for n in nodes)


@dataclass
class Snapshot:
    nrows: list[int]
    rel: list[list[int]]
    last: list[dict]
    ready: list
    ndone: list[int]
    tiles: list[int]
    split: bool
    full_src: str | None
    nnodes: int
    fused: frozenset


def snapshot(gen) -> Snapshot:
    b, cores = gen.b, range(len(gen.b._cores))
    return Snapshot([b.count(c) for c in cores], [b.releases(c) for c in cores],
                    [dict(b._cores[c].last) for c in cores], list(gen.ready),
                    [len(m) for m in gen.mpe_done], list(gen.tiles), gen.split, gen.full_src,
                    len(gen.b.nodes), frozenset(gen.fused))


def _rename(name: str | None, a: int, b: int) -> str | None:
    """Layer ``a``'s op ``name`` as layer ``b``'s (``layers.3.x`` or ``layers.3/x``)."""
    return None if name is None else re.sub(rf"layers\.{a}(?=[./])", f"layers.{b}", name)


@dataclass
class Period:
    """One measured layer's instructions and what replaying them changes (relative indices)."""

    layer: int
    d: list[int]                             # rows per core per layer
    rows: list[list[list[int]]]              # the layer's rows (release bits as it left them)
    mods: list[list[tuple[int, int, int]]]   # earlier rows' release: (offset, before, after)
    last: list[dict]                         # changed token entries, relative to layer start
    done: list[list[int]]                    # MPE tiles, relative to layer start
    first_id: int                            # node id of the layer's first registered name
    names: list[str]                         # node names the layer registered, in order
    fused: frozenset

    @classmethod
    def measure(cls, gen, s1: Snapshot, s2: Snapshot, s3: Snapshot, l1: int, l2: int):
        """The period if layer ``l2`` (``s2`` -> ``s3``) repeats ``l1`` (``s1`` -> ``s2``)."""
        if s1.split != s2.split or s2.split != s3.split or gen.unfused_ops or \
                _rename(s2.full_src, l1, l2) != s3.full_src:
            return None
        names1, names2 = gen.b.nodes[s1.nnodes:s2.nnodes], gen.b.nodes[s2.nnodes:s3.nnodes]
        if [_rename(n, l1, l2) for n in names1] != names2:
            return None
        if {_rename(n, l1, l2) for n in s2.fused - s1.fused} != set(s3.fused - s2.fused):
            return None
        dn = s2.nnodes - s1.nnodes
        d, rows, mods, last, done = [], [], [], [], []
        for c in range(len(gen.b._cores)):
            a1, a2, a3 = s1.nrows[c], s2.nrows[c], s3.nrows[c]
            dc = a3 - a2
            if dc != a2 - a1:
                return None
            r1 = gen.b.row_lists(c, a1, a2)
            for j, r in enumerate(r1):
                r[_R] = s2.rel[c][a1 + j]
                if r[_NODE] >= 0:
                    r[_NODE] += dn
            r2 = gen.b.row_lists(c, a2, a3)
            for j, r in enumerate(r2):
                r[_R] = s3.rel[c][a2 + j]
            if r1 != r2:
                return None
            m1 = [(i - a1, s1.rel[c][i], s2.rel[c][i]) for i in range(a1)
                  if s1.rel[c][i] != s2.rel[c][i]]
            m2 = [(i - a2, s2.rel[c][i], s3.rel[c][i]) for i in range(a2)
                  if s2.rel[c][i] != s3.rel[c][i]]
            ch1 = {k: (v[0] - a1, v[1] - a1) for k, v in s2.last[c].items()
                   if s1.last[c].get(k) != v}
            ch2 = {k: (v[0] - a2, v[1] - a2) for k, v in s3.last[c].items()
                   if s2.last[c].get(k) != v}
            x, y = s2.ready[c], s3.ready[c]
            ready_ok = (x is None and y is None) or (x is not None and y is not None
                                                     and y - x == dc)
            d1 = [v - a1 for v in gen.mpe_done[c][s1.ndone[c]:s2.ndone[c]]]
            d2 = [v - a2 for v in gen.mpe_done[c][s2.ndone[c]:s3.ndone[c]]]
            if m1 != m2 or ch1 != ch2 or not ready_ok or d1 != d2 or \
                    s3.tiles[c] - s2.tiles[c] != len(d2) or s2.tiles[c] - s1.tiles[c] != len(d1):
                return None
            d.append(dc)
            rows.append(r2)
            mods.append(m2)
            last.append(ch2)
            done.append(d2)
        return cls(l2, d, rows, mods, last, done, s2.nnodes, names2,
                   frozenset(s3.fused - s2.fused))

    def apply(self, gen, layer: int) -> None:
        """Append layer ``layer`` (same signature as the measured one) after layer-1."""
        a, b = self.layer, layer
        dn = len(gen.b.nodes) - self.first_id
        for name in self.names:
            gen.b.node(_rename(name, a, b))
        for c, core in enumerate(gen.b._cores):
            base = gen.b.count(c)
            for off, before, after in self.mods[c]:
                bits = gen.b.release_of(c, base + off)
                gen.b.set_release(c, base + off,
                                  (bits & ~(before ^ after)) | (after & (before ^ after)))
            rows = [r.copy() for r in self.rows[c]]
            for r in rows:
                if r[_NODE] >= 0:
                    r[_NODE] += dn
            gen.b.append_rows(c, rows)
            for k, (p, cc) in self.last[c].items():
                core.last[k] = (p + base, cc + base)
            if gen.ready[c] is not None:
                gen.ready[c] += self.d[c]
            gen.mpe_done[c].extend(base + x for x in self.done[c])
            gen.tiles[c] += len(self.done[c])
        gen.full_src = _rename(gen.full_src, b - 1, b)
        gen.fused |= {_rename(n, a, b) for n in self.fused}

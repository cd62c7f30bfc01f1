"""KV rollback after a verify, as FlightLLM code: a pointer reset (chains) or a compaction
program (trees).

The verify pass stores the K/V rows of all its tokens at cache rows ``context`` (the root, the
last emitted token) and ``context + 1 + i`` (tree node i, in BFS order). The accepted path
``path`` (node indices, root to leaf) must end up where a plain decode of the same tokens
would have written them: node ``path[k]`` at row ``context + 1 + k``. A chain's accepted
drafts are already there (``path[k] == k``): rollback only resets the valid length, a host
register (no instruction). A tree moves every path row that is not in place: per layer, per
K and V, per moved row one LD of the row (kv_heads x head_dim INT8, each core its heads'
share) from the HBM channel that holds the source row into the global buffer, and one ST of
it to the destination row's channel (the cache keeps token t's rows on weight channel
t mod ``weight_channels``, ``decode.a_tile``).

Moves run in path order. This is safe in place: BFS order puts node ``path[k]`` (depth k + 1)
at index >= k, so a destination ``context + 1 + k`` is never the source of a later move
(``context + 1 + path[j]`` >= ``context + 1 + j`` > ``context + 1 + k`` for j > k), and each
ST waits for its own LD, which the in-order LD queue issues after every earlier move's LD.
``tests/unit/test_flightllm_rollback.py`` replays the moves on a model cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mapping.flightllm.builder import Arch, Builder
from mapping.flightllm.isa import LD_TARGETS, Program, Queue
from models.graph import Graph, OpKind

__all__ = ["Move", "Rollback", "compaction_moves", "generate_rollback", "kv_rows"]


@dataclass(frozen=True)
class Move:
    """Copy cache row ``src`` to row ``dst`` of K/V tensor ``tensor`` (index into kv_rows)."""

    tensor: int
    src: int
    dst: int


@dataclass(frozen=True)
class Rollback:
    """The compaction program and its moves, in the order of each core's LD/ST pairs."""

    program: Program
    moves: tuple[Move, ...]


def kv_rows(g: Graph) -> list[tuple[int, int, int]]:
    """(layer, K/V heads, bytes of one token's row) of every K and V cache tensor ``g`` writes
    (its ``KV_APPEND`` nodes, in layer order)."""
    out = []
    for n in g.nodes:
        if n.kind is OpKind.KV_APPEND and n.kv_write_bytes:
            heads = n.in_shapes[0][1] if n.in_shapes and len(n.in_shapes[0]) == 4 else 1
            out.append((n.layer, heads, n.kv_write_bytes // (g.tokens * g.batch)))
    return out


def compaction_moves(context: int, path: Sequence[int]) -> list[tuple[int, int]]:
    """(src row, dst row) of each accepted tree node not yet in place, in path order."""
    return [(context + 1 + node, context + 1 + k) for k, node in enumerate(path) if node != k]


def _share(total: int, core: int, cores: int) -> int:
    per = -(-total // cores)
    return max(min((core + 1) * per, total) - min(core * per, total), 0)


def generate_rollback(g: Graph, arch: Arch, context: int, path: Sequence[int]) -> Rollback:
    """The compaction program of ``path`` after a verify at ``context`` of graph ``g`` (the
    pass whose K/V rows are compacted: the target's verify or the draft's tree passes)."""
    rows = kv_rows(g)
    pairs = compaction_moves(context, path)
    moves = tuple(Move(t, s, d) for t in range(len(rows)) for s, d in pairs)
    b = Builder(arch.cores)
    wc = arch.weight_channels
    for c in range(arch.cores):
        def ch(row: int, c: int = c) -> int:
            return c * arch.channels_per_core + (row % wc) % arch.channels_per_core
        for m in moves:
            _, heads, row_bytes = rows[m.tensor]
            nbytes = row_bytes * _share(heads, c, arch.cores) // heads   # this core's heads
            if not nbytes:
                continue
            ld = b.emit(c, Queue.LD, channel=ch(m.src), nbytes=nbytes, op=LD_TARGETS["global"])
            b.emit(c, Queue.ST, after=(ld,), channel=ch(m.dst), nbytes=nbytes)
    meta = {"phase": "rollback", "context": context, "path": tuple(path), "model": g.model,
            "cores": arch.cores}
    return Rollback(b.program(meta), moves)

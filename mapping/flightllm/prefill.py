"""Prefill (MM) code generation within the on-chip buffers: row tiles, A residency, output chunks.

A prefill linear runs one ``mm_tile_rows`` row tile (128 tokens) at a time, as the MM does:
the tile's token rows sit in the A buffer (artifact: MM reads its token rows from A), at most
half of it per K chunk, so the next chunk or row tile loads into the other half (double
buffering). When a row tile's K does not fit half of A (down_proj: 128 x 11,008 B > 512 KB),
its K chunks are re-loaded per column tile, in alternating order so the chunk still resident
is used first (one re-load per column tile instead of all). Weight tiles stream into B per row
tile. Each output tile (and its fused epilogue) lands in the global buffer; the outputs are
stored in chunks of half the global buffer, and a chunk's MMs wait until the chunk two back is
stored.

Attention runs per head in groups of query block-rows (64 tokens each, two per 128-row MM
tile) whose kept scores fit half the global buffer (a block-row that needs more takes the
whole buffer, single-buffered; one that does not fit at all is an error naming the layer).
The group's Q rows load into A, its K and V in chunks of half the B buffer from the one channel
B is fed by (the score MM reads K as its B operand, the PV MM reads V), one MM per chunk; a
softmax per group; the group's output is stored. Scores of group g wait until group g-2's PV
has consumed its half.

A linear whose input was produced split over the cores (o_proj, down_proj) passes a SYS
barrier and loads each core's part of its rows from that core's channel (cross-channel for
the others); a linear reading a full vector (q/k/v, gate/up after a norm) loads from its own
channels. The norms (every core normalises every row) and the embedding run in row chunks
that fit half the global buffer, where the SFU works: LD the chunk (from every core's output
chunks after a SYS barrier when the input is split), the SFU op, ST it to the core's channels,
where the next linear's striped loads read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from mapping.flightllm.compression import ATTN_BLOCK
from mapping.flightllm.isa import LD_TARGETS, Queue
from models.errors import UserError
from models.graph import Node

__all__ = ["PrefillMixin", "attention_counts", "attention_groups"]


@dataclass
class _Half:
    key: tuple | None = None   # (k0, kk) of the activation chunk it holds
    ld: int | None = None      # the LD that filled it
    last: int | None = None    # the last MM that read it


@dataclass
class _RowTile:
    """One core's state while it runs a prefill linear (the current row tile's)."""

    inp: int | None            # what the input's load waits for (-1: not known yet)
    from_all: bool             # the input's columns are spread over the cores
    k: int                     # the input's width
    rows: int = 0              # of the current row tile
    halves: list[_Half] = field(default_factory=lambda: [_Half(), _Half()])  # LRU first
    sts: list[int] = field(default_factory=list)   # output chunk stores, in order
    cols: int = 0              # columns in the open output chunk
    coltiles: int = 0          # column tiles of the current row tile
    chunks: int = 0            # output chunks stored in the current row tile
    last: int | None = None    # last MM/MISC of the open chunk


def _pieces(lo: int, hi: int, cw: int, a: int, b: int) -> list[tuple[int, int]]:
    """(chunk, columns) of the columns [a, b) of a core's [lo, hi), stored in chunks of
    ``cw`` columns (chunk j on the core's channel j)."""
    if b <= a:
        return []
    return [(j, min(b, lo + (j + 1) * cw) - max(a, lo + j * cw))
            for j in range((a - lo) // cw, -(-(b - lo) // cw))]


def attention_groups(rows: list[int], t: int, d: int, global_half: int, b_half: int,
                     where: str = "") -> list[tuple[list[int], list[tuple[int, int]], bool]]:
    """``(block-rows, [(key blocks, kept blocks) per chunk], single-buffered)`` of one head.

    ``rows[q]``: bitmask of the key blocks query block-row ``q`` keeps. A group holds one or
    two block-rows (one MM row tile) whose kept scores (64 x 64 INT8 per block) fit
    ``global_half``; ``chunks`` splits the group's union of key blocks into what fits
    ``b_half`` (64 keys x ``d`` INT8 per block): each chunk's key blocks are loaded once,
    and the block-wise score MM computes each kept (query block-row, key block) pair.
    """
    per_chunk = max(1, b_half // (ATTN_BLOCK * d))
    blk = ATTN_BLOCK * ATTN_BLOCK
    out = []
    q = 0
    while q < len(rows):
        grp = [q]
        if q + 1 < len(rows) and (rows[q].bit_count() + rows[q + 1].bit_count()) * blk \
                <= global_half:
            grp.append(q + 1)
        need = sum(rows[i].bit_count() for i in grp) * blk
        if need > 2 * global_half:
            most = 2 * global_half // (ATTN_BLOCK * ATTN_BLOCK) * ATTN_BLOCK
            raise UserError(f"{where}prefill of {t} tokens: query block-row {q} keeps "
                            f"{rows[q].bit_count() * ATTN_BLOCK} keys; its 64 x keys INT8 "
                            f"scores ({need} bytes) exceed the global buffer "
                            f"({2 * global_half} bytes, at most {most} keys per row); use a "
                            f"shorter prefill or a preset with a larger global_buffer_bytes")
        union = 0
        for i in grp:
            union |= rows[i]
        keys = [b for b in range(union.bit_length()) if union >> b & 1]
        chunks = []
        for j in range(0, len(keys), per_chunk):
            m = sum(1 << b for b in keys[j:j + per_chunk])
            chunks.append((len(keys[j:j + per_chunk]),
                           sum((rows[i] & m).bit_count() for i in grp)))
        out.append((grp, chunks, need > global_half))
        q += len(grp)
    return out


def attention_counts(groups: list[tuple[list[int], list[tuple[int, int]], bool]]
                     ) -> dict[str, int]:
    """Instructions per queue that ``_attn_group`` + the group's ST emit for ``groups``."""
    chunks = sum(len(ch) for _, ch, _ in groups)
    return {"LD": len(groups) + 2 * chunks, "MM": 2 * chunks, "MISC": len(groups),
            "ST": len(groups)}


class PrefillMixin:
    """Prefill methods of the code generator (``codegen._Gen``)."""

    # -- barrier and operand loads ------------------------------------------------------
    def barrier(self) -> None:
        """Split outputs are already stored: a SYS over all cores before reading them."""
        for c in range(self.a.cores):
            self.flush(c)
            self.ready[c] = self.b.emit(c, Queue.SYS, after=(self.ready[c],))
        self.split = False

    def act_load(self, c: int, rt: _RowTile, k0: int, kk: int, after: tuple) -> int:
        """LDs of rows x [k0, k0 + kk) of the input into A.

        A split input is read where its producer stored it: output chunk j of core o sits on
        ``ch(o, j)`` (chunks rotate over the channels), one LD per chunk piece, cross-channel
        for the other cores. A full input (every core computed it) is striped over the core's
        weight channels.
        """
        last = None
        if rt.from_all:
            for o in range(self.a.cores):
                lo, hi, cw, base = self.out_layout(o, rt)
                for j, part in _pieces(lo, hi, cw, max(lo, k0), min(hi, k0 + kk)):
                    last = self.b.emit(c, Queue.LD, after=after, channel=self.ch(o, base + j),
                                       cross=int(o != c), nbytes=rt.rows * part,
                                       op=self.act_buf, node=self.pf_node)
            return last
        per = -(-rt.rows * kk // self.a.weight_channels)
        for j in range(self.a.weight_channels):
            last = self.b.emit(c, Queue.LD, after=after, channel=self.ch(c, j), nbytes=per,
                               op=self.act_buf, node=self.pf_node)
        return last

    def out_layout(self, o: int, rt: _RowTile) -> tuple[int, int, int, int]:
        """Core ``o``'s columns of the split input: (lo, hi, chunk width, first channel)."""
        if self.exch_layout is not None:            # attention output: one chunk per head
            heads, d = self.exch_layout
            h0, h1 = self.share(heads, o, 1)
            return h0 * d, h1 * d, d, h0
        lo, hi = self.share(rt.k, o)                # a linear's output chunks
        return lo, hi, self.chunk_cols(rt.rows), 0

    def chunk_cols(self, rows: int) -> int:
        """Output columns of ``rows`` tokens that fill half the global buffer (16-aligned)."""
        return self.a.global_buffer_bytes // 2 // rows // 16 * 16

    def k_order(self, c: int, chunks: list[int]) -> list[int]:
        """K chunk starts of the next column tile: every other tile runs them backwards, so
        it starts on the chunk the previous tile left resident (one re-load per tile)."""
        rt = self.pf[c]
        rt.coltiles += 1
        return chunks[::-1] if rt.coltiles % 2 == 0 else chunks

    def pre_mm(self, c: int, k0: int, kk: int) -> tuple:
        """The activation chunk (loaded if not resident) and the output chunk's slot."""
        rt = self.pf[c]
        key = (k0, kk)
        hit = next((h for h in rt.halves if h.key == key), None)
        if hit is None:
            hit = rt.halves[0]
            hit.ld = self.act_load(c, rt, k0, kk, (rt.inp, hit.last))
            hit.key = key
        rt.halves.remove(hit)
        rt.halves.append(hit)
        slot = rt.sts[-2] if rt.cols == 0 and len(rt.sts) >= 2 else None
        return (hit.ld, slot)

    def post_mm(self, c: int, mm: int) -> None:
        self.pf[c].halves[-1].last = mm

    def out_tile(self, c: int, cols: int, last: int) -> None:
        """A finished output tile of ``cols`` columns; store the chunk when it is full."""
        rt = self.pf[c]
        rt.cols += cols
        rt.last = last
        if rt.cols >= self.chunk_cols(rt.rows):
            self.store_chunk(c)

    def store_chunk(self, c: int) -> None:
        """Store the open output chunk; chunk j of a row tile goes to ``ch(c, j)``."""
        rt = self.pf[c]
        if rt.cols:
            rt.sts.append(self.b.emit(c, Queue.ST, after=(rt.last,),
                                      channel=self.ch(c, rt.chunks), nbytes=rt.rows * rt.cols,
                                      node=self.pf_node))
            rt.cols = 0
            rt.chunks += 1

    # -- SFU-only ops (norms) and the embedding: row chunks through the global buffer ----
    def sfu_chunks(self, size: int, where: str) -> list[tuple[int, int]]:
        """(row tile rows, chunk rows) of a prefill op over ``size``-byte rows: each 128-row
        tile in as many equal chunks as a full tile needs to fit half the global buffer."""
        most = self.a.global_buffer_bytes // 2 // size
        if most < 1:
            raise UserError(f"{where}: a row of {size} bytes does not fit half the global "
                            f"buffer ({self.a.global_buffer_bytes // 2} bytes)")
        per_tile = -(-self.a.mm_tile_rows // most)
        out = []
        for r0 in range(0, self.t, self.a.mm_tile_rows):
            rows = min(self.a.mm_tile_rows, self.t - r0)
            q = -(-rows // per_tile)
            out += [(rows, min(q, rows - s)) for s in range(0, rows, q)]
        return out

    def prefill_norm(self, node: Node, kind: str) -> None:
        """Each core normalises every row, chunk by chunk: LD the chunk (from the producer's
        output chunks in every core's channels after a SYS barrier when the input is split,
        else from the core's own channels), the SFU op, ST to the core's channel (chunk i on
        weight channel i mod 8, so the next linear's striped loads find the rows). A chunk's
        LDs wait until the chunk two back is stored (the global buffer's halves). Issued after
        the next linear's first weight tile, like a decode gather (``flush``)."""
        size = node.out_shape[-1]
        nid = self.b.node(node.name)
        chunks = self.sfu_chunks(size, f"layer {node.layer} ({node.name})")
        for c in range(self.a.cores):
            self.flush(c)
            if self.split:
                self.ready[c] = self.b.emit(c, Queue.SYS, after=(self.ready[c],))
            # a partial, not a lambda: replay.py reads its arguments
            self.deferred[c].append(partial(self._sfu_pass, c, chunks, size, nid, kind,
                                            self.split))
        self.split = False

    def prefill_embedding(self, node: Node) -> None:
        """The prompt's table rows, chunk by chunk through the global buffer into the core's
        channels (every core holds the whole activation)."""
        size = node.out_shape[-1]
        chunks = self.sfu_chunks(size, node.name)
        for c in range(self.a.cores):
            self.flush(c)
            self._sfu_pass(c, chunks, size, self.b.node(node.name), None, False)

    def _sfu_pass(self, c: int, chunks: list[tuple[int, int]], size: int, nid: int,
                  kind: str | None, split: bool) -> None:
        sts: list[int] = []
        for i, (rows, q) in enumerate(chunks):
            after = (self.ready[c] if i == 0 else None, sts[-2] if len(sts) >= 2 else None)
            last = self._chunk_load(c, rows, q, size, after, nid, i, split)
            if kind is not None:
                last = self.misc(c, kind, q, size, (last,), nid)
            sts.append(self.b.emit(c, Queue.ST, after=(last,), nbytes=q * size, node=nid,
                                   channel=self.ch(c, i % self.a.weight_channels)))
        self.ready[c] = sts[-1]

    def _chunk_load(self, c: int, rows: int, q: int, size: int, after: tuple, nid: int,
                    i: int, split: bool) -> int:
        """``q`` rows x ``size`` into the global buffer; a split input from each core's
        output chunks of its row tile (``rows``), which sit on ``ch(o, j)``."""
        glob = LD_TARGETS["global"]
        if not split:
            return self.b.emit(c, Queue.LD, after=after, channel=self.ch(c, i %
                               self.a.weight_channels), nbytes=q * size, op=glob, node=nid)
        cw, last = self.chunk_cols(rows), None
        for o in range(self.a.cores):
            lo, hi = self.share(size, o)
            for j, part in _pieces(lo, hi, cw, lo, hi):
                last = self.b.emit(c, Queue.LD, after=after if last is None else (),
                                   channel=self.ch(o, j), cross=int(o != c), nbytes=q * part,
                                   op=glob, node=nid)
        return last

    # -- linears -------------------------------------------------------------------------
    def prefill_linear_any(self, node: Node, c: int, segs: list[tuple[int, int]], k: int,
                           sparse: bool, epi: list[str], from_all: bool) -> None:
        """``prefill_linear``, or an earlier identical one's instructions (replay.py)."""
        if self.replay is None:
            self.prefill_linear(node, c, segs, k, sparse, epi, from_all)
        else:
            self.replay.linear(self, node, c, segs, k, sparse, epi, from_all)

    def prefill_linear(self, node: Node, c: int, segs: list[tuple[int, int]], k: int,
                       sparse: bool, epi: list[str], from_all: bool) -> None:
        """Core ``c``'s columns of a prefill linear, one row tile at a time."""
        self.pf_node = self.b.node(node.name)
        rt = self.pf[c] = _RowTile(-1, from_all, k)  # ``inp`` set by linear_core
        for r0 in range(0, self.t, self.a.mm_tile_rows):
            rt.rows = min(self.a.mm_tile_rows, self.t - r0)
            if self.chunk_cols(rt.rows) < self.a.mm_tile_cols:
                raise UserError(f"layer {node.module}: an output tile of {rt.rows} rows x "
                                f"{self.a.mm_tile_cols} columns does not fit half the global "
                                f"buffer ({self.a.global_buffer_bytes // 2} bytes)")
            for h in rt.halves:  # other rows now: nothing resident (slots still in use)
                h.key = None
            rt.coltiles = rt.chunks = 0
            if self.replay is not None and r0:
                self.replay.row_tile(self, node, c, segs, k, sparse, epi)
            else:
                self.row_tile(node, c, segs, k, sparse, epi)
        self.pf[c] = None
        if rt.sts:
            self.ready[c] = rt.sts[-1]
        self.out_heads = None

    def row_tile(self, node: Node, c: int, segs: list[tuple[int, int]], k: int,
                 sparse: bool, epi: list[str]) -> None:
        """The core's columns of the current row tile (``pf[c]``), then its last chunk."""
        used = 0
        for i, (n, cols) in enumerate(segs):
            self.linear_core(c, node, n, cols, k, self.pf[c].rows, sparse, epi, used,
                             i == len(segs) - 1)
            used += cols
        self.store_chunk(c)

    # -- attention -----------------------------------------------------------------------
    def block_rows(self, qk: Node, heads: int) -> list[list[int]]:
        """Per head, the kept key blocks of each query block-row (bitmasks; causal default)."""
        nb = -(-self.t // ATTN_BLOCK)
        rows = qk.attr.get("attn_rows")
        if rows is None:
            return [[(1 << (q + 1)) - 1 for q in range(nb)] for _ in range(heads)]
        return [list(r) for r in rows]

    def prefill_attention(self, qk: Node) -> None:
        """Attention of every sequence of the pass, one after another (each its own causal
        mask over its own ``seq_tokens``)."""
        rows, self.t = self.t, self.seq_tokens
        try:
            for _ in range(rows // self.seq_tokens):
                self._sequence_attention(qk)
        finally:
            self.t = rows

    def _sequence_attention(self, qk: Node) -> None:
        heads, d = qk.in_shapes[0][1], qk.in_shapes[0][3]
        nid = self.b.node(qk.name)
        rows = self.block_rows(qk, heads)
        g_half, b_half = self.a.global_buffer_bytes // 2, self.a.b_buffer_bytes // 2
        for c in range(self.a.cores):
            self.flush(c)
            h0, h1 = self.share(heads, c, 1)
            inp, sts = self.ready[c], []
            pvs: list[int] = []           # last PV of each group (score slots)
            for h in range(h0, h1):
                for grp, chunks, single in attention_groups(rows[h], self.t, d, g_half, b_half,
                                                            f"layer {qk.layer} ({qk.name}): "):
                    slot = pvs[-1] if single and pvs else (pvs[-2] if len(pvs) >= 2 else None)
                    last = self._attn_group(c, h, grp, chunks, d, nid, inp, slot)
                    pvs.append(last)
                    sts.append(self.b.emit(c, Queue.ST, after=(last,), channel=self.ch(c, h),
                                           nbytes=self._grp_rows(grp) * d, node=nid))
            self.ready[c] = sts[-1] if sts else inp
        self.split = True
        self.out_heads = (heads, d)

    def _grp_rows(self, grp: list[int]) -> int:
        return sum(min(ATTN_BLOCK, self.t - q * ATTN_BLOCK) for q in grp)

    def _attn_group(self, c: int, h: int, grp: list[int], chunks: list[tuple[int, int]],
                    d: int, nid: int, inp: int | None, slot: int | None) -> int:
        """Q load (after ``inp``), per key chunk K load + score MM (after ``slot``, the PV that
        frees its half of the global buffer), softmax, per chunk V load + PV MM."""
        r = self._grp_rows(grp)
        q = self.b.emit(c, Queue.LD, after=(inp,), channel=self.ch(c, h), nbytes=r * d,
                        op=self.act_buf, node=nid)
        s = None
        for keys, blocks in chunks:
            s = self._chunk_mm(c, keys * ATTN_BLOCK * d, (q, slot), nid,
                               ATTN_BLOCK, blocks * ATTN_BLOCK, d)
        kept = sum(b for _, b in chunks) * ATTN_BLOCK * ATTN_BLOCK
        sm = self.misc(c, "softmax", r, max(16, kept // r), (s,), nid)
        last = sm
        for keys, blocks in chunks:
            last = self._chunk_mm(c, keys * ATTN_BLOCK * d, (sm,), nid,
                                  ATTN_BLOCK, d * blocks, ATTN_BLOCK)
        return last

    def _chunk_mm(self, c: int, nbytes: int, after: tuple, nid: int, rows: int, cols: int,
                  k: int) -> int:
        """One K or V chunk into half the B buffer (after the MM two B tiles back, weight
        tiles included; from the one channel B is fed by, as prefill weights) and the MM
        (``rows`` x ``cols`` x ``k``) that reads it."""
        ld = self.b.emit(c, Queue.LD, after=(self.next_slot(c),),
                         channel=self.ch(c, self.a.weight_channels), nbytes=nbytes,
                         op=self.mat_buf, node=nid)
        mm = self.mpe(c, rows, cols, k, (ld,) + after, nid)
        self.mpe_done[c].append(mm)
        return mm

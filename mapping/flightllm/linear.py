"""Linear-layer code generation: weight tiles, K chunks, N:M column segments, fused epilogues.

A linear is split by output columns over the cores (``share``); each core's columns run as
segments of one N (the block-row mix, ``segments``) in tiles of ``mv_tile_cols`` (decode, MV)
or ``mm_tile_cols`` x ``mm_tile_rows`` (prefill, MM), by K chunks that fit half of each buffer
the tile uses (``k_chunk``). A weight tile's LDs (weights, meta, FSB, bias) wait for the MPE
op two tiles back (double buffering, ``next_slot``). Fusable consumers (SiLU, element-wise,
RoPE) run per output tile on the SFU (``epilogue``), or after the whole op without fusion
(``unfused``). Prefill's row tiles and operand loads are in prefill.py.
"""

from __future__ import annotations

import numpy as np

from mapping.flightllm.compression import BIAS_BYTES, META_BITS_PER_KEPT
from mapping.flightllm.isa import FLAG_BIAS, FLAG_RELU, FLAG_SPARSE, LD_TARGETS, Queue
from models.errors import UserError
from models.graph import Node, OpKind

__all__ = ["LinearMixin"]

_FUSABLE = (OpKind.ACTIVATION, OpKind.ELEMENTWISE, OpKind.ROPE)
_CASTS = ("aten.to.", "aten._to_copy", "aten.type_as", "aten.clone", "aten.contiguous")


def _epilogue_ops(m: Node) -> tuple[str, ...]:
    """The MISC ops of a fused consumer, by its traced op. ReLU is the MPE's relu flag
    ("relu"); the SFU's one activation is SiLU (artifact MISC op codes), so another activation
    (GELU) takes one pass like it. Casts are free (the requantisation after the MPE)."""
    op = m.op.lower()
    if m.kind is OpKind.ROPE:
        return ("eltwise_mul", "eltwise_mul", "eltwise_add")  # artifact RoPE
    if m.kind is OpKind.ACTIVATION:
        return ("relu",) if op in ("aten.relu.default", "relu") else ("silu",)
    if op.startswith(_CASTS):
        return ()
    return ("eltwise_mul",) if ("mul" in op or "div" in op) else ("eltwise_add",)


class LinearMixin:
    """Linear-layer methods of the code generator (``codegen._Gen``)."""

    def packed(self, sparse: bool, n: int) -> bool:
        """Decode indices travel with the weights (``Arch.index_in_weights``)."""
        return self.decode and self.a.index_in_weights and sparse and n < 16

    def k_chunk(self, node: Node, cols: int, n: int, k: int) -> int:
        """Largest K chunk (multiple of 16) whose tile fits half of each buffer it uses.

        Weights go to the A (decode) or B (prefill) buffer, the 4-bit sparse indices to the
        meta buffer and the FSB bytes to the FSB buffer (artifact: separate buffers, each
        double buffered); a sparse tile is bounded by the smallest of the three. With
        ``index_in_weights`` (decode) the indices sit next to their weights in the A buffer.
        """
        bits = node.attr.get("weight_bits", 8)
        sparse = node.attr.get("fsb_bytes", 0) > 0
        packed = self.packed(sparse, n)
        per = bits + (META_BITS_PER_KEPT if packed else 0)
        buf = (self.a.a_buffer_bytes if self.decode else self.a.b_buffer_bytes) // 2
        kc = int(buf // (cols * per * n / 16 / 8)) // 16 * 16
        limit = f"half the weight buffer ({buf} bytes)"
        if sparse:
            if n < 16 and not packed:
                meta = self.a.meta_buffer_bytes // 2
                km = int(meta // (cols * n / 16 * META_BITS_PER_KEPT / 8)) // 16 * 16
                if km < kc:
                    kc, limit = km, f"half the meta buffer ({meta} bytes)"
            fsb = self.a.fsb_buffer_bytes // 2
            kf = int(fsb // (-(-cols // 16) / 16)) // 16 * 16
            if kf < kc:
                kc, limit = kf, f"half the FSB buffer ({fsb} bytes)"
        if not self.decode:
            kc = min(kc, (self.a.a_buffer_bytes // 2) // self.a.mm_tile_rows // 16 * 16)
        if kc < 16:
            raise UserError(f"layer {node.module}: a tile of {cols} columns x 16 does not fit "
                            f"{limit}")
        return min(kc, -(-k // 16) * 16)

    def tile_bytes(self, node: Node, cols: int, kc: int, n: int, sparse: bool) -> tuple[int, int]:
        """(bytes into the weight buffer, bytes into the meta buffer) of one weight tile."""
        bits = node.attr.get("weight_bits", 8)
        meta = -(-cols * kc * n // 16 * META_BITS_PER_KEPT // 8) if sparse and n < 16 else 0
        wbytes = -(-cols * kc * n // 16 * bits // 8)
        return (wbytes + meta, 0) if self.packed(sparse, n) else (wbytes, meta)

    def weight_tile(self, core: int, node: Node, cols: int, kc: int, n: int, sparse: bool,
                    after: int | None) -> int:
        """LDs of one weight tile (+ meta, FSB; with a linear's first tile on the core, its
        INT32 bias for all the core's columns, ``bias_left``); returns the last LD."""
        nid = self.b.node(node.name)
        wbytes, meta = self.tile_bytes(node, cols, kc, n, sparse)
        slot = self.next_slot(core)
        # decode (MV): weights into the A buffer from the core's weight channels; prefill (MM):
        # into the B buffer from the one channel B shares with meta/FSB/bias (artifact
        # vhk158_config.yaml: B/META/FSB/BIAS_BUFFER_HBM_CHANNEL_ID all 8, CHANNEL_NUM 1)
        chans = self.a.weight_channels if self.decode else 1
        aux = self.ch(core, self.a.weight_channels)
        first = last = self.b.emit(core, Queue.LD, after=(slot, after),
                                   nbytes=-(-wbytes // chans), op=self.mat_buf, node=nid,
                                   channel=self.ch(core, 0) if self.decode else aux)
        for j in range(1, chans):  # the other channels' parts: ordered by the first's tokens
            last = self.b.like(core, first, channel=self.ch(core, j))
        if sparse:
            if meta:
                last = self.b.like(core, first, channel=aux, op=LD_TARGETS["meta"],
                                   nbytes=meta)
            last = self.b.like(core, first, channel=aux, op=LD_TARGETS["FSB"],
                               nbytes=(cols // 16) * (kc // 16))
        if self.bias_left:  # artifact BIAS_BUFFER_HBM_CHANNEL_ID 8: the channel B/meta/FSB use
            last = self.b.like(core, first, channel=aux, op=LD_TARGETS["bias"],
                               nbytes=self.bias_left)
            self.bias_left = 0
        return last

    def segments(self, node: Node, lo: int, hi: int) -> list[tuple[int, int]]:
        """(N, columns) of the core's columns [lo, hi) under the block-row mix.

        The mix's block-rows are spread evenly over the output rows (Bresenham), so every core
        gets its share of each N: a contiguous mix would give one core all the dense rows and
        make it the straggler at every barrier. Within a core, rows of one N run together (the
        compiler orders the core's weight rows freely; outputs are written back by address).
        """
        mix = node.attr.get("nm_rows", ((16, -(-node.out_shape[-1] // 16)),))
        if len(mix) == 1:
            return [(mix[0][0], hi - lo)] if hi > lo else []
        total = sum(r for _, r in mix)
        i = np.arange(total)
        (n0, r0), rest = mix[0], mix[1:]
        first = (i + 1) * r0 // total - i * r0 // total == 1
        ns = np.empty(total, np.int64)
        ns[first] = n0
        ns[~first] = np.repeat([n for n, _ in rest], [r for _, r in rest])
        b0, b1 = lo // 16, -(-hi // 16)
        out = []
        for n, _ in mix:
            cnt = int((ns[b0:b1] == n).sum())
            if cnt:
                out.append((n, cnt * 16))
        extra = sum(c for _, c in out) - (hi - lo)   # a partial last block-row
        if extra and out:
            out[-1] = (out[-1][0], out[-1][1] - extra)
        return out

    def linear(self, node: Node) -> None:
        k, n_out = node.in_shapes[0][-1], node.out_shape[-1]
        src = node.inputs[0] if node.inputs else None
        # k/v_proj (and up_proj) read the same full vector as q_proj (gate_proj): it is still
        # in every core's buffer, so no gather (a barrier per sibling would be a model error)
        if self.split and src != self.full_src:
            if self.decode:
                self.gather(self.t * k)
            else:  # each row tile loads every core's part itself
                self.barrier()
                self.exch_src, self.exch_layout = src, self.out_heads
            self.full_src = src
        epi = self.epilogue(node)
        sparse = node.attr.get("fsb_bytes", 0) > 0
        nid = self.b.node(node.name)
        rows = int(np.prod(node.in_shapes[0][:-1]))  # token rows it computes (all sequences)
        for c in range(self.a.cores):
            lo, hi = self.share(n_out, c)
            self.bias_left = (hi - lo) * BIAS_BYTES if node.attr.get("bias_bytes", 0) else 0
            if not self.decode:
                self.prefill_linear_any(node, c, self.segments(node, lo, hi), k, sparse, epi,
                                        src is not None and src == self.exch_src)
                continue
            if self.offchip:
                self.act_roundtrip_in(c, rows * k, nid)
            segs, used = self.segments(node, lo, hi), 0
            for i, (n, cols) in enumerate(segs):
                self.linear_core(c, node, n, cols, k, rows, sparse, epi, used, i == len(segs) - 1)
                used += cols
            self.flush(c)
            if self.offchip:
                self.act_roundtrip_out(c, rows * (hi - lo), nid)
        self.split = True

    def linear_core(self, c: int, node: Node, n: int, cols: int, k: int, rows: int,
                    sparse: bool, epi: list[str], used: int = 0, last_seg: bool = True) -> None:
        """``cols`` columns of one N on core ``c``, after ``used`` columns of other N.

        The core's columns fill fixed tiles of ``wide`` (isa.py): a tile may hold block-rows
        of two N (one FSB byte per 16x16 block), so the first tile completes the one an
        earlier segment left open, and the last segment's last tile is padded to the width.
        """
        wide = self.a.mv_tile_cols if self.decode else self.a.mm_tile_cols
        offset = used % wide
        pad = -(used + cols) % wide if last_seg else 0
        nid = self.b.node(node.name)
        queue = Queue.MV if self.decode else Queue.MM
        tiles, c0 = [], 0
        while c0 < cols:
            w = min(wide - offset if c0 == 0 and offset else wide, cols - c0)
            kc = self.k_chunk(node, w, n, k)  # a narrower last column tile goes deeper in K
            ks = list(range(0, k, kc)) if self.decode else self.k_order(c, list(range(0, k, kc)))
            for r0 in range(0, rows, self.a.mm_tile_rows):
                # flags: FLAG_BIAS on an output tile's first K chunk, ends its last (epilogue)
                tiles += [(w, min(self.a.mm_tile_rows, rows - r0), k0, min(kc, k - k0),
                           pad if c0 + w >= cols else 0, i == 0, i == len(ks) - 1)
                          for i, k0 in enumerate(ks)]
            c0 += w
        bias = FLAG_BIAS if node.attr.get("bias_bytes", 0) else 0
        flags = FLAG_SPARSE if sparse else 0
        lds: list[int] = []
        if self.deferred[c]:
            # the first weight tile ahead of the gather's LDs; one only: LDs retire in order,
            # so a second tile (whose slot frees only when the previous op ends) would hold
            # back the gathered vector
            t = tiles[0]
            lds.append(self.weight_tile(c, node, t[0], t[3], n, sparse, None))
            self.flush(c)
        inp = self.ready[c]
        if not self.decode and self.pf[c].inp == -1:  # the input, after a deferred gather
            self.pf[c].inp = inp
        last = None
        for j, (w, r, k0, kk, p, first, end) in enumerate(tiles):
            ld = lds[j] if j < len(lds) else self.weight_tile(c, node, w, kk, n, sparse, None)
            # MV: ``nbytes`` = what it reads from the A buffer (the timing model's read width)
            abytes = self.tile_bytes(node, w, kk, n, sparse)[0] if self.decode else 0
            after = (ld, inp) if self.decode else (ld,) + self.pre_mm(c, k0, kk)
            f = flags | (bias if first else 0) | (FLAG_RELU if end and self.relu else 0)
            # MV computes ``mv_rows`` tokens (1 as published): a batch's tokens take one MV
            # per group over the tile the A buffer holds (weights loaded once for all
            # sequences); MM takes its rows at once
            step = self.a.mv_rows if self.decode else r
            for g0 in range(0, r, step):
                last = self.b.emit(c, queue, after=after, rows=min(step, r - g0),
                                   cols=w, pad=p, k=-(-kk // 16) * 16, n=n, node=nid,
                                   nbytes=abytes, flags=f)
                after = (last,)
            self.mpe_done[c].append(last)
            if not self.decode:
                self.post_mm(c, last)
            if end:  # the output tile is complete: its fused epilogue
                for op in epi:
                    last = self.misc(c, op, r, w, (last,), nid)
                if not self.decode:
                    self.out_tile(c, w, last)
        self.ready[c] = last

    def epilogue(self, node: Node) -> list[str]:
        """The fused consumers' MISC ops per output tile; sets ``relu`` for a fused ReLU."""
        ops: list[str] = []
        self.relu = False
        for m in self.consumers.get(node.name, []):
            if m.kind in _FUSABLE and m.layer == node.layer and m.name not in self.fused:
                if m.kind is OpKind.ROPE and ops:
                    continue
                self.fused.add(m.name)
                e = _epilogue_ops(m)
                if e == ("relu",):
                    self.relu = True
                else:
                    ops += e
        if node.module.endswith(("q_proj", "k_proj")):  # the rest of this linear's RoPE
            todo = [node.name]
            while todo:
                for x in self.consumers.get(todo.pop(), []):
                    if x.kind is OpKind.ROPE and x.layer == node.layer and x.name not in \
                            self.fused:
                        self.fused.add(x.name)
                        todo.append(x.name)
        if not self.a.fuse and ops:
            self.unfused_ops.append(ops)
            return []
        return ops

    def unfused(self, ops: list[str], node: Node) -> None:
        """Without fusion: the epilogue runs after the whole op, activations via HBM."""
        n_out = node.out_shape[-1]
        nid = self.b.node(node.name)
        for c in range(self.a.cores):
            self.flush(c)
            lo, hi = self.share(n_out, c)
            self.act_roundtrip_out(c, self.t * (hi - lo), nid)
            self.act_roundtrip_in(c, self.t * (hi - lo), nid)
            for op in ops:
                self.ready[c] = self.misc(c, op, self.t, hi - lo, (self.ready[c],), nid)

"""Instruction generation: a compressed graph -> one LD/ST/MM/MV/MISC/SYS stream per core.

Model parallel over the cores (one per SLR): every linear is split by output columns, attention
by heads. A core's activation is *full* (every core holds the whole vector) or *split* (each
holds its columns); an op that needs the full vector after a split one triggers a gather: ST of
the core's slice, a SYS barrier over all cores, LD of the other slices from the other cores'
channels (cross-channel efficiency). Linears tile by ``mv_tile_cols`` output columns (MV) or
``mm_tile_rows`` tokens x columns that fit half the B buffer (MM), and by K chunks that fit
half of the weight buffer: double buffering, LD of tile i+2 waits for the MV/MM of tile i.
Fusion: SiLU, element-wise and RoPE consumers of a linear run per output tile on the SFU
(``arch.fuse``); softmax runs per head right after its scores. Always-on-chip decode keeps
activations in the buffers; otherwise (and in prefill) each op loads its input and stores its
output. Scale/mask element-wise ops inside attention fold into the softmax pass; data-movement
ops (views, cat, rotary tables) need no instruction.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from mapping.flightllm.builder import Arch, Builder
from mapping.flightllm.compression import BIAS_BYTES, META_BITS_PER_KEPT
from mapping.flightllm.decode import DecodeMixin, check_batch_buffers
from mapping.flightllm.isa import (
    FLAG_BIAS,
    FLAG_RELU,
    FLAG_SPARSE,
    LD_TARGETS,
    MISC_OPS,
    Program,
    Queue,
)
from mapping.flightllm.prefill import PrefillMixin
from mapping.flightllm.replay import LinearReplay
from mapping.flightllm.replicate import Period, layer_ranges, signature, snapshot
from models.errors import UserError
from models.graph import Graph, Node, OpKind, Phase

__all__ = ["generate", "refuse_moe"]

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


class _Gen(DecodeMixin, PrefillMixin):
    def __init__(self, g: Graph, arch: Arch):
        self.g, self.a, self.b = g, arch, Builder(arch.cores)
        self.t = g.tokens * g.batch      # token rows of a pass, all sequences together
        self.seq_tokens = g.tokens       # ... of one sequence (attention runs per sequence)
        # decode: one new token per sequence, in MV mode (the MPE's one-token path,
        # MV_PARALLEL_M 1); a batch of B runs B MVs per weight tile (``linear_core``).
        # verify (speculation, ``Phase.VERIFY``): the gamma + 1 tokens of one sequence run in MV
        # mode like a decode batch (each weight tile loaded once, one MV per ``mv_rows`` token
        # rows), and their attention reads the sequence's K/V tiles once for all (decode.py)
        self.verify = g.phase is Phase.VERIFY
        self.decode = g.tokens == 1 or self.verify
        if self.decode and self.t > 1:
            check_batch_buffers(g, arch)
        # LD targets of the two MPE operands (artifact buffer widths): MV streams the matrix
        # (weights, K/V) from A at 64 B per channel and the vector from B at 16 B; MM streams
        # the token rows from A at 256 B per channel and the weights from B at 32 B
        self.mat_buf = LD_TARGETS["A" if self.decode else "B"]
        self.act_buf = LD_TARGETS["B" if self.decode else "A"]
        self.ready: list[int | None] = [None] * arch.cores   # last producer of the activation
        self.split = False
        self.full_src: str | None = None  # op whose output every core holds in full
        self.tiles = [0] * arch.cores                        # weight tiles issued per core
        self.mpe_done: list[list[int]] = [[] for _ in range(arch.cores)]  # per tile
        self.consumers: dict[str, list[Node]] = defaultdict(list)
        for n in g.nodes:
            for i in n.inputs:
                self.consumers[i].append(n)
        self.fused: set[str] = set()
        self.unfused_ops: list[list[str]] = []
        # per core: emissions that wait for a gather (its cross-channel LDs, then the ops on
        # the gathered vector), issued after the next linear's first weight tile (``flush``)
        self.deferred: list[list] = [[] for _ in range(arch.cores)]
        self.pf: list = [None] * arch.cores   # prefill linear state per core (prefill.py)
        self.pf_node = -1
        self.exch_src: str | None = None      # prefill: input read from all cores' channels
        self.relu = False                     # the current linear's MPE applies ReLU
        self.bias_left = 0                    # bias bytes the core's next weight tile loads
        # K/V heads per layer (GQA: fewer than the query heads; from the cache appends)
        self.kv_heads = {n.layer: n.in_shapes[0][1] for n in g.nodes
                         if n.kind is OpKind.KV_APPEND and n.in_shapes and
                         len(n.in_shapes[0]) == 4}
        self.out_heads: tuple[int, int] | None = None  # prefill: last split output per head
        self.exch_layout: tuple[int, int] | None = None  # ... of the input read from all
        self.replay: LinearReplay | None = None  # prefill linears copied (replay.py)

    # -- helpers -----------------------------------------------------------------------
    def ch(self, core: int, j: int) -> int:
        return core * self.a.channels_per_core + j % self.a.channels_per_core

    def share(self, total: int, core: int, align: int = 16) -> tuple[int, int]:
        """Column range of ``core`` when ``total`` columns are split in ``align`` blocks."""
        blocks = -(-total // align)
        per = -(-blocks // self.a.cores)
        lo, hi = min(core * per * align, total), min((core + 1) * per * align, total)
        return lo, hi

    def gather(self, nbytes_full: int) -> None:
        """Decode: ST own slice, SYS barrier, LD the other cores' slices (cross-channel).
        (Prefill reads split inputs where their producers stored them: prefill.py.)

        The cross-channel LDs (and what runs on the gathered vector before the next linear)
        are deferred to ``flush``: the next linear emits its first weight tile ahead of them in
        the in-order LD queue, so the weight prefetch does not wait behind the barrier (weights
        do not depend on the activation).
        """
        cores = self.a.cores
        if not self.split or cores == 1:
            self.split = False
            return
        part = -(-nbytes_full // cores)
        for c in range(cores):
            self.flush(c)
            st = self.b.emit(c, Queue.ST, after=(self.ready[c],), channel=self.ch(c, 0),
                             nbytes=part)
            sys = self.b.emit(c, Queue.SYS, after=(st,))
            self.deferred[c].append(lambda c=c, s=sys: self._gather_lds(c, s, part))
        self.split = False

    def _gather_lds(self, c: int, sys: int, part: int) -> None:
        last = None
        for o in range(self.a.cores):
            if o != c:
                last = self.b.emit(c, Queue.LD, after=(sys,), channel=self.ch(o, 0),
                                   cross=1, nbytes=part, op=self.act_buf)
        self.ready[c] = last

    def next_slot(self, c: int) -> int | None:
        """Count one more tile into the weight buffer's halves (A in decode, B in prefill);
        returns the MPE op two tiles back, which must finish before the tile loads."""
        t = self.tiles[c]
        self.tiles[c] += 1
        return self.mpe_done[c][t - 2] if t >= 2 else None

    def later(self, c: int, fn) -> None:
        """Run ``fn`` now, or after the pending gather's LDs if core ``c`` has one."""
        if self.deferred[c]:
            self.deferred[c].append(fn)
        else:
            fn()

    def flush(self, c: int) -> None:
        """Emit core ``c``'s deferred gather LDs and the ops waiting for them."""
        todo, self.deferred[c] = self.deferred[c], []
        for fn in todo:
            fn()

    def misc(self, core: int, op: str, rows: int, cols: int, after: tuple, node: int) -> int:
        return self.b.emit(core, Queue.MISC, after=after, op=MISC_OPS[op], rows=rows, cols=cols,
                           node=node)

    def act_roundtrip_in(self, core: int, nbytes: int, node: int) -> None:
        """Off-chip activations: load this op's input before computing."""
        self.flush(core)
        per = -(-nbytes // self.a.weight_channels)
        last = None
        for j in range(self.a.weight_channels):
            last = self.b.emit(core, Queue.LD, after=(self.ready[core],), channel=self.ch(core, j),
                               nbytes=per, op=self.act_buf,
                               node=node)
        self.ready[core] = last

    def act_roundtrip_out(self, core: int, nbytes: int, node: int) -> None:
        self.flush(core)
        self.ready[core] = self.b.emit(core, Queue.ST, after=(self.ready[core],),
                                       channel=self.ch(core, 1), nbytes=nbytes, node=node)

    @property
    def offchip(self) -> bool:
        return not (self.decode and self.a.on_chip_decode)

    # -- linears -----------------------------------------------------------------------
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

    # -- attention (decode: decode.py; prefill: prefill.py) -----------------------------
    def mpe(self, c: int, rows: int, cols: int, k: int, after: tuple, nid: int,
            abytes: int = 0) -> int:
        """One attention MV/MM, its columns padded to whole tiles."""
        q = Queue.MV if self.decode else Queue.MM
        wide = self.a.mv_tile_cols if self.decode else self.a.mm_tile_cols
        pad = -cols % wide  # MM: blocks of 64 columns fill whole 16-column tiles
        return self.b.emit(c, q, after=after, rows=rows, cols=cols, pad=pad,
                           k=-(-k // 16) * 16, node=nid, nbytes=abytes if self.decode else 0)

    def kv_store(self, node: Node) -> None:
        if not self.decode:  # prefill: k/v_proj's output chunk stores write the cache
            return
        for c in range(self.a.cores):
            self.flush(c)
            self.b.emit(c, Queue.ST, after=(self.ready[c],), channel=self.ch(c, 2),
                        nbytes=-(-node.kv_write_bytes // self.a.cores),
                        node=self.b.node(node.name))

    def norm(self, node: Node) -> None:
        size = node.out_shape[-1]
        kind = "rmsnorm" if "layer_norm" not in node.op.lower() and \
            not node.op.endswith("LayerNorm") else "layernorm"   # LlamaRMSNorm / OPT LayerNorm
        if not self.decode:  # prefill: row chunks through the global buffer (prefill.py)
            self.prefill_norm(node, kind)
            self.full_src = node.name
            return
        self.gather(self.t * size)
        nid = self.b.node(node.name)
        for c in range(self.a.cores):
            self.later(c, lambda c=c: self.ready.__setitem__(
                c, self.misc(c, kind, self.t, size, (self.ready[c],), nid)))
        self.full_src = node.name

    def embedding(self, node: Node) -> None:
        if not self.decode:
            self.prefill_embedding(node)
            return
        for c in range(self.a.cores):
            self.flush(c)
            self.ready[c] = self.b.emit(c, Queue.LD, channel=self.ch(c, 0),
                                        nbytes=node.out_shape[-1] * self.t,
                                        op=LD_TARGETS["global"], node=self.b.node(node.name))


def _step(gen: _Gen, n: Node, pending_qk: Node | None) -> Node | None:
    """Generate op ``n``; returns the QK matmul waiting for its PV (or None)."""
    if n.name in gen.fused:
        return pending_qk
    if n.kind is OpKind.EMBEDDING:
        gen.embedding(n)
    elif n.kind is OpKind.NORM:
        gen.norm(n)
    elif n.kind is OpKind.LINEAR:
        gen.linear(n)
        for ops in gen.unfused_ops:
            gen.unfused(ops, n)
        gen.unfused_ops = []
    elif n.kind is OpKind.KV_APPEND:
        gen.kv_store(n)
    elif n.kind is OpKind.MATMUL and n.attr.get("role") == "qk":
        return n
    elif n.kind is OpKind.MATMUL and n.attr.get("role") == "pv" and pending_qk is not None:
        gen.attention(pending_qk, n)
        return None
    return pending_qk


def refuse_moe(g: Graph) -> None:
    """UserError for mixture-of-experts graphs: FlightLLM (and this code generator) maps dense
    decoder layers only; an ``EXPERTS`` node would otherwise be skipped without a trace."""
    if any(n.kind is OpKind.EXPERTS for n in g.nodes):
        raise UserError(f"FlightLLM's cycle-level flow maps dense layers only, and {g.model} "
                        "has mixture-of-experts layers; run it with --fidelity roofline")


def generate(g: Graph, arch: Arch, replicate: bool = True) -> Program:
    """The instruction program of one forward pass of (compressed) ``g`` on ``arch``.

    ``replicate``: layers identical to the previous one are copied (``replicate.py``), and
    so are prefill linears whose instructions repeat an earlier one's (``replay.py``); the
    result is the same program (checked by tests), not generated op by op.
    """
    refuse_moe(g)
    gen = _Gen(g, arch)
    gen.replay = LinearReplay() if replicate else None
    pending: Node | None = None
    ranges = layer_ranges(g) if replicate and g.nodes else []
    starts = {start: k for k, (_, start, _) in enumerate(ranges)}
    period: Period | None = None
    snaps: list = []
    sig: tuple | None = None
    i, nodes = 0, g.nodes
    while i < len(nodes):
        k = starts.get(i)
        if k is not None and pending is None and not any(gen.deferred):
            layer, start, end = ranges[k]
            if period is not None:
                if signature(nodes[start:end]) != sig:
                    period = None          # a different layer: generate the rest op by op
                else:
                    period.apply(gen, layer)   # identical layer: copy, shifted
                    i = end
                    continue
            if k in (1, 2) and len(snaps) == k - 1:
                snaps.append((layer, snapshot(gen)))
        pending = _step(gen, nodes[i], pending)
        i += 1
        if len(snaps) == 2 and len(ranges) > 3 and i == ranges[2][2] and pending is None \
                and not any(gen.deferred):
            (l1, s1), (l2, s2) = snaps
            period = Period.measure(gen, s1, s2, snapshot(gen), l1, l2)
            sig = signature(nodes[ranges[2][1]:ranges[2][2]])
            snaps.append(None)  # measured once
    for c in range(arch.cores):
        gen.flush(c)
    meta = {"phase": g.phase.value, "tokens": g.tokens, "context": g.context, "model": g.model,
            "cores": arch.cores}
    return gen.b.program(meta)

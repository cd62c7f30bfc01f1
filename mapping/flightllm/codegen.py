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
ops (views, cat, rotary tables) need no instruction. The linears' code is in linear.py,
decode attention in decode.py, prefill's row tiles and attention in prefill.py.
"""

from __future__ import annotations

from collections import defaultdict

from mapping.flightllm.builder import Arch, Builder
from mapping.flightllm.decode import DecodeMixin, check_batch_buffers
from mapping.flightllm.isa import LD_TARGETS, MISC_OPS, Program, Queue
from mapping.flightllm.linear import LinearMixin
from mapping.flightllm.prefill import PrefillMixin
from mapping.flightllm.replay import LinearReplay
from mapping.flightllm.replicate import Period, layer_ranges, signature, snapshot
from models.errors import UserError
from models.graph import Graph, Node, OpKind, Phase

__all__ = ["generate", "refuse_moe"]


class _Gen(DecodeMixin, PrefillMixin, LinearMixin):
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

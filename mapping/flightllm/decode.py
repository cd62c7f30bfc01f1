"""Decode (MV) attention code generation: K and V tiles through the A buffer, per core's heads.

Each core runs its share of the heads. A K/V head's keys stream into half the A buffer in tiles
of ``mv_tile_cols`` keys (one score MV per tile and query head), striped over the weight
channels like a weight tile (each channel fills its slice of A); the softmax runs per head on
the SFU; V loads as one tile and the PV MV reads it. Under grouped-query attention, the query
heads of one K/V head on a core share its K and V tiles. Double buffering as for weights: a
tile's LD waits for the MV two A tiles back (``next_slot``).
"""

from __future__ import annotations

from mapping.flightllm.builder import Arch
from mapping.flightllm.isa import LD_TARGETS, Queue
from models.errors import UserError
from models.graph import Graph, Node, OpKind, Phase

__all__ = ["TREE_MASK_KEYS", "DecodeMixin", "check_batch_buffers", "max_pass_tokens"]

TREE_MASK_KEYS = "tree_mask_keys"   # Graph.meta key: new keys a tree pass's mask covers


def check_batch_buffers(g: Graph, arch: Arch) -> None:
    """UserError unless a decode batch's activation vectors fit the B buffer.

    Always-on-chip decode keeps every sequence's input vector of a linear in the B buffer,
    which MV streams it from (artifact ``B_BUFFER_MV_BANK_WIDTH_B``); a batch of ``g.batch``
    needs ``batch x K`` INT8 bytes there for the widest linear input ``K``.
    """
    widest = max((n for n in g.nodes if n.kind is OpKind.LINEAR),
                 key=lambda n: n.in_shapes[0][-1], default=None)
    if widest is None:
        return
    k = widest.in_shapes[0][-1]
    rows = g.batch * g.tokens   # decode: one vector per sequence; verify: per verified token
    if rows * k <= arch.b_buffer_bytes:
        return
    limit = arch.b_buffer_bytes // k
    if g.phase is Phase.VERIFY and g.batch == 1:
        raise UserError(
            f"FlightLLM verify of {g.tokens} tokens (batch {g.batch}): always-on-chip decode "
            f"keeps each token's input vector in the B buffer, and {widest.module} needs "
            f"{rows} x {k} bytes, more than its {arch.b_buffer_bytes} bytes; at most "
            f"{limit} tokens per verify for {g.model} (a smaller --gamma, "
            "or a preset with a larger b_buffer_bytes)")
    if g.phase is Phase.VERIFY:   # a batch's verify: every sequence's tokens at once
        raise UserError(
            f"FlightLLM verify at batch {g.batch} of {g.tokens} tokens per sequence: "
            f"always-on-chip decode keeps each token's input vector in the B buffer, and "
            f"{widest.module} needs {g.batch} x {g.tokens} = {rows} rows of {k} bytes, more "
            f"than its {arch.b_buffer_bytes} bytes; at most {limit} rows (batch x tokens per "
            f"verify) for {g.model} (a smaller --batch or --gamma, or a preset with a larger "
            "b_buffer_bytes)")
    raise UserError(
        f"FlightLLM decode at batch {g.batch}: always-on-chip decode keeps each sequence's "
        f"input vector in the B buffer, and {widest.module} needs {g.batch} x {k} bytes, "
        f"more than its {arch.b_buffer_bytes} bytes; the largest batch for {g.model} is "
        f"{limit} (or give the preset a larger b_buffer_bytes)")


def max_pass_tokens(g: Graph, arch: Arch) -> int:
    """Tokens of one sequence whose input vectors fit the B buffer together (the bound
    ``check_batch_buffers`` applies): B bytes over the widest linear input, INT8. A pass of
    more tokens (a token tree's verify) runs as several passes of at most this many."""
    k = max((n.in_shapes[0][-1] for n in g.nodes if n.kind is OpKind.LINEAR), default=1)
    return max(arch.b_buffer_bytes // k, 0)


class DecodeMixin:
    """Attention methods of the code generator (``codegen._Gen``)."""

    def attention(self, qk: Node, pv: Node) -> None:
        if not self.decode:
            self.prefill_attention(qk)
            return
        heads, d = qk.in_shapes[0][1], qk.in_shapes[0][3]
        kv_len = qk.out_shape[-1]
        nid = self.b.node(qk.name)
        grp = heads // self.kv_heads.get(qk.layer, heads)  # query heads per K/V head (GQA)
        for c in range(self.a.cores):
            self.flush(c)
            h0, h1 = self.share(heads, c, 1)
            last = self.ready[c]
            self.mask_ld = self.tree_mask(c, nid)
            for _ in range(self.g.batch):  # a batch: each sequence reads its own cache
                for g in range(h0 // grp, -(-h1 // grp)):  # a K/V head, loaded once per core
                    hs = range(max(h0, g * grp), min(h1, (g + 1) * grp))
                    last = self._head_group(c, hs, kv_len, d, nid, last, self.seq_tokens)
            self.ready[c] = last
        self.split = True

    def _head_group(self, c: int, hs: range, kv_len: int, d: int, nid: int,
                    last: int | None, q: int = 1) -> int:
        """One sequence's query heads ``hs`` of one K/V head: score MVs per K tile, softmax
        per head, the V tile and a PV MV per head; returns the last PV.

        ``q`` > 1 (verify): the sequence's ``q`` new tokens are ``q`` queries over the same
        ``kv_len`` = context + q keys (their own K/V were stored by the verify's kv stores):
        each K and V tile is loaded once and read by every query's MV, as the query heads of
        a GQA group share them. The causal mask among the new tokens is applied by the SFU's
        softmax pass (masked scores set to -inf as it reads them): no extra instruction; the
        MPE computes the masked scores too (at most q - 1 of kv_len per query).

        Every (head, query) row of the group reads the same K and V tiles, so one MV computes
        up to ``Arch.mv_rows`` of them from one read of the tile (1 as published: one MV per
        row; the grouping is over heads too, as a GQA group's heads share the tiles).
        """
        s: dict[tuple[int, int], int | None] = {(h, i): None for h in hs for i in range(q)}
        rows, m = list(s), self.a.mv_rows  # (head, query) rows; m per MV (Arch.mv_rows)
        for j in range(0, kv_len, self.a.mv_tile_cols):  # an MV per 512 keys
            w = min(self.a.mv_tile_cols, kv_len - j)
            kl = self.a_tile(c, w * d, nid)        # K (w keys x d, INT8)
            for g0 in range(0, len(rows), m):      # every row reads this K tile: m per read
                grp = rows[g0:g0 + m]
                mv = self.mpe(c, len(grp), w, d, (kl, s[grp[0]], last), nid, w * d)
                s.update(dict.fromkeys(grp, mv))
            self.mpe_done[c].append(s[hs[-1], q - 1])
        # per head: the q score vectors (rows) in one softmax pass
        mask = (getattr(self, "mask_ld", None),)
        sms = {h: self.misc(c, "softmax", q, kv_len, tuple(s[h, i] for i in range(q)) + mask,
                            nid) for h in hs}
        vl = self.a_tile(c, kv_len * d, nid)       # V (kv_len x d, INT8)
        for g0 in range(0, len(rows), m):          # PV rows read the V tile, m per read
            grp = rows[g0:g0 + m]
            heads = tuple(dict.fromkeys(sms[h] for h, _ in grp))  # their softmaxes
            last = self.mpe(c, len(grp), d, kv_len, (vl, *heads), nid, kv_len * d)
        self.mpe_done[c].append(last)
        return last

    def tree_mask(self, c: int, nid: int) -> int | None:
        """A token tree's attention mask (verify or a draft's tree level, ``TREE_MASK_KEYS``
        in the graph's meta: the pass's q tokens see n of the tree's new keys): one LD per
        layer and core of q x n bits into the global buffer, which the softmax waits for and
        reads as it masks the scores (set to -inf). A chain's causal mask is an index
        comparison in the SFU, no data: None. Per layer because the global buffer is not
        reserved across layers (a conservative choice; the mask is the same for all)."""
        keys = dict(self.g.meta).get(TREE_MASK_KEYS)
        if not keys or not self.verify:
            return None
        nbytes = -(-self.seq_tokens * int(keys) // 8)
        if nbytes > self.a.global_buffer_bytes:
            raise UserError(f"--tree: the attention mask of a pass of {self.seq_tokens} tree "
                            f"tokens over {keys} tree keys takes {nbytes} bytes, more than the "
                            f"global buffer's {self.a.global_buffer_bytes}; use a smaller tree")
        return self.b.emit(c, Queue.LD, channel=self.ch(c, 0), op=LD_TARGETS["global"],
                           nbytes=nbytes, node=nid)

    def a_tile(self, c: int, nbytes: int, nid: int) -> int:
        """Decode K/V into half the A buffer (after the MV two A tiles back), striped over the
        weight channels like a weight tile (each channel fills its slice of A: the cache keeps
        token t's rows on channel t mod 8); returns the last LD."""
        if nbytes > self.a.a_buffer_bytes // 2:
            raise UserError(f"decode attention: {nbytes} bytes of K or V per head exceed half "
                            f"the A buffer ({self.a.a_buffer_bytes // 2} bytes)")
        slot = self.next_slot(c)
        per = -(-nbytes // self.a.weight_channels)
        last = None
        for j in range(self.a.weight_channels):
            last = self.b.emit(c, Queue.LD, after=(slot,) if j == 0 else (),
                               channel=self.ch(c, j), nbytes=per, op=self.mat_buf, node=nid)
        return last

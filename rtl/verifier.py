"""Speculative-decoding verifier (HADES: verification in hardware), chain drafts.

``mode="greedy"``: one ``x`` beat carries γ draft tokens and γ+1 target argmax tokens; the
result is the number of leading matches A and the token ``target[A]`` (correction, or the bonus
token when A = γ). Latency 2, one request per cycle.

``mode="sample"``: one ``x`` beat per position, γ+1 beats per request (the last one the bonus
position): draft token, UQ0.16 rows p and q over a ``vocab``-entry shortlist, and the UQ0.16
randoms u (accept test u·q[x] < p[x]) and r (inverse-CDF resampling from max(0, p − q), or from
p when that is all zero; q counts as 0 at the bonus position). Latency 4 from the bonus beat,
II γ+1 cycles. Bit-exact to ``kernels/verify.py``; timing in ``sim/blocks/verifier.py``.

Bad parameters (mode, γ outside 1..16, vocab outside 2..64) raise ValueError at construction.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.blocks.verifier import check_verifier_params

__all__ = ["PROB_BITS", "Verifier", "verifier_layouts"]

PROB_BITS = 16  # p, q, u, r in UQ0.16


def verifier_layouts(mode: str, gamma: int, vocab: int, token_bits: int) -> dict[str, data.Layout]:
    """Payload layouts of the ``x`` and ``y`` streams."""
    acc = unsigned(gamma.bit_length())  # 0..γ
    if mode == "greedy":
        tok = unsigned(token_bits)
        return {
            "x": data.StructLayout({"draft": data.ArrayLayout(tok, gamma),
                                    "target": data.ArrayLayout(tok, gamma + 1)}),
            "y": data.StructLayout({"accepted": acc, "token": tok}),
        }
    tok = unsigned((vocab - 1).bit_length())
    prob = unsigned(PROB_BITS)
    return {
        "x": data.StructLayout({"draft": tok, "p": data.ArrayLayout(prob, vocab),
                                "q": data.ArrayLayout(prob, vocab), "u": prob, "r": prob}),
        "y": data.StructLayout({"accepted": acc, "token": tok}),
    }


class Verifier(wiring.Component):
    """Speculative verifier for ``gamma`` draft tokens, greedy or fixed-point sampling."""

    def __init__(self, *, mode: str = "greedy", gamma: int = 4, vocab: int = 16,
                 token_bits: int = 16):
        check_verifier_params(mode, gamma, vocab, token_bits)
        self.mode, self.gamma, self.vocab, self.token_bits = mode, gamma, vocab, token_bits
        lay = verifier_layouts(mode, gamma, vocab, token_bits)
        super().__init__({"x": In(stream.Signature(lay["x"])),
                          "y": Out(stream.Signature(lay["y"]))})

    def elaborate(self, platform):
        m = Module()
        adv = Signal()
        m.d.comb += [adv.eq(~self.y.valid | self.y.ready), self.x.ready.eq(adv)]
        take = adv & self.x.valid
        if self.mode == "greedy":
            self._greedy(m, adv, take)
        else:
            self._sample(m, adv, take)
        return m

    def _greedy(self, m, adv, take):
        g, x = self.gamma, self.x.payload
        match = Signal(g)
        target = Signal(x.target.shape())
        valid1 = Signal()
        with m.If(adv):
            m.d.sync += [valid1.eq(take), target.eq(x.target), self.y.valid.eq(valid1)]
            m.d.sync += [match[i].eq(x.draft[i] == x.target[i]) for i in range(g)]
        accepted = Signal(range(g + 1))
        m.d.comb += accepted.eq(g)
        for i in reversed(range(g)):  # priority: the first mismatch wins
            with m.If(~match[i]):
                m.d.comb += accepted.eq(i)
        with m.If(adv):
            m.d.sync += [self.y.payload.accepted.eq(accepted),
                         self.y.payload.token.eq(Array(target)[accepted])]

    def _sample(self, m, adv, take):
        s1 = self._sample_stage1(m, adv, take)
        s2 = self._sample_stage2(m, adv, s1)
        s3 = self._sample_stage3(m, adv, s2)
        self._sample_state(m, adv, s3)

    def _sample_stage1(self, m, adv, take):
        """Position counter, accept test u·q[x] < p[x]·2**16, residual max(0, p − q)."""
        g, v, x = self.gamma, self.vocab, self.x.payload
        pos = Signal(range(g + 1))
        with m.If(take):
            m.d.sync += pos.eq(Mux(pos == g, 0, pos + 1))
        bonus = pos == g
        p_x, q_x = Array(x.p)[x.draft], Array(x.q)[x.draft]
        st = {k: Signal(name=f"s1_{k}") for k in ("valid", "accept", "bonus")}
        st["r"] = Signal(PROB_BITS, name="s1_r")
        st["p"] = [Signal(PROB_BITS, name=f"s1_p{i}") for i in range(v)]
        st["res"] = [Signal(PROB_BITS, name=f"s1_res{i}") for i in range(v)]
        st["pos"] = Signal(range(g + 1), name="s1_pos")
        with m.If(adv):
            m.d.sync += [st["valid"].eq(take), st["bonus"].eq(bonus), st["r"].eq(x.r),
                         st["pos"].eq(pos),
                         st["accept"].eq(~bonus & (x.u * q_x < (p_x << PROB_BITS)))]
            for i in range(v):
                diff = x.p[i] - x.q[i]
                res = Mux(bonus, x.p[i], Mux(diff > 0, diff, 0))
                m.d.sync += [st["p"][i].eq(x.p[i]), st["res"][i].eq(res)]
        return st

    def _sample_stage2(self, m, adv, s1):
        """Pick residual (or p when the residual is all zero), prefix sums and total."""
        v = self.vocab
        sum_w = PROB_BITS + v.bit_length()
        res_sum = sum(s1["res"][1:], s1["res"][0])
        use_p = Signal(name="use_p")
        m.d.comb += use_p.eq(res_sum == 0)
        st = {k: s1[k] for k in ("valid", "accept", "bonus", "r", "pos")}
        st = {k: Signal.like(sig, name=f"s2_{k}") for k, sig in st.items()}
        st["cum"] = [Signal(sum_w, name=f"s2_cum{i}") for i in range(v)]
        running = 0
        with m.If(adv):
            m.d.sync += [st[k].eq(s1[k]) for k in ("valid", "accept", "bonus", "r", "pos")]
            for i in range(v):
                running = running + Mux(use_p, s1["p"][i], s1["res"][i])
                m.d.sync += st["cum"][i].eq(running)
        return st

    def _sample_stage3(self, m, adv, s2):
        """Threshold (r·Σ) >> 16 and the first prefix sum above it (inverse CDF)."""
        v = self.vocab
        thr = Signal(len(s2["cum"][0]), name="thr")
        m.d.comb += thr.eq((s2["r"] * s2["cum"][v - 1]) >> PROB_BITS)
        token = Signal(range(v), name="s3_pick")
        m.d.comb += token.eq(0)
        for i in reversed(range(v)):
            with m.If(s2["cum"][i] > thr):
                m.d.comb += token.eq(i)
        st = {k: Signal.like(s2[k], name=f"s3_{k}") for k in ("valid", "accept", "bonus", "pos")}
        st["token"] = Signal(range(v), name="s3_token")
        with m.If(adv):
            m.d.sync += [st[k].eq(s2[k]) for k in ("valid", "accept", "bonus", "pos")]
            m.d.sync += st["token"].eq(token)
        return st

    def _sample_state(self, m, adv, s3):
        """Request state: the first rejection fixes (A, token); emit on the bonus beat."""
        done = Signal()  # a rejection has been seen in this request
        acc_a = Signal(range(self.gamma + 1))
        acc_t = Signal(range(self.vocab))
        fresh = s3["pos"] == 0
        seen = done & ~fresh
        reject = ~s3["accept"]  # always true at the bonus position
        out_a = Mux(seen, acc_a, s3["pos"])
        out_t = Mux(seen, acc_t, s3["token"])
        with m.If(adv):
            m.d.sync += self.y.valid.eq(s3["valid"] & s3["bonus"])
            with m.If(s3["valid"]):
                m.d.sync += [done.eq(seen | reject), acc_a.eq(out_a), acc_t.eq(out_t)]
                m.d.sync += [self.y.payload.accepted.eq(out_a), self.y.payload.token.eq(out_t)]


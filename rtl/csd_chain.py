"""Configurable sparse DSP chain (CSD-Chain, FlightLLM §4): N:16-sparse INT8 dot products.

Structure (timing in ``sim/blocks/csd_chain.py``):

* ``chain`` DSP48s in groups (DG) of 2; reduction nodes cut the cascade into segments of ``n``
  DSP48s, one output row per segment: ``chain // n`` rows per pass (1 per 16 DSP48s dense).
* Each DSP48 multiplies its weight by two activations packed as ``hi · 2**18 + lo`` through the
  27-bit pre-adder (Xilinx WP486 INT8 packing): P = w·hi·2**18 + w·lo in one 27×18 multiply.
* Sparse MUX: DSP d selects activation ``idx[d]`` (4-bit) of the 16-element beat; dense mode
  wires DSP d to activation ``d % 16`` and carries no index.
* Cascade: DG g of a span adds its two products to the PCIN of DG g−1, one register per DG;
  products of later DGs are delayed to line up (the systolic skew of a DSP cascade).
* Overflow adjust every ``span`` DSP48s: LSP = P[17:0] (signed), MSP = P[47:18] + P[17].
* Reduction tree over the spans of a segment, then a 32-bit accumulator per lane that sums the
  K/16 beats of a dot product and emits on the beat flagged ``last``.

Streams: ``w`` (weights, indices, last), ``a`` (16 activations × 2 lanes), ``y`` (per row,
two INT32 lanes). ``w`` and ``a`` are joined: a beat moves when both are valid.
Latency ``4 + span/2 + log2(n/span)`` cycles, II 1 beat/cycle; stalls only on ``y`` backpressure.
Bad parameters raise ValueError at construction.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.blocks.csd_chain import (
    BLOCK_M,
    DSP_GROUP,
    PACK_SPAN_DSP48,
    check_csd_params,
    parse_pattern,
)

__all__ = ["CsdChain", "csd_layouts"]

LANE_SHIFT = 18  # WP486: the high activation sits 18 bits up, above the 18-bit low lane
P_WIDTH = 48  # DSP48E2 P register


def csd_layouts(chain: int, n: int) -> dict[str, data.StructLayout]:
    """Payload layouts of the ``w``, ``a`` and ``y`` streams."""
    w_fields = {"w": data.ArrayLayout(signed(8), chain), "last": unsigned(1)}
    if n < BLOCK_M:
        w_fields["idx"] = data.ArrayLayout(unsigned(4), chain)
    rows = chain // n
    return {
        "w": data.StructLayout(w_fields),
        "a": data.StructLayout({"lo": data.ArrayLayout(signed(8), BLOCK_M),
                                "hi": data.ArrayLayout(signed(8), BLOCK_M)}),
        "y": data.StructLayout({"lo": data.ArrayLayout(signed(32), rows),
                                "hi": data.ArrayLayout(signed(32), rows)}),
    }


class CsdChain(wiring.Component):
    """CSD-Chain of ``chain`` DSP48s running N:16 sparsity (``pattern`` "N:16", "dense" or N)."""

    def __init__(self, *, chain: int = 16, pattern: str | int = "dense"):
        n = parse_pattern(pattern)
        check_csd_params(chain, n)
        self.chain, self.n = chain, n
        self.span = min(n, PACK_SPAN_DSP48)
        self.rows = chain // n
        lay = csd_layouts(chain, n)
        super().__init__({
            "w": In(stream.Signature(lay["w"])),
            "a": In(stream.Signature(lay["a"])),
            "y": Out(stream.Signature(lay["y"])),
        })

    def elaborate(self, platform):
        m = Module()
        adv = Signal()  # pipeline advances: output empty or being taken
        take = Signal()
        m.d.comb += [
            adv.eq(~self.y.valid | self.y.ready),
            take.eq(adv & self.w.valid & self.a.valid),
            self.w.ready.eq(adv & self.a.valid),
            self.a.ready.eq(adv & self.w.valid),
        ]
        ctl = self._control_pipe(m, adv, take)
        prods = self._mux_multiply(m, adv)
        spans = [self._cascade(m, adv, prods[s:s + self.span])
                 for s in range(0, self.chain, self.span)]
        lanes = [self._adjust(m, adv, p) for p in spans]
        per_seg = self.n // self.span
        seg_sums = [self._tree(m, adv, lanes[r * per_seg:(r + 1) * per_seg])
                    for r in range(self.rows)]
        self._accumulate(m, adv, ctl, seg_sums)
        return m

    def _depth(self) -> int:
        return 2 + self.span // DSP_GROUP + 1 + (self.n // self.span).bit_length() - 1

    def _control_pipe(self, m, adv, take):
        """valid/last shift register alongside the data path; returns the last stage."""
        valid, last = take, self.w.payload.last
        for i in range(self._depth()):
            v, lst = Signal(name=f"v{i}"), Signal(name=f"last{i}")
            with m.If(adv):
                m.d.sync += [v.eq(valid), lst.eq(last)]
            valid, last = v, lst
        return valid, last

    def _mux_multiply(self, m, adv):
        """Stage 1: sparse MUX + pre-adder pack; stage 2: 27×8 multiply into P."""
        w_in, a_in = self.w.payload, self.a.payload
        lo, hi = Array(a_in.lo), Array(a_in.hi)
        prods = []
        for d in range(self.chain):
            sel = w_in.idx[d] if self.n < BLOCK_M else d % BLOCK_M
            pack = Signal(signed(27), name=f"pack{d}")  # D + A·2**18 through the pre-adder
            wgt = Signal(signed(8), name=f"wgt{d}")
            prod = Signal(signed(P_WIDTH), name=f"p{d}")
            with m.If(adv):
                m.d.sync += [
                    pack.eq((hi[sel] << LANE_SHIFT) + lo[sel]),
                    wgt.eq(w_in.w[d]),
                    prod.eq(wgt * pack),
                ]
            prods.append(prod)
        return prods

    def _delay(self, m, adv, sig, cycles, name):
        for i in range(cycles):
            reg = Signal.like(sig, name=f"{name}_d{i}")
            with m.If(adv):
                m.d.sync += reg.eq(sig)
            sig = reg
        return sig

    def _cascade(self, m, adv, prods):
        """PCIN cascade over the DGs of one span, one register per DG."""
        carry = None
        for g in range(len(prods) // DSP_GROUP):
            p0 = self._delay(m, adv, prods[2 * g], g, prods[2 * g].name)
            p1 = self._delay(m, adv, prods[2 * g + 1], g, prods[2 * g + 1].name)
            acc = Signal(signed(P_WIDTH), name=f"{prods[0].name}_dg{g}")
            total = p0 + p1 if carry is None else carry + p0 + p1
            with m.If(adv):
                m.d.sync += acc.eq(total)
            carry = acc
        return carry

    def _adjust(self, m, adv, packed):
        """Overflow adjust: split P into the signed 18-bit LSP and the corrected MSP."""
        lo = Signal(signed(32), name=f"{packed.name}_lsp")
        hi = Signal(signed(32), name=f"{packed.name}_msp")
        with m.If(adv):
            m.d.sync += [
                lo.eq(packed[:LANE_SHIFT].as_signed()),
                hi.eq(packed[LANE_SHIFT:].as_signed() + packed[LANE_SHIFT - 1]),
            ]
        return lo, hi

    def _tree(self, m, adv, pairs):
        """Reduction node: registered pairwise adds of the spans of one segment."""
        level = 0
        while len(pairs) > 1:
            nxt = []
            for i in range(0, len(pairs), 2):
                (alo, ahi), (blo, bhi) = pairs[i], pairs[i + 1]
                lo = Signal(signed(32), name=f"{alo.name}_r{level}")
                hi = Signal(signed(32), name=f"{ahi.name}_r{level}")
                with m.If(adv):
                    m.d.sync += [lo.eq(alo + blo), hi.eq(ahi + bhi)]
                nxt.append((lo, hi))
            pairs, level = nxt, level + 1
        return pairs[0]

    def _accumulate(self, m, adv, ctl, seg_sums):
        """Per-row 32-bit accumulators over the K/16 beats; emit on ``last``."""
        valid, last = ctl
        with m.If(adv):
            m.d.sync += self.y.valid.eq(valid & last)
        for r, (lo, hi) in enumerate(seg_sums):
            acc_lo = Signal(signed(32), name=f"acc_lo{r}")
            acc_hi = Signal(signed(32), name=f"acc_hi{r}")
            with m.If(adv & valid):
                with m.If(last):
                    m.d.sync += [
                        self.y.payload.lo[r].eq(acc_lo + lo),
                        self.y.payload.hi[r].eq(acc_hi + hi),
                        acc_lo.eq(0),
                        acc_hi.eq(0),
                    ]
                with m.Else():
                    m.d.sync += [acc_lo.eq(acc_lo + lo), acc_hi.eq(acc_hi + hi)]

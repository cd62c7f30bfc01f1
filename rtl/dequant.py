"""Group-wise low-bit → INT8 dequantizer (FlightLLM's mixed-precision dequant unit).

Each beat carries ``lanes`` unsigned ``bits``-bit codes; every ``group`` weights (``group //
lanes`` beats) share one (scale, zero) beat from the ``params`` stream, taken together with the
group's first weight beat. Output: ``clamp(((q − zero) · scale + 8) >> 4, −128, 127)`` with the
scale in UQ8.4 — bit-exact to ``kernels/dequant.py``.

Latency 2 cycles (multiply register, round/saturate output register), II 1 beat per cycle
(``sim/blocks/dequant.py``). Bits outside 2..8, or a group that is not a multiple of ``lanes``,
raise ValueError at construction.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.blocks.dequant import SCALE_BITS, SCALE_FRAC, check_dequant_params

__all__ = ["Dequant", "dequant_layouts"]


def dequant_layouts(bits: int, lanes: int) -> dict[str, data.Layout]:
    """Payload layouts of the ``params``, ``q`` and ``y`` streams."""
    return {
        "params": data.StructLayout({"scale": unsigned(SCALE_BITS), "zero": unsigned(bits)}),
        "q": data.ArrayLayout(unsigned(bits), lanes),
        "y": data.ArrayLayout(signed(8), lanes),
    }


class Dequant(wiring.Component):
    """Dequantizer of ``bits``-bit weights, ``lanes`` per beat, one scale/zero per ``group``."""

    def __init__(self, *, bits: int = 4, lanes: int = 16, group: int = 64):
        check_dequant_params(bits, lanes, group)
        self.bits, self.lanes, self.group = bits, lanes, group
        lay = dequant_layouts(bits, lanes)
        super().__init__({
            "params": In(stream.Signature(lay["params"])),
            "q": In(stream.Signature(lay["q"])),
            "y": Out(stream.Signature(lay["y"])),
        })

    def elaborate(self, platform):
        m = Module()
        beats = self.group // self.lanes
        count = Signal(range(beats), name="beat")  # beat index inside the group
        first = Signal()
        adv, take = Signal(), Signal()
        m.d.comb += [
            first.eq(count == 0),
            adv.eq(~self.y.valid | self.y.ready),
            take.eq(adv & self.q.valid & (~first | self.params.valid)),
            self.q.ready.eq(adv & (~first | self.params.valid)),
            self.params.ready.eq(adv & first & self.q.valid),
        ]
        held = Signal(self.params.payload.shape())  # params of the current group
        cur = Signal(self.params.payload.shape())
        m.d.comb += cur.eq(held)
        with m.If(first):
            m.d.comb += cur.eq(self.params.payload)
        with m.If(take):
            m.d.sync += held.eq(cur)
            m.d.sync += count.eq(Mux(count == beats - 1, 0, count + 1))
        self._datapath(m, adv, take, cur)
        return m

    def _datapath(self, m, adv, take, cur):
        prod_w = self.bits + 1 + SCALE_BITS + 1
        valid1 = Signal()
        prods = [Signal(signed(prod_w), name=f"prod{i}") for i in range(self.lanes)]
        with m.If(adv):
            m.d.sync += [valid1.eq(take), self.y.valid.eq(valid1)]
            for i, prod in enumerate(prods):
                diff = self.q.payload[i] - cur.zero  # unsigned − unsigned: signed, bits+1 wide
                m.d.sync += prod.eq(diff * cur.scale)
            for i, prod in enumerate(prods):
                rounded = (prod + (1 << (SCALE_FRAC - 1))) >> SCALE_FRAC
                with m.If(rounded > 127):
                    m.d.sync += self.y.payload[i].eq(127)
                with m.Elif(rounded < -128):
                    m.d.sync += self.y.payload[i].eq(-128)
                with m.Else():
                    m.d.sync += self.y.payload[i].eq(rounded)

"""Fixed-point softmax SFU (FlightLLM SFU: 16 elements/cycle, two passes for softmax).

Input: vectors of ``n`` INT8 logits in Q3.4, ``lanes`` per beat. Output: UQ0.16 probabilities
(``lanes`` per beat), bit-exact to ``kernels/softmax.py``:

1. load the vector into a buffer, keeping the running max m;
2. exp pass: e = EXP[m − x] from a 256-entry table (UQ1.16, ``floor(exp(−d/16)·2**16 + 1/2)``),
   summed into S;
3. reciprocal 2**32 // S by restoring division, one quotient bit per cycle (17 cycles);
4. normalise pass: y = min((e · recip + 2**15) >> 16, 2**16 − 1).

One vector at a time. Latency ``n/lanes + 18`` cycles from the last input beat to the first
output beat; a new vector is accepted every ``3·n/lanes + 17`` cycles (``sim/blocks/sfu.py``).
Bad parameters raise ValueError at construction.
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.blocks.sfu import DIV_CYCLES, check_softmax_params

__all__ = ["EXP_BITS", "Softmax", "exp_table", "softmax_layouts"]

EXP_BITS = 17  # UQ1.16: EXP[0] = 2**16 exactly
FRAC_BITS = 4  # logits in Q3.4


def exp_table(frac_bits: int = FRAC_BITS) -> list[int]:
    """EXP[d] = floor(exp(−d / 2**frac_bits) · 2**16 + 1/2) for d in 0..255."""
    return [math.floor(math.exp(-d / 2**frac_bits) * 2**16 + 0.5) for d in range(256)]


def softmax_layouts(lanes: int) -> dict[str, data.Layout]:
    """Payload layouts of the ``x`` and ``y`` streams."""
    return {"x": data.ArrayLayout(signed(8), lanes), "y": data.ArrayLayout(unsigned(16), lanes)}


class Softmax(wiring.Component):
    """Softmax over vectors of ``n`` Q3.4 logits streamed ``lanes`` per beat."""

    def __init__(self, *, n: int = 64, lanes: int = 16):
        check_softmax_params(n, lanes)
        self.n, self.lanes, self.beats = n, lanes, n // lanes
        lay = softmax_layouts(lanes)
        super().__init__({"x": In(stream.Signature(lay["x"])),
                          "y": Out(stream.Signature(lay["y"]))})

    def elaborate(self, platform):
        m = Module()
        lanes, beats = self.lanes, self.beats
        xbuf = Array(Signal(data.ArrayLayout(signed(8), lanes), name=f"x{i}")
                     for i in range(beats))
        ebuf = Array(Signal(data.ArrayLayout(unsigned(EXP_BITS), lanes), name=f"e{i}")
                     for i in range(beats))
        beat = Signal(range(beats))
        last_beat = beat == beats - 1
        mx = Signal(signed(8))
        total = Signal(EXP_BITS + (self.n - 1).bit_length())  # S ≤ n·2**16
        rem = Signal(33)  # 2**32 and the remainders below it
        div = Signal(len(total) + 16)  # S << 16, shifted right each step
        quot = Signal(17)
        step = Signal(range(DIV_CYCLES))
        xrow = Signal(data.ArrayLayout(signed(8), lanes))  # the buffered beat being read
        erow = Signal(data.ArrayLayout(unsigned(EXP_BITS), lanes))
        m.d.comb += [xrow.eq(xbuf[beat]), erow.eq(ebuf[beat])]
        exps = self._exp_lookup(m, mx, xrow)

        with m.FSM():
            with m.State("LOAD"):
                # not ready in reset: also makes event-driven simulators evaluate ready/valid
                # when reset falls (Icarus leaves FSM-only comb outputs X until then)
                m.d.comb += self.x.ready.eq(~ResetSignal())
                with m.If(self.x.valid & self.x.ready):
                    m.d.sync += [xbuf[beat].eq(self.x.payload),
                                 mx.eq(self._max(m, Mux(beat == 0, -128, mx), self.x.payload)),
                                 beat.eq(Mux(last_beat, 0, beat + 1))]
                    with m.If(last_beat):
                        m.next = "EXP"
            with m.State("EXP"):
                m.d.sync += [ebuf[beat].eq(Cat(*exps)), beat.eq(Mux(last_beat, 0, beat + 1)),
                             total.eq(Mux(beat == 0, 0, total) + sum(exps))]
                with m.If(last_beat):
                    m.d.sync += [rem.eq(1 << 32), quot.eq(0), step.eq(0)]
                    m.next = "DIV"
            with m.State("DIV"):
                self._divide_step(m, rem, div, quot, step, total)
            with m.State("OUT"):
                m.d.comb += self.y.valid.eq(~ResetSignal())
                for i in range(lanes):
                    y = (erow[i] * quot + (1 << 15)) >> 16
                    m.d.comb += self.y.payload[i].eq(Mux(y > 0xFFFF, 0xFFFF, y))
                with m.If(self.y.ready):
                    m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
                    with m.If(last_beat):
                        m.next = "LOAD"
        return m

    def _max(self, m, init, row):
        best = init
        for i in range(self.lanes):  # a signal per step keeps the netlist linear, not 2**lanes
            nxt = Signal(signed(8), name=f"max{i}")
            m.d.comb += nxt.eq(Mux(row[i] > best, row[i], best))
            best = nxt
        return best

    def _exp_lookup(self, m, mx, row):
        """One comb read port of the exp table per lane, addressed by m − x ∈ 0..255."""
        m.submodules.exp_lut = lut = Memory(shape=unsigned(EXP_BITS), depth=256,
                                            init=exp_table())
        out = []
        for i in range(self.lanes):
            port = lut.read_port(domain="comb")
            m.d.comb += port.addr.eq(mx - row[i])
            out.append(port.data)
        return out

    def _divide_step(self, m, rem, div, quot, step, total):
        """Restoring division 2**32 // S: quotient bits 16..0, one per cycle."""
        d = Mux(step == 0, total << 16, div)
        fits = rem >= d
        m.d.sync += [rem.eq(Mux(fits, rem - d, rem)), div.eq(d >> 1),
                     quot.eq((quot << 1) | fits), step.eq(step + 1)]
        with m.If(step == DIV_CYCLES - 1):
            m.next = "OUT"

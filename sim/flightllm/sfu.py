"""SFU timing of MISC instructions (softmax from the RTL model; layernorm two-pass).

Softmax follows ``sim.blocks.sfu.softmax_timing`` (load, exp, divide, normalise; the RTL
block) per vector; vectors longer than that block's maximum use the same formula. RMS/layer
norm takes two passes over the vector (artifact: twice an element-wise op); element-wise ops
and SiLU one pass, ``lanes`` elements per cycle.
"""

from __future__ import annotations

from sim.blocks.sfu import DIV_CYCLES, MAX_N, softmax_timing

__all__ = ["misc_cycles", "softmax_vector_cycles"]

_PASSES = {0: 1, 1: 1, 3: 2, 4: 2, 5: 1}  # artifact MISC op codes -> passes over the vector


def softmax_vector_cycles(n: int, lanes: int) -> int:
    beats = -(-n // lanes)
    if beats * lanes <= MAX_N and beats * lanes >= lanes:
        return softmax_timing(beats * lanes, lanes).ii_cycles
    return 3 * beats + DIV_CYCLES  # same stages as the RTL block, longer vector


def misc_cycles(op: int, rows: int, cols: int, lanes: int) -> int:
    """Cycles of a MISC op over ``rows`` vectors of ``cols`` elements."""
    rows = max(1, rows)
    if op == 2:
        return rows * softmax_vector_cycles(cols, lanes)
    return _PASSES[op] * rows * -(-cols // lanes)

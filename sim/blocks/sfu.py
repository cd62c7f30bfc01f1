"""Timing of the fixed-point softmax SFU.

``rtl/sfu.py`` processes one vector of ``n`` INT8 logits arriving ``lanes`` per beat
(FlightLLM's SFU: 16 elements per cycle, two passes for softmax):

1. load: ``n / lanes`` beats, buffered while the running max is kept;
2. exp pass: ``n / lanes`` cycles, exp(x − max) from a 256-entry table, running sum;
3. reciprocal: ``DIV_CYCLES`` cycles of restoring division, 2**32 // sum (one quotient bit per
   cycle; the sum is in [2**16, n·2**16] so the quotient has 17 bits);
4. normalise pass: ``n / lanes`` output beats, e·recip rounded to UQ0.16.

The unit holds one vector at a time, so a new vector is accepted after the last output beat.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIV_CYCLES", "SoftmaxTiming", "check_softmax_params", "softmax_timing"]

DIV_CYCLES = 17  # quotient 2**32 // S with S ≥ 2**16 has at most 17 bits
MAX_N = 1024


def check_softmax_params(n: int, lanes: int) -> None:
    """Raise ValueError unless a softmax of ``n`` elements at ``lanes`` per beat is supported."""
    if not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1) or lanes > 64:
        raise ValueError(f"lanes {lanes!r}: must be a power of two in 1..64")
    if not isinstance(n, int) or n < lanes or n % lanes or n > MAX_N:
        raise ValueError(f"n {n!r}: vector length must be a multiple of lanes ({lanes}), ≤ {MAX_N}")


@dataclass(frozen=True)
class SoftmaxTiming:
    """Cycle figures of one softmax configuration."""

    n: int
    lanes: int
    latency_cycles: int  # last input beat accepted → first output beat valid
    ii_cycles: int  # first input beat of a vector → first input beat of the next
    beats: int


def softmax_timing(n: int, lanes: int) -> SoftmaxTiming:
    """Latency/II of the softmax SFU for vectors of ``n`` elements."""
    check_softmax_params(n, lanes)
    beats = n // lanes
    latency = beats + DIV_CYCLES + 1  # exp pass, division, state change to output
    ii = beats + beats + DIV_CYCLES + beats  # load, exp, divide, output
    return SoftmaxTiming(n, lanes, latency_cycles=latency, ii_cycles=ii, beats=beats)

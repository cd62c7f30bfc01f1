"""Timing of the group-wise low-bit → INT8 dequantizer (FlightLLM's dequant unit).

Pipeline of ``rtl/dequant.py``: (q − z)·s multiply (1 register), round-shift-saturate and output
register (1). One beat of ``lanes`` weights per cycle; the (scale, zero) beat of a group is taken
in the same cycle as the group's first weight beat, so group boundaries cost no bubble.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCALE_BITS", "SCALE_FRAC", "DequantTiming", "check_dequant_params", "dequant_timing"]

SCALE_BITS = 12  # scale format UQ8.4: unsigned, 12 bits, 4 fractional
SCALE_FRAC = 4
MAX_LANES = 64


def check_dequant_params(bits: int, lanes: int, group: int) -> None:
    """Raise ValueError unless (bits, lanes, group) is a supported dequantizer."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits {bits!r}: weights must be 2..8 bits wide")
    if not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
        raise ValueError(f"lanes {lanes!r}: must be 1..{MAX_LANES} weights per beat")
    if not isinstance(group, int) or group < lanes or group % lanes:
        raise ValueError(f"group {group!r}: must be a positive multiple of lanes ({lanes})")


@dataclass(frozen=True)
class DequantTiming:
    """Cycle figures of one dequantizer configuration."""

    bits: int
    lanes: int
    group: int
    latency_cycles: int  # weight beat accepted → INT8 beat valid
    ii_cycles: int  # between weight beats
    beats_per_group: int


def dequant_timing(bits: int, lanes: int, group: int) -> DequantTiming:
    """Latency/II of the dequantizer: 2 pipeline registers, one beat per cycle."""
    check_dequant_params(bits, lanes, group)
    return DequantTiming(bits, lanes, group, latency_cycles=2, ii_cycles=1,
                         beats_per_group=group // lanes)

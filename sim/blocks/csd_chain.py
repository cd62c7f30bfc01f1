"""Timing of the configurable sparse DSP chain (CSD-Chain, FlightLLM §4).

A chain of ``chain_dsps`` DSP48 slices is cut by reduction nodes into segments of ``n`` DSP48s,
one segment per output row, so a chain yields ``chain_dsps // n`` rows per pass under N:16
sparsity (one row per 16 DSP48s when dense). Each DSP48 packs two INT8 MACs that share one
weight (two activation lanes), so a pass computes ``2 * chain_dsps // n`` dot products.

Pipeline of ``rtl/csd_chain.py`` (one register per stage, one beat of 16 activations per cycle):

====================  =======================================================================
stage                 cycles
====================  =======================================================================
sparse MUX + pack     1  (pre-adder forms ``hi << 18 + lo``; FlightLLM §4.2 INT8 packing)
multiply              1  (DSP48 M register)
cascade               ``span / 2``: one PCIN add per DSP group of 2 DSP48s (FlightLLM §4.2)
overflow adjust       1  (splits the 48-bit P into the 18-bit LSP and the MSP)
reduction tree        ``log2(n / span)``: adds the spans of one segment
accumulate + output   1  (sums the K/16 beats of a dot product; emits on the last beat)
====================  =======================================================================

``span`` (``PACK_SPAN_DSP48`` capped at ``n``) is how many packed products share one 18-bit
lane before the overflow adjust: INT8·INT8 products reach 2**14 (−128·−128), so four of them
stay inside a signed 18-bit lane (max 2**17 − 1) while eight can reach 2**17 and wrap. FlightLLM
skips the adjust for chains of ≤ 8 DSP48s, which is exact only for symmetric INT8 activations;
we cut every 4 DSP48s to stay bit-exact for the full INT8 range (see docs/rtl.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "BLOCK_M",
    "LANES",
    "MAX_CHAIN_DSPS",
    "PACK_SPAN_DSP48",
    "SUPPORTED_N",
    "CsdChainTiming",
    "check_csd_params",
    "csd_chain_timing",
    "parse_pattern",
]

BLOCK_M = 16  # FlightLLM: N:M sparsity with M = 16, one FSB byte per 16×16 weight block
SUPPORTED_N = (2, 4, 8, 16)  # FlightLLM: N:16 with N ∈ {2, 4, 8, 16}; 16 = dense
LANES = 2  # two INT8 MACs packed per DSP48 (shared weight, two activations)
PACK_SPAN_DSP48 = 4  # 4 · 2**14 = 2**16 fits a signed 18-bit lane; 8 products may not
DSP_GROUP = 2  # FlightLLM: DSP groups (DG) of 2 DSP48s
MAX_CHAIN_DSPS = 256  # sanity bound; a VPU chain in FlightLLM is 16 DSP48s


def parse_pattern(pattern: str | int) -> int:
    """``"2:16"`` → 2, ``"dense"`` → 16, ``8`` → 8; raises ValueError on anything else."""
    if isinstance(pattern, int):
        n = pattern
    else:
        text = str(pattern).strip().lower()
        if text == "dense":
            return BLOCK_M
        head, sep, tail = text.partition(":")
        if not sep or tail != str(BLOCK_M) or not head.isdigit():
            raise ValueError(
                f"pattern {pattern!r}: expected 'N:16' with N in {SUPPORTED_N} or 'dense'"
            )
        n = int(head)
    if n not in SUPPORTED_N:
        raise ValueError(f"pattern N={n}: the CSD-Chain supports N:16 with N in {SUPPORTED_N}")
    return n


def check_csd_params(chain_dsps: int, n: int) -> None:
    """Raise ValueError unless a chain of ``chain_dsps`` DSP48s can run N:16 sparsity."""
    if isinstance(chain_dsps, bool) or not isinstance(chain_dsps, int):
        raise ValueError(f"chain length {chain_dsps!r}: must be an int number of DSP48s")
    if chain_dsps <= 0 or chain_dsps > MAX_CHAIN_DSPS:
        raise ValueError(f"chain length {chain_dsps}: must be in 1..{MAX_CHAIN_DSPS} DSP48s")
    if chain_dsps % DSP_GROUP:
        raise ValueError(f"chain length {chain_dsps}: must be a multiple of the DSP group (2)")
    if n not in SUPPORTED_N:
        raise ValueError(f"pattern N={n}: the CSD-Chain supports N:16 with N in {SUPPORTED_N}")
    if chain_dsps % n:
        raise ValueError(
            f"pattern {n}:16 needs segments of {n} DSP48s; a chain of {chain_dsps} "
            f"cannot support it (chain length must be a multiple of {n})"
        )


@dataclass(frozen=True)
class CsdChainTiming:
    """Cycle figures of one CSD-Chain configuration (all in clock cycles)."""

    chain_dsps: int
    n: int
    k: int
    latency_cycles: int  # last beat accepted → result valid
    ii_cycles: int  # between passes (dot-product sets) with a backlogged input
    beat_ii_cycles: int  # between beats of 16 activations
    rows_per_pass: int  # reduction-node outputs per chain
    dots_per_pass: int  # rows × 2 packed lanes
    dsp48_count: int
    macs_per_cycle: int  # useful (non-zero) MACs per cycle

    @property
    def cycles_per_dot(self) -> Fraction:
        """Steady-state cycles per dot product of length K (each lane counts one)."""
        return Fraction(self.ii_cycles, self.dots_per_pass)

    @property
    def cycles_per_row(self) -> Fraction:
        """Steady-state cycles per output row (one weight row against both lanes)."""
        return Fraction(self.ii_cycles, self.rows_per_pass)


def csd_chain_timing(chain_dsps: int, n: int, k: int) -> CsdChainTiming:
    """Latency and initiation interval of a CSD-Chain of ``chain_dsps`` DSP48s under N:16.

    ``k`` is the dot-product length (a multiple of 16): a pass streams ``k // 16`` beats.
    """
    check_csd_params(chain_dsps, n)
    if k <= 0 or k % BLOCK_M:
        raise ValueError(f"K={k}: must be a positive multiple of {BLOCK_M}")
    span = min(n, PACK_SPAN_DSP48)
    cascade = span // DSP_GROUP
    tree = (n // span).bit_length() - 1  # log2 of the spans per segment
    latency = 1 + 1 + cascade + 1 + tree + 1
    beats = k // BLOCK_M
    rows = chain_dsps // n
    return CsdChainTiming(
        chain_dsps=chain_dsps,
        n=n,
        k=k,
        latency_cycles=latency,
        ii_cycles=beats,
        beat_ii_cycles=1,
        rows_per_pass=rows,
        dots_per_pass=LANES * rows,
        dsp48_count=chain_dsps,
        macs_per_cycle=LANES * chain_dsps,
    )

"""MPE timing of MV and MM instructions, built on the CSD-Chain (``sim.blocks.csd_chain``).

The MPE is made of VPUs; a VPU is one CSD-Chain of ``VPU_DSPS`` DSP48s. Under N:16 sparsity a
chain yields ``16 / N`` output rows per pass of ``K / 16`` beats (``csd_chain_timing``); each
DSP48 packs two INT8 MACs sharing one weight, i.e. two tokens. MV (decode, one token) uses one
lane of ``mv_macs_per_cycle / 16`` chains (an MV of up to ``mv_rows`` tokens, a design knob,
feeds each weight beat to ``mv_rows`` x as many chain lanes); MM (prefill) uses both lanes of
``mm_macs_per_cycle / 32`` chains, ``mm_rows / 2`` token pairs x the remaining chains as
output slots. An instruction costs its passes x the chain's II plus one pipeline fill
(the chain latency). An MV also cannot run faster than the A buffer delivers its matrix:
``A_MV_BYTES_PER_CHANNEL`` per weight channel per cycle (exactly 1024 INT4 weights per cycle
on 8 channels, the MV rate; INT8 or weights with packed 4-bit indices take two cycles per
1024).
"""

from __future__ import annotations

from functools import lru_cache

from sim.blocks.csd_chain import LANES, csd_chain_timing

__all__ = ["A_MV_BYTES_PER_CHANNEL", "VPU_DSPS", "mm_cycles", "mv_cycles"]

VPU_DSPS = 16  # a FlightLLM VPU chain is 16 DSP48s (sim/blocks/csd_chain.py, MAX_CHAIN_DSPS note)
A_MV_BYTES_PER_CHANNEL = 64  # artifact vhk158_config.yaml A_BUFFER_MV_PER_CHANNEL_WIDTH_B


@lru_cache(maxsize=4096)
def _chain(n: int, k: int) -> tuple[int, int, int]:
    t = csd_chain_timing(VPU_DSPS, n, k)
    return t.rows_per_pass, t.ii_cycles, t.latency_cycles


def mv_cycles(cols: int, k: int, n: int, macs_per_cycle: int, a_bytes: int = 0,
              a_bytes_per_cycle: int = 0, rows: int = 1, mv_rows: int = 1) -> int:
    """``rows`` tokens x a (k x cols) weight tile at N:16 on ``macs_per_cycle / 16`` chains.

    ``a_bytes``: the tile's bytes in the A buffer, read at ``a_bytes_per_cycle`` (0: no bound).
    ``mv_rows`` (``FlightLLMSpec.mv_rows``, 1 as published): token rows that share one read
    of the tile. Each weight beat from A feeds up to ``mv_rows`` rows at once, on ``mv_rows``
    x the chains (the second DSP48 lane and the chains the MM path adds; the spec allows
    ``mv_rows <= mm_macs_per_cycle // mv_macs_per_cycle``, so these are DSPs the core has), so
    a group of up to ``mv_rows`` rows costs what one row costs: the same passes, the same A
    read. More rows than ``mv_rows`` take one such group each, in one pipeline fill.
    """
    groups = -(-max(1, rows) // mv_rows)
    chains = max(1, macs_per_cycle // VPU_DSPS)
    per, ii, lat = _chain(n, k)
    passes = -(-cols // (chains * per))
    if a_bytes > 0 and a_bytes_per_cycle > 0:
        return groups * max(passes * ii, -(-a_bytes // a_bytes_per_cycle)) + lat
    return groups * passes * ii + lat


def mm_cycles(rows: int, cols: int, k: int, n: int, macs_per_cycle: int, mm_rows: int) -> int:
    """``rows`` tokens x a (k x cols) tile: token pairs share a weight in each DSP48."""
    chains = max(1, macs_per_cycle // (VPU_DSPS * LANES))
    # token pairs per pass: a tile's, or every chain's when there are fewer chains than pairs
    # (the tile's rows then take several passes)
    pairs = max(1, min(mm_rows // LANES, chains))
    slots = max(1, chains // pairs)             # output columns per pass per token pair
    per_pass, ii, lat = _chain(n, k)
    col_passes = -(-cols // (slots * per_pass))
    row_passes = -(-rows // (pairs * LANES))
    return col_passes * row_passes * ii + lat

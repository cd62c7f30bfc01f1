"""Cycle-timing functions of the RTL blocks (latency and initiation interval).

Pure Python: no torch, amaranth or cocotb. Each function mirrors the pipeline of the matching
component in ``rtl/`` and the cocotb tests assert that the measured cycles equal these numbers.
"""

from __future__ import annotations

from sim.blocks.csd_chain import CsdChainTiming, csd_chain_timing
from sim.blocks.dequant import DequantTiming, dequant_timing
from sim.blocks.sfu import SoftmaxTiming, softmax_timing
from sim.blocks.verifier import VerifierTiming, verifier_timing

__all__ = [
    "CsdChainTiming",
    "DequantTiming",
    "SoftmaxTiming",
    "VerifierTiming",
    "csd_chain_timing",
    "dequant_timing",
    "softmax_timing",
    "verifier_timing",
]

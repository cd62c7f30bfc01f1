"""HBM pseudo-channel timing of one LD/ST instruction (FlightLLM artifact HBM model).

A transfer occupies one pseudo-channel: the request latency plus the bytes at the channel's
peak bandwidth times the achievable efficiency, 0.7 when the data sits in the channel the port
is attached to and 0.35 when it crosses the HBM switch to another core's channels (artifact
HBM_BW_SAME/CROSS_CHANNEL_EFFICIENCY).
"""

from __future__ import annotations

import math

__all__ = ["transfer_cycles"]


def transfer_cycles(nbytes: int, *, clock_hz: float, channel_bytes_per_s: float, eff: float,
                    latency_cycles: int) -> int:
    """Cycles one pseudo-channel is busy moving ``nbytes`` (latency + bytes / bandwidth)."""
    if nbytes <= 0:
        return latency_cycles
    return latency_cycles + math.ceil(nbytes * clock_hz / (channel_bytes_per_s * eff))

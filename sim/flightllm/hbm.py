"""HBM pseudo-channel timing of one LD/ST instruction (FlightLLM artifact HBM model + refresh).

A transfer occupies one pseudo-channel: the request latency plus the bytes at the channel's
peak bandwidth times the achievable efficiency, 0.7 when the data sits in the channel the port
is attached to and 0.35 when it crosses the HBM switch to another core's channels (artifact
HBM_BW_SAME/CROSS_CHANNEL_EFFICIENCY).

Refresh (where the preset gives tREFI and tRFC): the DRAM holds an all-bank refresh of tRFC
every tREFI, during which the pseudo-channel moves no data. A channel busy for ``w`` cycles
then meets a refresh every ``tREFI`` of its time and waits ``tRFC`` each time: it finishes
after ``w * tREFI / (tREFI - tRFC)`` cycles, the throughput loss PG276 ("Raw Throughput
Evaluation") computes for the U280's stacks. Charging the expected stall on each transfer
(rather than at absolute refresh instants) keeps every layer's timing identical, so the
periodic extrapolation (``sim.flightllm.periodic``) stays exact; refreshes that fall while a
channel idles cost nothing in either view. The refresh only stretches channel time: a
compute-bound pass does not see it.

SLR crossings (where the preset places the HBM interface on one SLR, as on the U280): a core
``h`` SLR boundaries away adds, per request, ``2 h`` crossings (address out, data back) of
``slr_crossing_cycles`` each to the request latency.
"""

from __future__ import annotations

import math

__all__ = ["refresh_stretch", "slr_hops", "transfer_cycles"]


def refresh_stretch(busy_cycles: int, *, refresh_interval_ns: float, refresh_ns: float) -> int:
    """Cycles a channel needs for ``busy_cycles`` of transfer once refreshes are added."""
    if busy_cycles <= 0 or refresh_interval_ns <= 0 or refresh_ns <= 0:
        return busy_cycles
    return math.ceil(busy_cycles * refresh_interval_ns / (refresh_interval_ns - refresh_ns))


def slr_hops(core: int, hbm_slr: int) -> int:
    """SLR boundaries between ``core`` (one per SLR) and the SLR holding the HBM interface."""
    return abs(core - hbm_slr) if hbm_slr >= 0 else 0


def transfer_cycles(nbytes: int, *, clock_hz: float, channel_bytes_per_s: float, eff: float,
                    latency_cycles: int, refresh_interval_ns: float = 0.0,
                    refresh_ns: float = 0.0) -> int:
    """Cycles one pseudo-channel is busy moving ``nbytes`` (latency + bytes / bandwidth,
    stretched by the refreshes that fall in that time)."""
    busy = latency_cycles
    if nbytes > 0:
        busy += math.ceil(nbytes * clock_hz / (channel_bytes_per_s * eff))
    return refresh_stretch(busy, refresh_interval_ns=refresh_interval_ns, refresh_ns=refresh_ns)

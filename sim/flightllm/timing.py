"""Per-instruction cycles of a program on a FlightLLM spec (LD/ST: HBM; MM/MV: MPE; MISC: SFU).

Every instruction time comes from a unit model (``hbm``, ``mpe``, ``sfu``); there is no global
correction factor. SYS takes 1 cycle once all cores arrived (artifact), plus the SLR
crossings of the barrier where the preset places the HBM and scheduler on one SLR.
"""

from __future__ import annotations

import numpy as np

from mapping.flightllm.builder import Arch
from mapping.flightllm.isa import Program, Queue
from sim.flightllm.hbm import slr_hops, transfer_cycles
from sim.flightllm.mpe import A_MV_BYTES_PER_CHANNEL, mm_cycles, mv_cycles
from sim.flightllm.sfu import misc_cycles
from sim.spec import FlightLLMSpec

__all__ = ["ISSUE_CYCLES", "SYS_CYCLES", "arch_of", "fill_cycles", "ports", "sys_cycles"]

SYS_CYCLES = 1    # artifact: SYS 1 cycle
ISSUE_CYCLES = 1  # LD queue: one instruction dispatched to a channel port per cycle


def arch_of(spec: FlightLLMSpec, *, on_chip_decode: bool = True, fuse: bool = True,
            index_in_weights: bool = True) -> Arch:
    """The code generator's view of ``spec``."""
    return Arch(cores=spec.cores, channels_per_core=spec.hbm_channels // spec.cores,
                weight_channels=spec.weight_channels, a_buffer_bytes=int(spec.a_buffer_bytes),
                b_buffer_bytes=int(spec.b_buffer_bytes),
                global_buffer_bytes=int(spec.global_buffer_bytes),
                meta_buffer_bytes=int(spec.meta_buffer_bytes),
                fsb_buffer_bytes=int(spec.fsb_buffer_bytes), mv_tile_cols=spec.mv_tile_cols,
                mm_tile_rows=spec.mm_rows, mm_tile_cols=spec.mm_tile_cols,
                mv_rows=spec.mv_rows,
                on_chip_decode=on_chip_decode, fuse=fuse, index_in_weights=index_in_weights)


def sys_cycles(spec: FlightLLMSpec) -> int:
    """SYS once every core arrived: 1 cycle (artifact) plus the barrier's round trip over the
    SLR boundaries between the farthest core and the task scheduler, placed with the HBM
    interface (FlightLLM: the scheduler and memory controller are top-level blocks)."""
    hops = max(slr_hops(c, spec.hbm_slr) for c in range(spec.cores))
    return SYS_CYCLES + 2 * hops * spec.slr_crossing_cycles


def _cycles(spec: FlightLLMSpec, r: np.void, core: int) -> int:
    q = int(r["queue"])
    if q in (Queue.LD, Queue.ST):
        eff = spec.hbm_eff_cross_channel if r["cross"] else spec.hbm_eff_same_channel
        # a request crosses each SLR boundary twice (address out, data or response back)
        lat = spec.hbm_latency_cycles + \
            2 * slr_hops(core, spec.hbm_slr) * spec.slr_crossing_cycles
        return transfer_cycles(int(r["nbytes"]), clock_hz=spec.clock_hz,
                               channel_bytes_per_s=spec.hbm_channel_bytes_per_s, eff=eff,
                               latency_cycles=lat,
                               refresh_interval_ns=spec.hbm_refresh_interval_ns,
                               refresh_ns=spec.hbm_refresh_ns)
    cols, pad = int(r["cols"]), int(r["pad"])  # a padded tile computes its full width
    if q == Queue.MV:  # the padded columns stream the A buffer like the real ones
        nbytes = -(-int(r["nbytes"]) * (cols + pad) // cols) if cols else 0
        return mv_cycles(cols + pad, int(r["k"]), int(r["n"]), spec.mv_macs_per_cycle,
                         nbytes, A_MV_BYTES_PER_CHANNEL * spec.weight_channels,
                         rows=int(r["rows"]), mv_rows=spec.mv_rows)
    if q == Queue.MM:
        return mm_cycles(int(r["rows"]), cols + pad, int(r["k"]), int(r["n"]),
                         spec.mm_macs_per_cycle, spec.mm_rows)
    if q == Queue.MISC:
        return misc_cycles(int(r["op"]), int(r["rows"]), int(r["cols"]),
                           spec.sfu_elems_per_cycle)
    return sys_cycles(spec)


def _packed(arr: np.ndarray, fields: list[str]) -> list[np.ndarray]:
    """``fields`` of ``arr`` packed into as few int64 words as their ranges allow (each field
    offset by its minimum, in just enough bits): equal words <=> equal fields."""
    words: list[np.ndarray] = []
    cur, bits = None, 0
    for f in fields:
        v = arr[f].astype(np.int64)
        lo = int(v.min())
        w = (int(v.max()) - lo).bit_length()
        if lo:
            v -= lo
        if cur is None or bits + w > 62:
            if cur is not None:
                words.append(cur)
            cur, bits = v, w
        else:
            cur = (cur << w) | v
            bits += w
    words.append(cur)
    return words


def fill_cycles(program: Program, spec: FlightLLMSpec) -> Program:
    """Set ``cycles`` of every instruction (memoised over identical instruction fields)."""
    key = ["queue", "op", "cross", "nbytes", "rows", "cols", "pad", "k", "n"]
    for core, arr in enumerate(program.cores):
        if not len(arr):
            continue
        cols = np.stack(_packed(arr, key))
        order = np.lexsort(cols)               # groups of identical fields, without sorting
        srt = cols[:, order]                   # a structured array (slow)
        new = np.ones(len(arr), bool)
        new[1:] = np.any(srt[:, 1:] != srt[:, :-1], axis=0)
        group = np.cumsum(new) - 1
        firsts = order[new]
        cyc = np.array([_cycles(spec, arr[i], core) for i in firsts], dtype=np.int64)
        out = np.empty(len(arr), np.int64)
        out[order] = cyc[group]
        arr["cycles"] = out
    return program


def ports(program: Program, nchan: int) -> tuple[list[np.ndarray], int]:
    """Channel port of every LD per core, and the number of ports.

    A same-channel LD uses its pseudo-channel's port. A cross-channel LD (another core's data,
    through the HBM switch) gets a port of its own per (core, channel): switch traffic is not
    modelled as contending with the owner's loads (it is a few KB per layer), which also keeps
    every port private to one core so transfers are served in dispatch order.
    """
    out = []
    for c, arr in enumerate(program.cores):
        ch = arr["channel"].astype(np.int64)
        out.append(np.where(arr["cross"] == 1, nchan + c * nchan + ch, ch))
    return out, nchan * (1 + len(program.cores))

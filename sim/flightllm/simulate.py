"""FlightLLM cycle-level simulation of a workload: compress, compile per length bucket, run.

Decode pass i after a prefill of P runs the program compiled for context ceil16(P + i + 1)
(artifact length-adaptive compilation); each bucket's program is simulated once and reused.
Prefill runs the program for ceil128(P) tokens.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mapping.flightllm.builder import Arch
from mapping.flightllm.codegen import generate, refuse_moe
from mapping.flightllm.compression import CompressionConfig, apply_compression
from mapping.flightllm.decode import check_batch_buffers
from mapping.flightllm.isa import Program, Queue, storage_bytes
from models.errors import UserError
from models.graph import Graph
from models.workload import Workload
from sim.flightllm.periodic import FIRST, identical_layers, truncate_layers
from sim.flightllm.power import EnergyTally
from sim.flightllm.resources import check_device
from sim.flightllm.timing import arch_of, fill_cycles
from sim.result import SimResult, memory_fit, result_from_times
from sim.spec import FlightLLMSpec

__all__ = ["DECODE_BUCKET", "PREFILL_BUCKET", "PassResult", "check_fits", "clear_programs",
           "compressed", "energy_fields", "program_for", "simulate", "simulate_graph"]

PREFILL_BUCKET = 128  # artifact: prefill lengths rounded up to multiples of 128
DECODE_BUCKET = 16    # artifact: decode contexts rounded up to multiples of 16

# Compiled programs kept per process, keyed on (compressed graph, Arch). A program depends only
# on the graph and the code generator's view of the hardware (``arch_of``: cores, channels,
# buffers, tiles), not on the clock, the MPE's MACs per cycle or the HBM's speed, which only
# set instruction cycles (``fill_cycles``, applied to a copy). A sweep over those knobs (or a
# second pass over the same bucket) compiles once and simulates every point.
# LLMCOSIM_PROGRAM_CACHE_MB sets the budget (0: compile every time).
class _Key:
    """(graph, Arch) with its hash computed once: an OrderedDict hashes a key again on every
    move, pop and values() step, and a graph's hash walks all its nodes."""

    __slots__ = ("arch", "g", "h")

    def __init__(self, g: Graph, arch: Arch):
        self.g, self.arch, self.h = g, arch, hash((g, arch))

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.h == other.h and self.arch == other.arch \
            and (self.g is other.g or self.g == other.g)


_PROGRAMS: OrderedDict[_Key, Program] = OrderedDict()
_KEPT_BYTES = [0]   # instruction bytes in _PROGRAMS (kept as a sum: no pass over the keys)


def _budget_bytes() -> int:
    raw = os.environ.get("LLMCOSIM_PROGRAM_CACHE_MB", "256")
    try:
        return max(0, int(float(raw) * 2**20))
    except ValueError:
        raise UserError(f"LLMCOSIM_PROGRAM_CACHE_MB must be a number of MiB (0 turns the "
                        f"program cache off), got {raw!r}") from None


def clear_programs() -> None:
    """Forget the compiled programs (and memoised compressed graphs) of this process."""
    _PROGRAMS.clear()
    _KEPT_BYTES[0] = 0
    compressed.cache_clear()


@lru_cache(maxsize=64)
def compressed(g: Graph, cfg: CompressionConfig | None) -> Graph:
    """``apply_compression(g, cfg)``, memoised (graphs and configs are immutable)."""
    return apply_compression(g, cfg)


def _nbytes(p: Program) -> int:
    return sum(a.nbytes for a in p.cores)


def program_for(g: Graph, arch: Arch) -> Program:
    """``generate(g, arch)``, compiled once per process while it fits the budget; the caller
    gets its own copy of the instruction arrays (``fill_cycles`` writes into them)."""
    budget = _budget_bytes()
    key = _Key(g, arch)
    prog = _PROGRAMS.get(key) if budget else None
    if prog is None:
        prog = generate(g, arch)
        if not budget or _nbytes(prog) > budget // 2:
            return prog
        _PROGRAMS[key] = prog
        _KEPT_BYTES[0] += _nbytes(prog)
        while _KEPT_BYTES[0] > budget:
            _KEPT_BYTES[0] -= _nbytes(_PROGRAMS.popitem(last=False)[1])
    else:
        _PROGRAMS.move_to_end(key)
    return Program([a.copy() for a in prog.cores], list(prog.nodes), dict(prog.meta))


@dataclass(frozen=True)
class PassResult:
    cycles: int
    seconds: float
    counts: dict[str, int]
    busy: dict[str, float]          # per queue: busy cycles / total, mean over cores
    hbm_bytes: int
    dsp_utilisation: float          # MACs done / MAC slots of every core's MPE (MM capacity)
    dsp_dense_utilisation: float    # the same with the dense MACs N:M sparsity skipped
    program: Program | None         # None: extrapolated (simulate_graph periodic)
    start: list[np.ndarray]
    finish: list[np.ndarray]


def simulate_graph(spec: FlightLLMSpec, g: Graph, *, on_chip_decode: bool = True,
                   fuse: bool = True, index_in_weights: bool = True,
                   periodic: bool = False, weights_on_chip: bool = False) -> PassResult:
    """One forward pass of an already compressed graph.

    ``periodic``: a decoder of identical layers is simulated as three short programs and
    extrapolated (``sim.flightllm.periodic``: checked on the spot, equal to the whole pass
    cycle for cycle); the result then carries no program (``program`` None).
    ``weights_on_chip``: a decode/verify pass whose linear weights sit in URAM (a draft with
    ``draft_weights = "uram"``: ``sim.flightllm.draft.weights_on_chip``).
    """
    kw = {"on_chip_decode": on_chip_decode, "fuse": fuse, "index_in_weights": index_in_weights}
    if weights_on_chip:
        kw["weights_on_chip"] = True
    layers = identical_layers(g) if periodic else 0
    if layers:
        runs = [_raw(spec, truncate_layers(g, k), kw)[0] for k in (FIRST, FIRST + 1, FIRST + 2)]
        step = {k: runs[1][k] - runs[0][k] for k in runs[0]}
        if all(runs[2][k] - runs[1][k] == v for k, v in step.items()):
            raw = {k: runs[0][k] + (layers - FIRST) * v for k, v in step.items()}
            return _result(spec, raw, None, [], [])
    raw, (prog, start, finish) = _raw(spec, g, kw)
    return _result(spec, raw, prog, start, finish)


def _raw(spec: FlightLLMSpec, g: Graph, kw: dict) -> tuple[dict[str, int], tuple]:
    """Cycles and the additive counts of a pass (what ``_result`` divides), and its run."""
    kw = dict(kw)
    onchip = kw.pop("weights_on_chip", False)
    prog = fill_cycles(program_for(g, arch_of(spec, **kw)), spec)
    from sim.flightllm.engine_fast import run_fast  # numba: imported when first simulating

    masks = [np.zeros(len(a), bool) for a in prog.cores]
    if onchip:
        from sim.flightllm.draft import weights_on_chip

        masks = weights_on_chip(prog, g)
    start, finish = run_fast(prog, spec.hbm_channels)
    raw = {"cycles": int(max((f.max() for f in finish if len(f)), default=0))}  # a core may idle
    for q in Queue:
        raw[f"busy_{q.name}"] = sum(int(a["cycles"][a["queue"] == q].sum()) for a in prog.cores)
    raw |= {f"count_{k}": v for k, v in prog.counts().items()}
    raw["hbm"] = sum(int(a["nbytes"][((a["queue"] == Queue.LD) | (a["queue"] == Queue.ST))
                                     & ~m].sum()) for a, m in zip(prog.cores, masks, strict=True))
    raw["kept"], raw["dense"] = _macs(prog)
    return raw, (prog, start, finish)


def _result(spec: FlightLLMSpec, raw: dict[str, int], prog: Program | None,
            start: list[np.ndarray], finish: list[np.ndarray]) -> PassResult:
    total = raw["cycles"]
    busy = {}
    for q in Queue:
        lanes = spec.weight_channels if q == Queue.LD else 1  # LD: per pseudo-channel
        busy[q.name] = raw[f"busy_{q.name}"] / spec.cores / lanes / total if total else 0.0
    counts = {q.name: raw[f"count_{q.name}"] for q in Queue}
    slots = spec.cores * spec.mm_macs_per_cycle * total or 1
    return PassResult(total, total / spec.clock_hz, counts, busy, raw["hbm"],
                      raw["kept"] / slots, raw["dense"] / slots, prog, start, finish)


def _macs(prog: Program) -> tuple[int, int]:
    """MACs the MPE performs (kept weights) and their dense equivalent, over all cores."""
    kept = dense = 0
    for a in prog.cores:
        mpe = a[(a["queue"] == Queue.MM) | (a["queue"] == Queue.MV)]
        rows = np.maximum(mpe["rows"], 1).astype(np.int64)  # MV: 1, or up to mv_rows
        d = rows * mpe["cols"].astype(np.int64) * mpe["k"].astype(np.int64)
        dense += int(d.sum())
        kept += int((d * mpe["n"].astype(np.int64) // 16).sum())
    return kept, dense


def check_fits(spec: FlightLLMSpec, w: Workload) -> None:
    """UserError unless the compressed weights and the KV cache fit in the HBM: the program
    addresses them there (no host offload). Names the first weight past the capacity."""
    memory, fits, _ = memory_fit(spec, w)
    if fits:
        return
    cap = spec.mem_capacity_bytes
    graph = w.prefill or w.decode_first
    assert graph is not None
    total = 0
    for p in graph.params:
        total += p.bytes
        if total > cap:
            raise UserError(
                f"{w.model} does not fit in {spec.name}'s {cap / 1e9:.2f} GB of HBM: the "
                f"weights alone pass it at {p.name} ({total / 1e9:.2f} GB so far, "
                f"{memory / 1e9:.2f} GB with the KV cache); compress more (lower weight bits "
                "or N:M sparsity in the --sparsity file) or pick a smaller model")
    raise UserError(
        f"{w.model} does not fit in {spec.name}'s {cap / 1e9:.2f} GB of HBM: weights "
        f"{total / 1e9:.2f} GB + KV cache at context {w.prefill_tokens + w.decode_tokens} "
        f"{(memory - total) / 1e9:.2f} GB; shorten --prefill/--decode or lower kv_bits")


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def _decode_buckets(w: Workload, bucket: int) -> list[int]:
    """The context each decode pass's program is compiled for, pass by pass."""
    if not w.decode_tokens:
        return []
    if w.decode_first.context == w.decode_last.context:  # one pass: its own context
        return [w.decode_first.context]
    return [_ceil(c + 1, bucket) - 1 for c in w.decode_contexts]


def simulate(spec: FlightLLMSpec, w: Workload, cfg: CompressionConfig | None = None,
             trace: str | None = None, decode_bucket: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Prefill + decode of ``w`` (raw traced graphs) on ``spec``.

    ``trace``: write a Perfetto trace of the prefill pass and the first decode pass there.
    ``decode_bucket`` (default ``DECODE_BUCKET``): decode step i after a prefill of p runs the
    program compiled for ceil(p + i + 1, bucket) keys (length-adaptive compilation). The
    prefill runs at its own length: its MM tiles are 128 rows either way, so the bucket's
    padded program differs only in the SFU's rows.
    ``progress(done, total)`` is called after each program is simulated (the prefill's and one
    per decode bucket), the unit of the simulator's time.
    """
    decode_bucket = DECODE_BUCKET if decode_bucket is None else decode_bucket
    if decode_bucket < 1:
        raise UserError(f"--decode-bucket must be at least 1, got {decode_bucket}")
    for g in (w.prefill, w.decode_first):
        if g is not None:
            refuse_moe(g)
    w = w.map(lambda g: compressed(g, cfg))
    check_device(spec)   # DSP / BRAM / URAM of the design within the FPGA's
    check_fits(spec, w)
    if w.decode_tokens and w.batch > 1:   # before the prefill: the batch must fit its buffers
        check_batch_buffers(w.decode_first, arch_of(spec))
    prefill_s, extra, counts = 0.0, {}, {}
    pre_e, dec_e = _tallies(spec, cfg)
    traced: list[tuple[str, PassResult]] = []
    buckets = _decode_buckets(w, decode_bucket)
    total = (w.prefill is not None) + len(set(buckets))
    tick = progress or (lambda done, total: None)
    tick(0, total)
    if w.prefill is not None:
        p = simulate_graph(spec, w.prefill, periodic=not trace)  # a trace needs the program
        tick(1, total)
        prefill_s = p.seconds
        pre_e.add(p)
        pre_e.close(p.seconds)
        traced.append((f"prefill {w.prefill_tokens}", p))
        extra["prefill_busy"] = p.busy
        extra["prefill_dsp_utilisation"] = p.dsp_utilisation
        extra["prefill_dsp_dense_utilisation"] = p.dsp_dense_utilisation
        counts.update({f"prefill_{k}": v for k, v in p.counts.items()})
    decode_s = 0.0
    if buckets:
        done: dict[int, PassResult] = {}  # each bucket's program is simulated once
        for c in buckets:
            if c not in done:   # a traced pass needs its program: simulated whole
                done[c] = simulate_graph(spec, w.decode_at(c),
                                         periodic=not (trace and c == buckets[0]))
                tick((w.prefill is not None) + len(done), total)
        res = [done[c] for c in buckets]
        decode_s = sum(r.seconds for r in res)
        for r in res:
            dec_e.add(r)
        dec_e.close(decode_s)
        last = res[-1]
        traced.append((f"decode (context {buckets[0]})", res[0]))
        extra["decode_busy"] = last.busy
        extra["decode_dsp_utilisation"] = last.dsp_utilisation
        extra["decode_dsp_dense_utilisation"] = last.dsp_dense_utilisation
        extra["decode_hbm_bytes_per_token"] = last.hbm_bytes
        extra["decode_bw_utilisation"] = last.hbm_bytes / last.seconds / spec.hbm_bytes_per_s
        extra["decode_instructions"] = last.counts
        extra["decode_instruction_bytes"] = storage_bytes(last.counts)
        extra["decode_buckets"] = len(set(buckets))
    notes = [v for k, v in (w.prefill.meta if w.prefill is not None else ())
             if k == "attention_note"]
    if trace:
        from sim.flightllm.trace import write_trace

        write_trace(trace, traced, spec)
        notes.append(f"trace of {', '.join(t for t, _ in traced)} written to {trace}")
    energy = energy_fields(spec, pre_e, dec_e, decode_s, extra)
    return result_from_times(spec, w, "cycle", prefill_s, decode_s, notes=tuple(notes),
                             counts=counts, extra=extra, **energy)


def _tallies(spec: FlightLLMSpec, cfg: CompressionConfig | None,
             speculation: bool = False) -> tuple[EnergyTally, EnergyTally]:
    """Prefill and decode energy tallies of the power model (``sim/flightllm/power.py``) for
    the design at the config's weight bits (the default config's 4 without one)."""
    bits = cfg.weight_bits if cfg is not None else 4
    return (EnergyTally(spec, weight_bits=bits, speculation=speculation),
            EnergyTally(spec, weight_bits=bits, speculation=speculation))


def energy_fields(spec: FlightLLMSpec, pre: EnergyTally, dec: EnergyTally, decode_s: float,
                  extra: dict) -> dict[str, float]:
    """``energy_j``/``decode_energy_j`` for ``result_from_times`` from the power model, and
    its breakdown in ``extra``; empty (board power x time) when the model has no resources."""
    if pre.total is None or dec.total is None:
        extra["power_model"] = f"board_power_w x time ({spec.board_power_w:g} W): no resource " \
            "estimate for this design"
        return {}
    extra["power_model"] = "sim/flightllm/power.py"
    extra["prefill_energy_j"] = pre.total
    extra["decode_energy_breakdown_j"] = dict(dec.parts)
    if decode_s > 0:
        extra["decode_power_w"] = dec.total / decode_s
    return {"energy_j": pre.total + dec.total, "decode_energy_j": dec.total}

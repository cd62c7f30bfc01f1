"""Per-iteration cost table: the device simulators at a few shapes, interpolated.

One serving iteration runs the decode tokens of ``B`` sequences (contexts c_i) and prefill
chunks (``C`` tokens over ``c0`` cached ones) through the model together. Its cost is split
the way Vidur splits operators (Agrawal et al., MLSys 2024):

- **dense** ops (linear layers, norms, activations, embeddings, KV append, ...) see the
  iteration's T = B + sum(C) tokens as one matrix. Their cost is the time of a prefill pass of
  T tokens minus that pass's attention ops (``ATTN_KINDS``); a decode pass at batch B has the
  same dense costs as a prefill of B tokens (same GEMM shapes: checked on the calibrated GPU
  model, to 0.01%).
- **decode attention** depends on the batch and the cache lengths: the attention ops of a
  decode pass at batch B and context c, on a (batch, context) grid, bilinear in between; the
  batch's mean context stands for its contexts (exact at the roofline, where attention cost
  is affine in the context, see ``models.graph.interpolate``).
- **chunk attention**: a chunk of C queries over c0 + C keys costs C/(c0+C) of the attention
  of a prefill of c0 + C tokens (the traced eager attention computes every query row over all
  keys of the pass, so cost is proportional to rows at a fixed key count).

Every number comes from ``sim.registry.run`` on traced graphs (``models.cache.get_graph``);
energy is each run's energy split in proportion to time.

A device that runs prefill and decode as **separate programs** (FlightLLM: prefill in the
MPE's MM mode, decode in MV mode, one compiled program per pass) cannot share the dense ops
between them, and its cycle-level simulator times whole passes only. Its table
(``separate``) holds whole passes: a prefill of T tokens, and a decode pass at batch B and
context c; an iteration runs its decode pass, then each prompt as a prefill pass (the
scheduler runs prompts whole there: ``SchedulerConfig.whole_prompts``). The general rule for
a chunk of C tokens over c0 cached, C/(c0 + C) of the prefill of c0 + C tokens, is then used
with c0 = 0 only, where it is exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from models.errors import UserError
from models.graph import Graph, Phase, interpolate
from models.workload import Workload
from sim.registry import run
from sim.result import memory_fit
from sim.spec import HardwareSpec

__all__ = ["ATTN_KINDS", "PassTable", "build_table", "default_sources", "token_grid"]

ATTN_KINDS = ("matmul", "attention", "softmax")  # breakdown_ms kinds that scale with context

PrefillFn = Callable[[int], Graph]          # tokens -> prefill graph (batch 1)
DecodeFn = Callable[[int, int], Graph]      # (batch, context) -> decode graph
Runner = Callable[[HardwareSpec, Workload, str], Any]   # (spec, workload, fidelity) -> SimResult


def token_grid(top: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, ... up to and including ``top``: 1.5x steps keep the linear
    interpolation of the convex roofline curve within a few percent."""
    grid, k = [1, 2, 3], 4
    while k < top:
        grid += [k, k * 3 // 2]
        k *= 2
    return sorted({g for g in grid if g < top} | {top})


@dataclass(frozen=True)
class PassTable:
    hw: str
    fidelity: str
    tokens: np.ndarray        # prefill grid (tokens)
    dense_s: np.ndarray       # dense ops of a T-token pass
    dense_j: np.ndarray
    pre_attn_s: np.ndarray    # attention ops of a T-token prefill
    pre_attn_j: np.ndarray
    batches: tuple[int, ...]  # decode grid
    contexts: tuple[int, ...]
    dec_attn_s: np.ndarray    # (batches, contexts): attention ops of a decode pass
    dec_attn_j: np.ndarray
    weight_bytes: float
    kv_bytes_per_token: float
    has_energy: bool
    # whole passes (see the module docstring): dense_* are whole prefills, pre_attn_* zero,
    # dec_attn_* whole decode passes
    separate: bool = False

    def prefill_s(self, tokens: int) -> float:
        """Time of a whole prefill of ``tokens`` in one iteration (the table's own sum)."""
        return self._tok(self.dense_s, tokens) + self._tok(self.pre_attn_s, tokens)

    def _tok(self, arr: np.ndarray, t: float) -> float:
        return float(np.interp(t, self.tokens, arr))

    @cached_property
    def _lut(self) -> tuple[list[float], ...]:
        """The token curves at every whole token count (list indexing is ~50x faster than
        np.interp on one scalar, and the scheduler asks once per iteration)."""
        t = np.arange(int(self.tokens[-1]) + 1, dtype=float)
        return tuple(np.interp(t, self.tokens, a).tolist()
                     for a in (self.dense_s, self.dense_j, self.pre_attn_s, self.pre_attn_j))

    @cached_property
    def _dec_rows(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Decode attention per whole batch size (linear between grid batches): (s, J) rows
        over the context grid."""
        bs = np.array(self.batches, dtype=float)
        out = []
        for arr in (self.dec_attn_s, self.dec_attn_j):
            rows = [np.array([np.interp(b, bs, arr[:, j]) for j in range(arr.shape[1])])
                    for b in range(self.batches[-1] + 1)]
            out.append(rows)
        return out[0], out[1]

    def _dec(self, rows: list[np.ndarray], batch: int, ctx: float) -> float:
        """Linear in the context between grid points, extrapolated past the last one."""
        cs = self.contexts
        j = min(max(bisect.bisect_right(cs, ctx) - 1, 0), len(cs) - 2)
        row = rows[batch]
        return float(row[j] + (row[j + 1] - row[j]) * (ctx - cs[j]) / (cs[j + 1] - cs[j]))

    def iteration(self, n_decode: int, ctx_sum: float, chunks: list[tuple[int, int]],
                  rows: int = 1) -> tuple[float, float]:
        """(seconds, joules) of one iteration: ``n_decode`` decoding sequences whose caches
        hold ``ctx_sum`` tokens in all, each with ``rows`` new tokens (1; γ + 1 in a verify
        table, ``sim.serving.speculative``), plus prefill ``chunks`` of (tokens, cached
        before)."""
        dense_s, dense_j, pre_s, pre_j = self._lut
        if self.separate:   # the decode pass, then each chunk as its own prefill pass
            s = j = 0.0
            pre_s, pre_j = dense_s, dense_j
        else:
            t = n_decode * rows + sum(c for c, _ in chunks)
            s, j = dense_s[t], dense_j[t]
        if n_decode:
            ctx = ctx_sum / n_decode
            rows_s, rows_j = self._dec_rows
            s += self._dec(rows_s, n_decode, ctx)
            j += self._dec(rows_j, n_decode, ctx)
        for c, c0 in chunks:
            share = c / (c0 + c)
            s += share * pre_s[c0 + c]
            j += share * pre_j[c0 + c]
        return s, j


def _split(res, phase: str) -> tuple[float, float, float, float]:
    """(dense s, attention s, dense J, attention J) of one SimResult's phase."""
    kinds = res.breakdown_ms.get(phase, {})
    total = res.prefill_ms if phase == "prefill" else res.decode_ms_per_token
    if not kinds and total > 0:   # all of it would count as dense: decode blind to context
        raise UserError(f"--fidelity {res.fidelity} on {res.hw} gives whole-pass times with no "
                        "per-op split, which a shared-dense serving table needs; build it "
                        "with separate passes (serve does so at --fidelity cycle)")
    attn = sum(v for k, v in kinds.items() if k in ATTN_KINDS) / 1e3
    if phase == "decode":
        attn /= max(res.decode, 1)
    total /= 1e3
    energy = res.energy_j or 0.0
    return total - attn, attn, energy * (total - attn) / total, energy * attn / total


def _whole(res, phase: str) -> tuple[float, float, float, float]:
    """(pass s, 0, pass J, 0): a whole pass of a separate-pass device (no attention share)."""
    total = (res.prefill_ms if phase == "prefill" else res.decode_ms_per_token) / 1e3
    energy = (res.energy_j or 0.0) / (max(res.decode, 1) if phase == "decode" else 1)
    return total, 0.0, energy, 0.0   # the table's runs are one phase each


def build_table(spec: HardwareSpec, fidelity: str, prefill: PrefillFn, decode: DecodeFn, *,
                max_tokens: int, max_batch: int, max_context: int,
                graph_pass: Callable[[Graph], Graph] | None = None,
                size_pass: Callable[[Graph], Graph] | None = None,
                separate: bool = False, runner: Runner = run) -> PassTable:
    """Run the simulator on the grid shapes: prefill of every grid token count up to
    ``max_tokens``; decode at every power-of-two batch up to ``max_batch`` and five contexts
    up to ``max_context`` (two traces per batch, the rest interpolated).

    ``graph_pass`` maps each graph before the simulator sees it (storage: the roofline's
    quantization); ``size_pass`` (default ``graph_pass``) before the weight and KV bytes are
    counted, for a simulator that compresses the graphs itself. ``separate``: whole passes,
    as the module docstring says. ``runner``: the simulator (default ``sim.registry.run``;
    HADES's draft engine for a draft table, ``sim.hades.simulate.simulate_on_draft_engine``)."""
    gp = graph_pass or (lambda g: g)
    sp = size_pass or gp
    split = _whole if separate else _split
    tokens = token_grid(max_tokens)
    rows, energy = [], True
    for t in tokens:
        g = gp(prefill(t))
        res = runner(spec, Workload(g.model, 1, t, 0, g, None, None), fidelity)
        energy &= res.energy_j is not None
        rows.append(split(res, "prefill"))
    weight_bytes = float(sum(p.bytes for p in sp(prefill(tokens[-1])).params))  # as stored
    pre = np.array(rows)
    batches = sorted({1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch}
                     | {max_batch})
    top = max(max_context, 2)
    contexts = sorted({1, *(max(2, top * k // 4) for k in range(1, 5))})
    dec, kv_per_token, dec_energy = _decode_grid(spec, fidelity, decode, gp, sp, separate,
                                                 batches, contexts, runner)
    energy &= dec_energy
    return PassTable(spec.name, fidelity, np.array(tokens, dtype=float), pre[:, 0], pre[:, 2],
                     pre[:, 1], pre[:, 3], tuple(batches), tuple(contexts), dec[:, :, 0],
                     dec[:, :, 1], weight_bytes, kv_per_token, energy, separate)


def _decode_grid(spec: HardwareSpec, fidelity: str, decode: DecodeFn, gp: Callable,
                 sp: Callable, separate: bool, batches: list[int],
                 contexts: list[int], runner: Runner = run) -> tuple[np.ndarray, float, bool]:
    """(batches x contexts x (s, J), KV bytes per token, every run has energy): the decode
    passes' attention (shared-dense table) or whole passes (separate).

    A separate-pass simulator refuses a pass whose KV cache does not fit the memory (FlightLLM
    at cycle level). The scheduler never runs one (its KV budget keeps b sequences' mean
    context under budget / b), but the grid's corner (largest batch, longest context) may
    be one: such a point is extrapolated from the batch's last two that fit (a decode pass is
    affine in the context, ``models.graph.interpolate``)."""
    dec = np.zeros((len(batches), len(contexts), 2))
    kv_per_token, energy = 0.0, True
    for bi, b in enumerate(batches):
        g0, g1 = decode(b, contexts[0]), decode(b, contexts[-1])
        kv_per_token = kv_per_token or float(sp(g0).totals().kv_write_bytes) / b
        fitted = []
        for ci, c in enumerate(contexts):
            g = gp(g0 if c == contexts[0] else g1 if c == contexts[-1] else interpolate(g0, g1, c))
            stored = sp(g) if separate else g
            if separate and not memory_fit(spec, Workload(g.model, b, c, 1, None, stored,
                                                          stored))[1]:
                continue
            res = runner(spec, Workload(g.model, b, c, 1, None, g, g), fidelity)
            energy &= res.energy_j is not None
            d_s, attn_s, d_j, attn_j = (_whole if separate else _split)(res, "decode")
            dec[bi, ci] = (d_s, d_j) if separate else (attn_s, attn_j)
            fitted.append(ci)
        if len(fitted) < len(contexts):
            _extrapolate(spec, b, contexts, dec[bi], fitted)
    return dec, kv_per_token, energy


def _extrapolate(spec: HardwareSpec, batch: int, contexts: list[int], row: np.ndarray,
                 fitted: list[int]) -> None:
    """Fill the contexts past the last fitted one on the line through the last two."""
    if len(fitted) < 2:
        raise UserError(f"{spec.name}: a decode batch of {batch} does not fit its memory even "
                        f"at context {contexts[min(1, len(contexts) - 1)]}; lower --max-batch")
    i, j = fitted[-2], fitted[-1]
    slope = (row[j] - row[i]) / (contexts[j] - contexts[i])
    for k in range(j + 1, len(contexts)):
        row[k] = row[j] + slope * (contexts[k] - contexts[j])


def default_sources(model, dtype: str = "float16") -> tuple[PrefillFn, DecodeFn]:
    """Graph sources from the trace cache (``models.cache.get_graph``)."""
    from models.cache import get_graph

    return (lambda t: get_graph(model, Phase.PREFILL, tokens=t, dtype=dtype),
            lambda b, c: get_graph(model, Phase.DECODE, context=c, batch=b, dtype=dtype))

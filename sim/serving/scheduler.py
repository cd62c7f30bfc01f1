"""Continuous batching with chunked prefill and KV-cache admission control.

Iteration-level scheduling as in Orca (Yu et al., OSDI 2022) and vLLM, with Sarathi-style
chunked prefill (Agrawal et al., OSDI 2024): every iteration first gives one token to each
running request that is decoding, then fills the rest of a token budget with prompt chunks of
admitted requests in arrival order. A waiting request is admitted (first come, first served)
only when the batch has a free slot and its whole KV cache (prompt + output tokens) fits in
the budget left by those already admitted; reserving the whole footprint up front means no
request is ever preempted.

A plain deterministic loop, not SimPy: the only events are iteration ends and arrivals while
idle, so the next event time is always known; a SimPy process per request would add a heap
and generator switches per token for no modelling gain and make a 1,000-request run slower.

Times: a request's first output token appears at the end of the iteration that runs its last
prompt chunk (TTFT = that end - arrival); each later iteration it is in adds one token. A
request that arrives while an iteration runs waits for that iteration to end (the "one-iteration
alignment"); one that arrives while the device is idle starts at its arrival time.

With speculative decoding (``sim.serving.speculative``) a decoding request counts γ + 1
tokens of the budget (adaptive: 1 when planned, its drafts then take what is left), emits
1 + its accepted drafts per iteration, and reserves γ more KV rows (the verify's rows before
rollback).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.errors import UserError
from sim.serving.passes import PassTable
from sim.serving.requests import Request

if TYPE_CHECKING:
    from sim.serving.speculative import SpecServing

__all__ = ["RequestRecord", "SchedulerConfig", "ServeRun", "simulate_serving"]


@dataclass(frozen=True)
class SchedulerConfig:
    token_budget: int = 512     # tokens per iteration (Sarathi-Serve's smallest studied budget)
    max_batch: int = 64         # running requests at once
    kv_budget_tokens: int = 0   # KV-cache capacity in tokens
    # prompts run whole, never chunked (a device whose compiled prefill has no cached
    # context: FlightLLM); an iteration takes whole prompts while they fit what the budget
    # leaves, and its first prompt even past the budget
    whole_prompts: bool = False

    def check(self) -> None:
        if self.token_budget < 1:
            raise UserError(f"--token-budget must be >= 1, got {self.token_budget}")
        if self.max_batch < 1:
            raise UserError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.max_batch > self.token_budget:
            raise UserError(f"--max-batch {self.max_batch} exceeds --token-budget "
                            f"{self.token_budget}: decodes alone could not fit an iteration")


@dataclass
class RequestRecord:
    req: Request
    admitted_s: float = float("nan")    # start of its first iteration
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    prefilled: int = 0                  # prompt tokens in the cache
    generated: int = 0                  # output tokens produced

    @property
    def context(self) -> int:
        return self.prefilled + max(self.generated - 1, 0)


@dataclass
class ServeRun:
    records: list[RequestRecord]
    iter_start: np.ndarray     # per iteration
    iter_s: np.ndarray
    iter_j: np.ndarray
    iter_tokens: np.ndarray    # tokens processed
    iter_batch: np.ndarray     # requests in the iteration
    kv_used: np.ndarray        # tokens in the cache at the iteration's end
    kv_reserved: np.ndarray    # tokens reserved by admitted requests
    kv_budget: int
    busy_energy_j: float
    speculation: dict | None = None   # SpecStats.summary() of a speculative run


def _admit(waiting: deque, running: list, cfg: SchedulerConfig, reserved: int,
           now: float, extra: int = 0) -> int:
    while waiting and len(running) < cfg.max_batch:
        rec = waiting[0]
        need = rec.req.prompt_tokens + rec.req.output_tokens + extra
        if reserved + need > cfg.kv_budget_tokens:
            break                          # head of line waits: FCFS, no skipping
        waiting.popleft()
        rec.admitted_s = now
        running.append(rec)
        reserved += need
    return reserved


def _plan(running: list, budget: int, whole: bool = False,
          rows: int = 1) -> tuple[list, float, list]:
    """Decoders (and their summed contexts), then prompt chunks within the token budget
    (``whole``: whole prompts only, see ``SchedulerConfig.whole_prompts``; ``rows``: budget
    tokens per decoder, γ + 1 when speculating)."""
    decoders, ctx_sum, prefilling = [], 0, []
    for r in running:
        if r.prefilled == r.req.prompt_tokens:
            decoders.append(r)
            ctx_sum += r.prefilled + r.generated - 1   # RequestRecord.context, inlined
        else:
            prefilling.append(r)
    left, chunks = budget - len(decoders) * rows, []
    for r in prefilling:
        if left <= 0:
            break
        need = r.req.prompt_tokens - r.prefilled
        if whole and chunks and need > left:
            break                          # FCFS: it waits for the next iteration
        c = need if whole else min(need, left)
        chunks.append((r, c))
        left -= c
    return decoders, float(ctx_sum), chunks


def simulate_serving(table: PassTable, requests: list[Request], cfg: SchedulerConfig,
                     spec: SpecServing | None = None) -> ServeRun:
    """Run ``requests`` (sorted by arrival) to completion on one device (``spec``: with
    speculative decoding, see the module docstring)."""
    cfg.check()
    rows, extra = (spec.rows, spec.gamma) if spec is not None else (1, 0)
    if spec is not None:
        spec.reset()
        if cfg.max_batch * rows > cfg.token_budget:
            raise UserError(f"--max-batch {cfg.max_batch} x (gamma + 1 = {rows}) verify tokens "
                            f"exceeds --token-budget {cfg.token_budget}: lower --max-batch or "
                            "--gamma, or raise --token-budget")
    for r in requests:
        if r.prompt_tokens + r.output_tokens + extra > cfg.kv_budget_tokens:
            raise UserError(f"request {r.rid} needs {r.prompt_tokens + r.output_tokens + extra} "
                            f"KV tokens but {table.hw}'s KV-cache budget is "
                            f"{cfg.kv_budget_tokens} tokens")
    records = [RequestRecord(r) for r in requests]
    waiting: deque[RequestRecord] = deque()
    running: list[RequestRecord] = []
    log: list[tuple[float, ...]] = []
    now, nxt, reserved, used, energy = 0.0, 0, 0, 0, 0.0
    while nxt < len(records) or waiting or running:
        if not waiting and not running and records[nxt].req.arrival_s > now:
            now = records[nxt].req.arrival_s          # idle: jump to the next arrival
        while nxt < len(records) and records[nxt].req.arrival_s <= now:
            waiting.append(records[nxt])
            nxt += 1
        reserved = _admit(waiting, running, cfg, reserved, now, extra)
        decoders, ctx_sum, chunks = _plan(running, cfg.token_budget, cfg.whole_prompts, rows)
        planned = [(c, r.prefilled) for r, c in chunks]
        if spec is not None:
            spare = cfg.token_budget - len(decoders) * rows - sum(c for _, c in chunks)
            dt, dj = spec.iteration(len(decoders), ctx_sum, planned, spare)
        else:
            dt, dj = table.iteration(len(decoders), ctx_sum, planned)
        start, now = now, now + dt
        energy += dj
        emitted = 0
        for r in decoders:
            k = spec.emitted(r.req.output_tokens - r.generated) if spec is not None else 1
            r.generated += k
            emitted += k
        for r, c in chunks:
            r.prefilled += c
            if r.prefilled == r.req.prompt_tokens:
                r.generated, r.first_token_s = 1, now
        used += emitted + sum(c for _, c in chunks)
        for r in [r for r in running if r.generated == r.req.output_tokens]:
            r.finish_s = now
            running.remove(r)
            reserved -= r.req.prompt_tokens + r.req.output_tokens + extra
            used -= r.prefilled + r.generated - 1  # the last token is never written back
        drafted = spec.k if spec is not None else 0
        log.append((start, dt, dj, len(decoders) * (1 + drafted) + sum(c for _, c in chunks),
                    len(decoders) + len(chunks), used, reserved))
    arr = np.array(log, dtype=float).reshape(-1, 7)
    return ServeRun(records, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3].astype(int),
                    arr[:, 4].astype(int), arr[:, 5], arr[:, 6], cfg.kv_budget_tokens, energy,
                    spec.stats.summary() if spec is not None else None)

"""Serving metrics of a run: throughput, TTFT/TPOT percentiles, goodput, queueing, Little's law.

Definitions (all over the run's span, from the first arrival to the last completion):
- throughput: completed requests and output tokens per second of span;
- TTFT: first output token time - arrival; TPOT: (completion - first token) / (outputs - 1),
  over requests with more than one output token;
- goodput: requests per second of span that meet every SLO (DistServe's definition,
  Zhong et al., OSDI 2024);
- queueing delay: start of a request's first iteration - arrival;
- Little's law: L (time-average number of requests in the system, integrated from the
  arrival/completion step function) against lambda x W (completions per second of span times
  the mean time in system); they agree when every request is accounted for once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.errors import UserError
from sim.serving.scheduler import ServeRun

__all__ = ["SLO_KEYS", "littles_law", "parse_slo", "summarize"]

SLO_KEYS = ("ttft", "tpot")
_TIME_UNITS = {"ms": 1e-3, "s": 1.0, "us": 1e-6}


def parse_slo(text: str | None) -> dict[str, float]:
    """``ttft=500ms,tpot=50ms`` -> {"ttft": 0.5, "tpot": 0.05} (seconds)."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if key not in SLO_KEYS or not eq:
            raise UserError(f"--slo {part.strip()!r}: unknown SLO key {key!r}; allowed: "
                            f"{', '.join(SLO_KEYS)} (e.g. ttft=500ms,tpot=50ms)")
        val = val.strip().lower()
        unit = next((u for u in ("ms", "us", "s") if val.endswith(u)), "s")
        try:
            sec = float(val[: len(val) - len(unit)] if val.endswith(unit) else val) \
                * _TIME_UNITS[unit]
        except ValueError:
            raise UserError(f"--slo {key}={val!r}: expected a time such as 500ms or 0.5s") \
                from None
        if not sec > 0:
            raise UserError(f"--slo {key}={val!r}: must be > 0")
        out[key] = sec
    return out


def _pct(x: np.ndarray) -> dict[str, float | None]:
    if not len(x):
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p = np.percentile(x, [50, 90, 99])
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "mean": float(x.mean())}


def littles_law(arrival: np.ndarray, finish: np.ndarray) -> dict[str, float]:
    """L from the in-system step function; lambda and W from the request times."""
    t0, t1 = float(arrival.min()), float(finish.max())
    times = np.concatenate([arrival, finish])
    steps = np.concatenate([np.ones_like(arrival), -np.ones_like(finish)])
    order = np.lexsort((-steps, times))           # at equal times, arrivals first
    t, n = times[order], np.cumsum(steps[order])
    area = float(np.sum(n[:-1] * np.diff(t)))     # integral of N(t) dt
    span = t1 - t0
    lam, w = len(arrival) / span, float(np.mean(finish - arrival))
    return {"L": area / span, "lambda_per_s": lam, "W_s": w, "lambda_W": lam * w}


def summarize(run: ServeRun, slo: dict[str, float]) -> dict[str, Any]:
    """Every metric of a run as a JSON-ready dict (times in seconds)."""
    recs = run.records
    arrival = np.array([r.req.arrival_s for r in recs])
    first = np.array([r.first_token_s for r in recs])
    finish = np.array([r.finish_s for r in recs])
    outs = np.array([r.req.output_tokens for r in recs])
    ttft = first - arrival
    multi = outs > 1
    tpot = np.where(multi, (finish - first) / np.maximum(outs - 1, 1), 0.0)
    queue = np.array([r.admitted_s for r in recs]) - arrival
    span = float(finish.max() - arrival.min()) or 1e-12
    ok = np.ones(len(recs), dtype=bool)
    if "ttft" in slo:
        ok &= ttft <= slo["ttft"]
    if "tpot" in slo:
        ok &= tpot <= slo["tpot"]
    return {
        "requests": len(recs), "span_s": span,
        "throughput_req_per_s": len(recs) / span,
        "throughput_tokens_per_s": float(outs.sum()) / span,
        "ttft_s": _pct(ttft), "tpot_s": _pct(tpot[multi]), "queue_s": _pct(queue),
        "slo_s": dict(slo), "slo_attainment": float(ok.mean()),
        "goodput_req_per_s": float(ok.sum()) / span,
        "kv_budget_tokens": run.kv_budget,
        "kv_peak_fraction": float(run.kv_used.max() / run.kv_budget) if run.kv_budget else 0.0,
        "kv_mean_fraction": float(np.sum(run.kv_used * run.iter_s) / max(run.iter_s.sum(),
                                                                          1e-12) / run.kv_budget),
        "busy_fraction": float(run.iter_s.sum() / span),
        "iterations": len(run.iter_s),
        "mean_batch": float(np.sum(run.iter_batch * run.iter_s) / max(run.iter_s.sum(), 1e-12)),
        "energy_per_request_j": run.busy_energy_j / len(recs) if run.busy_energy_j else None,
        "littles_law": littles_law(arrival, finish),
    }

"""Serving points of a sweep: a [serving] table turns a design point into an ``llmcosim serve``
run, and these metrics become columns (NULL for other points). With a [speculation] table
too, the point serves speculatively (``sim.serving.speculative``; chains only).

``goodput`` and the throughputs are maximised by ``sweep show --pareto``, times minimised;
``--where`` filters on them like any column (``--where "ttft_p99_ms < 500"``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SERVING_METRICS", "serve_point"]

SERVING_METRICS = ("goodput", "slo_attainment", "serve_req_per_s", "serve_tokens_per_s",
                   "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms",
                   "tpot_p99_ms", "queue_p99_ms", "kv_peak", "energy_per_request_j")


def _requests(point: Any) -> list:
    from sim.serving.requests import load_lengths, load_trace, poisson_requests

    if str(point.requests).endswith((".jsonl", ".json")):
        return load_trace(point.requests, point.num_requests)
    lengths = load_lengths(point.requests)
    return poisson_requests(point.rate, point.num_requests, *lengths, point.requests_seed)


def _speculation(point: Any, entry: Any) -> Any:
    """A [speculation] table on a serving point: speculative serving (chains only)."""
    if not point.speculative:
        return None
    from models.errors import UserError
    from sim.serving.device import Speculation

    if point.tree_parents is not None:   # [[points]] may set one; the tables are refused
        raise UserError("speculation.tree with [serving]: serving speculates with chains "
                        "only (speculation.gamma); drop the tree or the [serving] table")
    return Speculation.from_flags(entry, draft=point.draft, gamma=point.gamma,
                                  alpha=point.alpha, seed=point.requests_seed or 0,
                                  adaptive=bool(point.adaptive))


def serve_point(point: Any, spec: Any) -> dict[str, Any]:
    """The point's serving metrics (a flat dict of SERVING_METRICS plus the full summary)."""
    from models.zoo import entry_from_config_file, get_model
    from sim.serving.device import serve_device
    from sim.serving.metrics import parse_slo
    from sim.serving.requests import check_lengths
    from sim.serving.scheduler import SchedulerConfig

    entry = entry_from_config_file(point.model) if point.model.endswith(".json") \
        else get_model(point.model)
    reqs = _requests(point)
    check_lengths(reqs, entry.name, entry.max_positions)
    fidelity = None if point.fidelity == "best" else point.fidelity
    cfg = SchedulerConfig(point.token_budget, point.batch)
    m = serve_device(spec, entry, reqs, cfg, parse_slo(point.slo), fidelity,
                     speculation=_speculation(point, entry)).metrics

    def ms(d: dict[str, Any], k: str) -> float | None:
        return None if d[k] is None else d[k] * 1e3

    flat = {"goodput": m["goodput_req_per_s"], "slo_attainment": m["slo_attainment"],
            "serve_req_per_s": m["throughput_req_per_s"],
            "serve_tokens_per_s": m["throughput_tokens_per_s"],
            "queue_p99_ms": ms(m["queue_s"], "p99"), "kv_peak": m["kv_peak_fraction"],
            "energy_per_request_j": m["energy_per_request_j"]}
    for name in ("ttft", "tpot"):
        for p in ("p50", "p90", "p99"):
            flat[f"{name}_{p}_ms"] = ms(m[f"{name}_s"], p)
    return {"serving": flat, "summary": {k: v for k, v in m.items()}}

"""Whole-model steps: the IR graph of a measured step, and the model's prediction of it.

A measured decode/verify step (q new tokens over a cache of c, graph-replayed or eager) is
predicted from the traced graph of the same model, phase and shape: the sum of its kernels'
modelled times. These predictions are never fitted; they are the held-out check that per-op
curves add up to a whole model.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

from models.graph import Graph, interpolate
from sim.gpu.model import GPUCalibration, kernels, step_time_s

__all__ = ["predict_prefill", "predict_step", "step_graph", "step_host_calls"]

_TRACED_CONTEXTS = (128, 1024)  # two traces per (model, q); other contexts are interpolated


@cache
def _traced(model: str, q: int, context: int, batch: int = 1) -> Graph:
    from models.cache import get_graph  # traces (imports torch) only on a cache miss

    if q == 1:
        return get_graph(model, "decode", context=context, batch=batch)
    return get_graph(model, "verify", tokens=q, context=context, batch=batch)


def step_graph(model: str, q: int, context: int, batch: int = 1) -> Graph:
    """The IR graph of one step of ``q`` tokens over a cache of ``context`` (``batch``
    sequences)."""
    lo, hi = _TRACED_CONTEXTS
    if context in (lo, hi):
        return _traced(model, q, context, batch)
    return interpolate(_traced(model, q, lo, batch), _traced(model, q, hi, batch), context)


def step_host_calls(r: dict[str, Any]) -> int:
    """Torch calls of the measured step in eager HF (``models.host_calls``)."""
    s = r["shape"]
    return int(dict(step_graph(r["model"], s["q"], s["context"]).meta)["eager_torch_calls"])


def predict_step(r: dict[str, Any], c: GPUCalibration, bw: float, peak: float,
                 l2: float = 0.0, sm_hz: float = 0.0) -> float:
    """Model seconds of a measured whole-model step record (its ``mode`` picks the stack)."""
    s = r["shape"]
    stack = "graph" if r["mode"] == "cuda_graph" else "hf-eager"
    k = kernels(step_graph(r["model"], s["q"], s["context"], s.get("batch", 1)), stack)
    return step_time_s(k, c, bw, peak, stack, l2, sm_hz)[0]


@cache
def _prefill_graph(model: str, tokens: int) -> Graph:
    from models.cache import get_graph

    return get_graph(model, "prefill", tokens=tokens)


def predict_prefill(r: dict[str, Any], c: GPUCalibration, bw: float, peak: float,
                    l2: float = 0.0, sm_hz: float = 0.0) -> float:
    """Model seconds of a measured eager whole-model prefill record. Records without
    ``use_cache`` (files before 2026-11-27 05:20 UTC) ran prefill without a KV cache, so their
    host work is the graph's torch calls less those its cache updates make
    (``models.host_calls``)."""
    g = _prefill_graph(r["model"], r["shape"]["tokens"])
    k = kernels(g, "hf-eager")
    if not r.get("use_cache"):
        k = replace(k, host_calls=k.host_calls
                    - int(dict(g.meta).get("eager_torch_calls_in_cache", 0)))
    return step_time_s(k, c, bw, peak, "hf-eager", l2, sm_hz)[0]

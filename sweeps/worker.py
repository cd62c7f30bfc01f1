"""Evaluate design points: resolve the spec, load the workload once per process, simulate.

Runs in worker processes (local pool or Ray tasks). Workloads (traced graphs) and compressed
variants are kept per process, so a worker loads each model once, not once per point.
Simulation results are cached on disk per *program* (resolved spec numbers + workload +
compression + fidelity + code version), so sweeps over unrelated knobs, or a second sweep
over the same designs, reuse them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
import traceback
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from sim.version import code_version
from sweeps.resources import resource_columns
from sweeps.serving import SERVING_METRICS
from sweeps.spec import Point

__all__ = ["EXTRA_METRICS", "METRICS", "code_version", "env_of", "evaluate", "evaluate_chunk",
           "resolve_spec", "result_cache_dir"]

# SimResult fields stored as columns (the rest goes to the JSON `result` column).
METRICS = ("prefill_ms", "decode_ms_per_token", "decode_tokens_per_s", "total_ms", "energy_j",
           "tokens_per_j", "fits_memory", "memory_bytes")
# SimResult.extra entries stored as columns (speculation; NULL for other points).
EXTRA_METRICS = ("mean_accepted", "tokens_per_pass", "speedup", "baseline_tokens_per_s",
                 "draft_target_cost_ratio")
_WORKLOADS: OrderedDict[tuple, Any] = OrderedDict()   # per process; small LRU
_MAX_WORKLOADS = 16


def result_cache_dir() -> Path:
    root = os.environ.get("LLMCOSIM_CACHE") or Path.home() / ".cache" / "llmcosim"
    return Path(root) / "sweep-results"


@lru_cache(maxsize=64)
def _preset(name: str) -> Any:
    from sim.spec import load_preset

    return load_preset(name)


def resolve_spec(point: Point) -> Any:
    """The preset with the point's overrides, validated (SpecError if impossible)."""
    from sim.spec import validate

    spec = _preset(point.hw)
    if not (point.overrides or point.derived):
        return spec
    spec = dataclasses.replace(spec, **dict(point.overrides))
    if point.derived:
        from sweeps.expr import parse_expr

        env = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
               if "range" in f.metadata}
        types = {f.name: int if f.type in ("int", int) else float
                 for f in dataclasses.fields(spec)}
        spec = dataclasses.replace(spec, **{
            k: types[k](parse_expr(text, f"hardware.derived.{k}").evaluate(env))
            for k, text in point.derived})
    where = ", ".join(f"{k}={v:g}" if not isinstance(v, str) else f"{k}={v}"
                      for k, v in point.overrides)
    return validate(spec, f"{point.hw} with {where}" if where else point.hw)


def env_of(point: Point, spec: Any) -> dict[str, Any]:
    """Names a constraint may read: inputs, numeric spec fields and derived quantities."""
    # an unset input (no speculation, bits "none") is left out: a rule naming it does not
    # apply to the point, as a rule naming a field its preset lacks
    env = {k: v for k, v in point.inputs().items() if v is not None}
    for f in dataclasses.fields(spec):
        if "range" in f.metadata or (f.type in ("str", str)
                                     and f.name not in ("name", "description")):
            env[f.name] = getattr(spec, f.name)
    env.update(kind=spec.kind, peak_ops_per_s=spec.peak_ops_per_s(point.dtype),
               mem_bytes_per_s=spec.mem_bytes_per_s, mem_capacity_bytes=spec.mem_capacity_bytes,
               power_w=spec.power_w)
    # FPGA resources (sweeps/resources.py): spec-only, so rules on them filter before simulating
    env.update({k: v for k, v in resource_columns(spec, point)[0].items() if v is not None})
    return env


def _remember(key: tuple, make: Any) -> Any:
    """The per-process LRU of workloads: ``make()`` on a miss."""
    if key in _WORKLOADS:
        _WORKLOADS.move_to_end(key)
        return _WORKLOADS[key]
    w = _WORKLOADS[key] = make()
    while len(_WORKLOADS) > _MAX_WORKLOADS:
        _WORKLOADS.popitem(last=False)
    return w


def _flightllm_cycle(point: Point, spec: Any) -> bool:
    """FlightLLM at its cycle-level simulator (also what ``best`` picks there, speculation
    included: chains at any batch, trees at batch 1, ``sim.flightllm.speculate``)."""
    return spec.kind == "flightllm" and point.fidelity in ("cycle", "best")


def _workload(point: Point, spec: Any) -> Any:
    """The point's workload: traced once per process, then compressed / given its schedule.

    Graph passes: weight/KV quantisation, or the FlightLLM compression config of
    ``sparsity`` (which sets the bits itself); FlightLLM's cycle simulator applies its
    config itself, so there the graphs stay raw (see :func:`_simulate`).
    """
    base_key = (point.model, point.model_digest, point.prefill, point.decode, point.batch,
                point.dtype)
    if point.speculative:
        base_key += ("speculative", point.draft, point.gamma, point.tree_parents)
    sparse = point.sparsity is not None and not _flightllm_cycle(point, spec)
    key = (*base_key, point.weight_bits, point.kv_bits,
           (point.sparsity, point.sparsity_digest, point.keep) if sparse else None)
    base = _remember((*base_key, None, None, None), lambda: _load(point))

    def compressed() -> Any:
        if sparse:
            from mapping.flightllm.compression import apply_compression

            cfg = _sparsity_config(point)
            return base.map(lambda g: apply_compression(g, cfg))
        if point.sparsity is not None or (point.weight_bits is None and point.kv_bits is None):
            return base   # FlightLLM cycle + a config: raw graphs, the config sets the bits
        from mapping.compression import quantize

        return base.map(lambda g: quantize(g, weight_bits=point.weight_bits,
                                           kv_bits=point.kv_bits))

    w = _remember(key, compressed)
    if point.speculative:   # the graphs do not depend on the acceptance: set it per point
        w = dataclasses.replace(w, config=_spec_config(point))
    return w


def _spec_config(point: Point) -> Any:
    from mapping.acceptance import IIDAcceptance, PositionalAcceptance
    from mapping.speculation import SpecConfig

    alphas = tuple(float(a) for a in (point.alpha or "0.8").split(","))
    acc = IIDAcceptance(alphas[0]) if len(alphas) == 1 else PositionalAcceptance(alphas)
    gamma = point.gamma or getattr(acc, "gamma", 4)   # as `llmcosim simulate --alpha a,b,c`
    return SpecConfig(gamma=gamma, tree=point.tree_parents, acceptance=acc)


def _sparsity_config(point: Point) -> Any:
    return _compression_config(point.sparsity, point.sparsity_digest, point.keep,
                               point.weight_bits, point.kv_bits)


@lru_cache(maxsize=32)
def _compression_config(path: str | None, digest: str, keep: float | None,
                        weight_bits: int | None, kv_bits: int | None) -> Any:
    """The FlightLLM compression config of ``point.sparsity``, with its overrides.

    ``keep`` replaces the kept fraction (or N:16 pattern) of every [[linear]] rule that sets
    one (rules that only set bits or a bias stay as they are); ``weight_bits`` the config's
    weight bits; ``kv_bits`` must be the config's.
    """
    from mapping.flightllm.compression import load_config, override_config

    assert path is not None
    names = {k: f"compression.{k}" for k in ("keep", "weight_bits", "kv_bits")}
    return override_config(load_config(path), keep=keep, weight_bits=weight_bits,
                           kv_bits=kv_bits, names=names)


def _simulate(point: Point, spec: Any) -> Any:
    """Run the point through ``sim.registry.run``, the one simulator interface."""
    from models.errors import UserError
    from sim.registry import BEST, best_fidelity, run

    w = _workload(point, spec)
    fid = best_fidelity(spec.kind, point.speculative) if point.fidelity == BEST \
        else point.fidelity
    if point.speculative and fid not in ("roofline", "calibrated") and \
            spec.kind not in ("hades", "flightllm"):
        raise UserError(f"speculation at fidelity {fid!r} is modelled on HADES and FlightLLM "
                        f"(cycle) and GPUs (calibrated); {point.hw} ({spec.kind}) needs "
                        "fidelity = \"roofline\" (or \"best\")")
    if point.sparsity is not None and _flightllm_cycle(point, spec):
        return run(spec, w, fid, compression=_sparsity_config(point))
    return run(spec, w, fid)


def _serving_result(point: Point, spec: Any) -> dict[str, Any]:
    """A serving point's row: SimResult's columns empty, the serving metrics filled."""
    from sweeps.serving import serve_point

    out = serve_point(point, spec)
    return {**dict.fromkeys(METRICS), "fits_memory": True, "counts": {}, "breakdown_ms": {},
            "extra": {"serving": out["summary"]}, "notes": [], "serving": out["serving"]}


def _load(point: Point) -> Any:
    from models.cache import get_workload

    if point.speculative:
        from mapping.spec_workload import build_speculative_workload
        from sim.hades.speculate import DEFAULT_DRAFT

        if point.model.endswith(".workload.json"):
            from models.errors import UserError

            raise UserError(f"speculation needs a zoo model or config.json to trace the verify "
                            f"passes; {point.model} holds prefill/decode graphs only")
        return build_speculative_workload(_entry(point), point.draft or DEFAULT_DRAFT,
                                          prefill=point.prefill, decode=point.decode,
                                          config=_spec_config(point), batch=point.batch,
                                          dtype=point.dtype)
    if point.model.endswith(".workload.json"):
        from sweeps.workloads import load_workload_file

        return load_workload_file(point.model, prefill=point.prefill, decode=point.decode,
                                  batch=point.batch)
    return get_workload(_entry(point), prefill=point.prefill, decode=point.decode,
                        batch=point.batch, dtype=point.dtype)


def _entry(point: Point) -> Any:
    from models.zoo import get_model

    return get_model(point.model)  # a zoo name, a config.json or a directory holding one


def _program_key(point: Point, spec: Any, version: str) -> str:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
              if f.name not in ("name", "description", "sources")}
    blob = json.dumps([version, point.fidelity, spec.kind, fields, point.model,
                       point.model_digest, point.prefill, point.decode, point.batch, point.dtype,
                       point.weight_bits, point.kv_bits,
                       *((k, getattr(point, k)) for k in ("gamma", "alpha", "tree_parents",
                                                          "draft", "adaptive", "sparsity",
                                                          "sparsity_digest", "keep", "rate",
                                                          "requests", "requests_digest",
                                                          "num_requests", "requests_seed",
                                                          "slo", "token_budget")
                         if getattr(point, k) not in (None, ""))],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _cached(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed


def _store(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(result, f)
    os.replace(f.name, path)  # atomic: concurrent workers never read half a file


def evaluate(point: Point, cache_dir: str | None = None,
             version: str | None = None) -> dict[str, Any]:
    """One row's outputs for ``point``; an exception becomes status 'failed' with its message.

    ``version`` is the driver's :func:`code_version`, so every worker (a Ray worker started
    later, after someone edited the code) keys the program cache like the driver.
    """
    t0 = time.perf_counter()
    version = version or code_version()
    row: dict[str, Any] = {"hash": point.key, "code_version": version, "cached": 0}
    try:
        spec = resolve_spec(point)
        row.update(kind=spec.kind, peak_ops_per_s=spec.peak_ops_per_s(point.dtype),
                   mem_bytes_per_s=spec.mem_bytes_per_s, price_usd=spec.price_usd or None)
        key = _program_key(point, spec, version)
        path = Path(cache_dir) / f"{key}.json" if cache_dir else None
        result = _cached(path)
        if result is not None:
            row["cached"] = 1
        elif point.serving:   # a [serving] point: llmcosim serve's metrics (sweeps/serving.py)
            result = _serving_result(point, spec)
        else:
            result = _simulate(point, spec).to_dict()
        if row["cached"] == 0 and path is not None:
            _store(path, result)
        row.update({m: result.get("serving", {}).get(m) for m in SERVING_METRICS})
        row.update({m: result[m] for m in METRICS})
        row["fits_memory"] = int(bool(result["fits_memory"]))
        extra = result.get("extra") or {}
        row.update({m: extra[m] if isinstance(extra.get(m), int | float) else None
                    for m in EXTRA_METRICS})
        res_cols, res_notes = resource_columns(spec, point)
        row.update(res_cols)
        row["result"] = json.dumps({k: result[k] for k in ("counts", "breakdown_ms", "extra")}
                                   | {"notes": list(result["notes"]) + res_notes})
        row.update(status="ok", error=None)
    except Exception as e:  # a failing point is recorded and the sweep goes on
        from models.errors import UserError

        msg = str(e) if isinstance(e, UserError) else \
            f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
        row.update(status="failed", error=msg)
    row["wall_s"] = time.perf_counter() - t0
    return row


def evaluate_chunk(points: list[Point], cache_dir: str | None = None,
                   version: str | None = None) -> list[dict[str, Any]]:
    return [evaluate(p, cache_dir, version) for p in points]

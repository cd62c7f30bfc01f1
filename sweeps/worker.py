"""Evaluate design points: resolve the spec, load the workload once per process, simulate.

Runs in worker processes (local pool or Ray tasks). Workloads (traced graphs) and compressed
variants are kept per process, so a worker loads each model once, not once per point.
Simulation results are cached on disk per *program* (resolved spec numbers + workload +
compression + fidelity + code version), so sweeps over unrelated knobs, or a second sweep
over the same designs, reuse them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import traceback
from collections import OrderedDict
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sweeps.spec import Point

__all__ = ["METRICS", "code_version", "env_of", "evaluate", "evaluate_chunk", "resolve_spec",
           "result_cache_dir"]

# SimResult fields stored as columns (the rest goes to the JSON `result` column).
METRICS = ("prefill_ms", "decode_ms_per_token", "decode_tokens_per_s", "total_ms", "energy_j",
           "tokens_per_j", "fits_memory", "memory_bytes")
_WORKLOADS: OrderedDict[tuple, Any] = OrderedDict()   # per process; small LRU
_MAX_WORKLOADS = 16


@lru_cache(maxsize=1)
def code_version() -> str:
    """llmcosim version + a hash of the modelling code (models, mapping, sim)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("models", "mapping", "sim"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    for dist in ("torch", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            h.update(metadata.version(dist).encode())
    try:
        version = metadata.version("llmcosim")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"{version}+{h.hexdigest()[:12]}"


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
    where = ", ".join(f"{k}={v:g}" for k, v in point.overrides)
    return validate(spec, f"{point.hw} with {where}" if where else point.hw)


def env_of(point: Point, spec: Any) -> dict[str, Any]:
    """Names a constraint may read: inputs, numeric spec fields and derived quantities."""
    env = {k: v for k, v in point.inputs().items()}
    for f in dataclasses.fields(spec):
        if "range" in f.metadata:
            env[f.name] = getattr(spec, f.name)
    env.update(kind=spec.kind, peak_ops_per_s=spec.peak_ops_per_s(point.dtype),
               mem_bytes_per_s=spec.mem_bytes_per_s, mem_capacity_bytes=spec.mem_capacity_bytes,
               power_w=spec.power_w)
    return env


def _workload(point: Point) -> Any:
    base_key = (point.model, point.model_digest, point.prefill, point.decode, point.batch,
                point.dtype)
    key = (*base_key, point.weight_bits, point.kv_bits)
    if key in _WORKLOADS:
        _WORKLOADS.move_to_end(key)
        return _WORKLOADS[key]
    base = _WORKLOADS.get((*base_key, None, None))
    if base is None:
        base = _load(point)
    w = base
    if point.weight_bits is not None or point.kv_bits is not None:
        from mapping.compression import quantize

        w = base.map(lambda g: quantize(g, weight_bits=point.weight_bits, kv_bits=point.kv_bits))
    for k, v in (((*base_key, None, None), base), (key, w)):
        _WORKLOADS[k] = v
        _WORKLOADS.move_to_end(k)
    while len(_WORKLOADS) > _MAX_WORKLOADS:
        _WORKLOADS.popitem(last=False)
    return w


def _load(point: Point) -> Any:
    from models.cache import get_workload

    if point.model.endswith(".workload.json"):
        from sweeps.workloads import load_workload_file

        return load_workload_file(point.model, prefill=point.prefill, decode=point.decode,
                                  batch=point.batch)
    if point.model.endswith(".json"):
        from models.zoo import entry_from_config_file

        entry: Any = entry_from_config_file(point.model)
    else:
        entry = point.model
    return get_workload(entry, prefill=point.prefill, decode=point.decode, batch=point.batch,
                        dtype=point.dtype)


def _program_key(point: Point, spec: Any, version: str) -> str:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
              if f.name not in ("name", "description", "sources")}
    blob = json.dumps([version, point.fidelity, spec.kind, fields, point.model,
                       point.model_digest, point.prefill, point.decode, point.batch, point.dtype,
                       point.weight_bits, point.kv_bits], sort_keys=True, default=str)
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
        else:
            from sim.registry import run

            result = run(spec, _workload(point), point.fidelity).to_dict()
            if path is not None:
                _store(path, result)
        row.update({m: result[m] for m in METRICS})
        row["fits_memory"] = int(bool(result["fits_memory"]))
        row["result"] = json.dumps({k: result[k] for k in ("counts", "breakdown_ms", "extra",
                                                           "notes")})
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

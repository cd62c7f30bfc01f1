"""One device's serving run: fidelity and storage choices, KV budget, the pass table, the run.

Defaults: GPUs at ``calibrated`` (the measured-GPU model), FlightLLM at ``cycle`` (its
cycle-level simulator, whole prefill and decode passes: ``sim.serving.passes``), HADES at
``roofline``. FlightLLM runs prefill and decode as separate programs, and its cycle-level
simulator times whole passes, so at ``cycle`` its table holds whole passes and its prompts
run whole. HADES's cycle-level simulator splits each pass by op kind, so its table at
``cycle`` shares the dense ops between decodes and prompts, as the roofline's does.
FlightLLM stores the artifact's compression (INT4
weights, INT8 KV cache; at cycle level its whole setting, which the simulator applies
itself); other devices FP16.
FlightLLM's decode batch is bounded by its B buffer (``mapping.flightllm.decode``): a larger
``--max-batch`` is lowered to that bound, with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mapping.compression import quantize
from models.errors import UserError
from models.zoo import ModelEntry
from sim.serving.cache import load_table, save_table, table_path
from sim.serving.metrics import summarize
from sim.serving.passes import PassTable, build_table, default_sources
from sim.serving.requests import Request
from sim.serving.scheduler import SchedulerConfig, ServeRun, simulate_serving
from sim.spec import HardwareSpec

__all__ = ["DeviceServe", "default_fidelity", "kv_budget_tokens", "serve_device"]

_DEFAULT_FIDELITY = {"gpu": "calibrated", "flightllm": "cycle", "hades": "cycle"}  # else roofline
_TABLES: dict[tuple, PassTable] = {}   # in-process memo (several rates, one table)


def default_fidelity(kind: str) -> str:
    return _DEFAULT_FIDELITY.get(kind, "roofline")


def _storage(kind: str, fidelity: str) -> tuple[str, Any, Any]:
    """(label, pass the simulator's graphs get, pass the byte counts get)."""
    if kind == "flightllm" and fidelity == "cycle":   # the simulator compresses by itself
        from sim.flightllm.simulate import compressed

        return "artifact setting", None, lambda g: compressed(g, None)
    if kind == "flightllm":   # FlightLLM artifact: INT4 weights, INT8 KV cache
        w4 = lambda g: quantize(g, weight_bits=4, kv_bits=8)  # noqa: E731
        return "W4 KV8", w4, w4
    return "FP16", None, None


def _batch_limit(spec: HardwareSpec, fidelity: str, decode: Any, size: Any) -> int | None:
    """FlightLLM at cycle level: the largest decode batch its B buffer holds."""
    if spec.kind != "flightllm" or fidelity != "cycle":
        return None
    from mapping.flightllm.decode import max_pass_tokens
    from sim.flightllm.timing import arch_of

    limit = max_pass_tokens(size(decode(1, 1)), arch_of(spec))
    if limit < 1:
        raise UserError(f"{spec.name}: one sequence's decode vector does not fit its B buffer "
                        f"({int(spec.b_buffer_bytes):,} bytes)")
    return limit


def kv_budget_tokens(spec: HardwareSpec, table: PassTable) -> int:
    """Tokens of KV cache that fit in the device memory left after the weights."""
    free = spec.mem_capacity_bytes - table.weight_bytes
    if free <= table.kv_bytes_per_token:
        raise UserError(f"{spec.name}: the weights ({table.weight_bytes / 1e9:.2f} GB) leave no "
                        f"room for a KV cache in its {spec.mem_capacity_bytes / 1e9:.2f} GB")
    return int(free // table.kv_bytes_per_token)


@dataclass
class DeviceServe:
    hw: str
    fidelity: str
    storage: str
    table: PassTable
    run: ServeRun
    metrics: dict[str, Any]


def _cached_table(spec: HardwareSpec, entry: ModelEntry, grid: dict[str, Any],
                  build: Any) -> PassTable:
    """This process's table, else the one on disk (``sim.serving.cache``), else a new one."""
    model = {"class": entry.config_class, "config": dict(entry.config)}
    key = json.dumps([spec.name, model, grid], sort_keys=True, default=str)
    if (hit := _TABLES.get((spec, key))) is not None:
        return hit
    path = table_path(spec, model, **grid)
    table = load_table(path) if path is not None and path.exists() else None
    if table is None:
        table = build()
        if path is not None:
            save_table(path, table)
    _TABLES[(spec, key)] = table
    return table


def serve_device(spec: HardwareSpec, entry: ModelEntry, requests: list[Request],
                 cfg: SchedulerConfig, slo: dict[str, float], fidelity: str | None = None,
                 sources: tuple | None = None) -> DeviceServe:
    """Build the device's pass table for these requests and simulate serving them."""
    cfg.check()
    fid = fidelity or default_fidelity(spec.kind)
    storage, gp, sp = _storage(spec.kind, fid)
    prefill, decode = sources or default_sources(entry)
    limit = _batch_limit(spec, fid, decode, sp)
    max_batch = min(cfg.max_batch, limit or cfg.max_batch)
    longest = max(r.prompt_tokens for r in requests)
    max_ctx = max(r.prompt_tokens + r.output_tokens for r in requests)
    grid = {"fidelity": fid, "storage": storage, "max_tokens": max(cfg.token_budget, longest),
            "max_batch": max_batch, "max_context": max_ctx,
            "separate": spec.kind == "flightllm" and fid == "cycle"}
    if sources is None:   # tables of the trace cache's graphs are kept (memory, then disk)
        table = _cached_table(spec, entry, grid, lambda: build_table(
            spec, fid, prefill, decode, max_tokens=grid["max_tokens"], max_batch=max_batch,
            max_context=max_ctx, graph_pass=gp, size_pass=sp, separate=grid["separate"]))
    else:
        table = build_table(spec, fid, prefill, decode, max_tokens=grid["max_tokens"],
                            max_batch=max_batch, max_context=max_ctx, graph_pass=gp,
                            size_pass=sp, separate=grid["separate"])
    budget = cfg.kv_budget_tokens or kv_budget_tokens(spec, table)
    # a separate-pass device (FlightLLM) runs each prompt's prefill program whole
    c = SchedulerConfig(cfg.token_budget, max_batch, budget, whole_prompts=table.separate)
    run = simulate_serving(table, requests, c)
    m = summarize(run, slo)
    m.update(hw=spec.name, fidelity=fid, storage=storage, energy=table.has_energy,
             max_batch=max_batch)
    if max_batch < cfg.max_batch:
        m["notes"] = [f"max batch {max_batch}, not {cfg.max_batch}: always-on-chip decode "
                      f"keeps each sequence's vector in the {int(spec.b_buffer_bytes):,}-byte B "
                      "buffer (FlightLLM cycle level)"]
    if not table.has_energy:
        m["energy_per_request_j"] = None
    return DeviceServe(spec.name, fid, storage, table, run, m)

"""One device's serving run: fidelity and storage choices, KV budget, the pass table, the run.

Defaults: GPUs at ``calibrated`` (the measured-GPU model), FlightLLM and HADES at ``roofline``
(FlightLLM's cycle simulator has no batch > 1 yet). FlightLLM stores INT4 weights and an INT8
KV cache (the artifact's compression, as ``llmcosim compare`` assumes on its roofline); other
devices FP16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mapping.compression import quantize
from models.errors import UserError
from models.zoo import ModelEntry
from sim.serving.metrics import summarize
from sim.serving.passes import PassTable, build_table, default_sources
from sim.serving.requests import Request
from sim.serving.scheduler import SchedulerConfig, ServeRun, simulate_serving
from sim.spec import HardwareSpec

__all__ = ["DeviceServe", "default_fidelity", "kv_budget_tokens", "serve_device"]

_DEFAULT_FIDELITY = {"gpu": "calibrated"}   # every other kind: roofline
_TABLES: dict[tuple, PassTable] = {}         # in-process memo (several rates, one table)


def default_fidelity(kind: str) -> str:
    return _DEFAULT_FIDELITY.get(kind, "roofline")


def _storage(kind: str) -> tuple[str, Any]:
    if kind == "flightllm":   # FlightLLM artifact: INT4 weights, INT8 KV cache
        return "W4 KV8", lambda g: quantize(g, weight_bits=4, kv_bits=8)
    return "FP16", None


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


def serve_device(spec: HardwareSpec, entry: ModelEntry, requests: list[Request],
                 cfg: SchedulerConfig, slo: dict[str, float], fidelity: str | None = None,
                 sources: tuple | None = None) -> DeviceServe:
    """Build the device's pass table for these requests and simulate serving them."""
    cfg.check()
    fid = fidelity or default_fidelity(spec.kind)
    storage, gp = _storage(spec.kind)
    prefill, decode = sources or default_sources(entry)
    longest = max(r.prompt_tokens for r in requests)
    max_ctx = max(r.prompt_tokens + r.output_tokens for r in requests)
    key = (spec, entry.name, fid, max(cfg.token_budget, longest), cfg.max_batch, max_ctx,
           sources is None)
    table = _TABLES.get(key)
    if table is None:
        table = build_table(spec, fid, prefill, decode, max_tokens=key[3],
                            max_batch=cfg.max_batch, max_context=max_ctx, graph_pass=gp)
        if sources is None:   # tables from the trace cache are reused across runs
            _TABLES[key] = table
    budget = cfg.kv_budget_tokens or kv_budget_tokens(spec, table)
    c = SchedulerConfig(cfg.token_budget, cfg.max_batch, budget)
    run = simulate_serving(table, requests, c)
    m = summarize(run, slo)
    m.update(hw=spec.name, fidelity=fid, storage=storage, energy=table.has_energy)
    if not table.has_energy:
        m["energy_per_request_j"] = None
    return DeviceServe(spec.name, fid, storage, table, run, m)

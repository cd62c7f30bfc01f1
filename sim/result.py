"""What every simulator returns: times, throughput and action counts, JSON-ready.

The field names and units below are a contract (scripts and reports rely on them); later
simulators add fields in ``extra`` but keep these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.workload import Workload
    from sim.spec import HardwareSpec

__all__ = ["SimResult", "memory_fit", "result_from_times"]


@dataclass(frozen=True)
class SimResult:
    hw: str
    model: str
    prefill: int                      # prompt tokens
    decode: int                       # decode passes (generated tokens)
    batch: int
    fidelity: str                     # "roofline", "cycle", "calibrated", ...
    prefill_ms: float
    decode_ms_per_token: float        # mean over the decode passes
    decode_tokens_per_s: float        # batch x decode / decode time
    total_ms: float
    energy_j: float | None = None     # None when the device's power is not published
    tokens_per_j: float | None = None
    fits_memory: bool = True
    memory_bytes: float = 0.0         # weights + KV cache at the last position
    breakdown_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> kind -> ms
    counts: dict[str, float] = field(default_factory=dict)   # FLOPs, bytes, ... (action counts)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def memory_fit(spec: HardwareSpec, w: Workload) -> tuple[float, bool, tuple[str, ...]]:
    """(bytes, fits, notes): weights (as stored) + the KV cache at the last position."""
    graph = w.prefill or w.decode_first
    assert graph is not None
    memory = float(sum(p.bytes for p in graph.params))
    if w.decode_last is not None:
        memory += w.decode_last.totals().kv_read_bytes  # attention reads all of K and V once
    elif w.prefill is not None:
        memory += w.prefill.totals().kv_write_bytes
    if memory <= spec.mem_capacity_bytes:
        return memory, True, ()
    return memory, False, (f"weights + KV cache need {memory / 1e9:.2f} GB but {spec.name} has "
                           f"{spec.mem_capacity_bytes / 1e9:.2f} GB; compress (weight bits, "
                           "sparsity)",)


def result_from_times(spec: HardwareSpec, w: Workload, fidelity: str, prefill_s: float,
                      decode_s: float, *, energy_j: float | None = None,
                      decode_energy_j: float | None = None, notes: tuple[str, ...] = (),
                      **fields: Any) -> SimResult:
    """A SimResult with every derived field computed one way for all simulators.

    Energy defaults to the device's power x time (board power or TDP); a simulator with its
    own energy model passes ``energy_j`` (and ``decode_energy_j``, else the decode share of
    ``energy_j`` by time). ``tokens_per_j`` counts decode energy only.
    """
    tokens = w.batch * w.decode_tokens
    if energy_j is None and spec.power_w:
        energy_j = spec.power_w * (prefill_s + decode_s)
        decode_energy_j = spec.power_w * decode_s
    if decode_energy_j is None and energy_j and prefill_s + decode_s > 0:
        decode_energy_j = energy_j * decode_s / (prefill_s + decode_s)
    memory, fits, full = memory_fit(spec, w)
    return SimResult(
        hw=spec.name, model=w.model, prefill=w.prefill_tokens, decode=w.decode_tokens,
        batch=w.batch, fidelity=fidelity, prefill_ms=prefill_s * 1e3,
        decode_ms_per_token=decode_s * 1e3 / w.decode_tokens if w.decode_tokens else 0.0,
        decode_tokens_per_s=tokens / decode_s if decode_s else 0.0,
        total_ms=(prefill_s + decode_s) * 1e3, energy_j=energy_j,
        tokens_per_j=tokens / decode_energy_j if decode_energy_j else None,
        fits_memory=fits, memory_bytes=memory,
        notes=tuple(dict.fromkeys((*notes, *full))),   # a note passed on from a base run once
        **fields)

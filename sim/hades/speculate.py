"""What ``llmcosim simulate`` calls when a speculation flag is given (the CLI only wires).

``speculate`` validates the flags, builds the speculative workload (tracing or loading the
draft/verify graphs), and runs HADES or FlightLLM at ``cycle`` fidelity (their default) or
any device at ``roofline``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path

from mapping.acceptance import Acceptance, IIDAcceptance, PositionalAcceptance, load_trace
from mapping.flightllm.compression import CompressionConfig
from mapping.spec_workload import SpeculativeWorkload, build_speculative_workload
from mapping.speculation import SpecConfig
from models.errors import UserError
from models.graph import Graph, Phase
from models.zoo import ModelEntry, get_model
from sim.result import SimResult
from sim.spec import HardwareSpec

__all__ = ["DEFAULT_DRAFT", "HADES_FIDELITY", "parse_alpha", "speculate"]

DEFAULT_DRAFT = "llama-68m"   # SpecInfer's/Sequoia's draft for LLaMA-2 targets
# The HADES simulator is event-driven at cycle resolution; it is registered as "cycle" for the
# hades kind (sim/registry.py keys simulators by fidelity and kind), "event" being an alias.
HADES_FIDELITY = "cycle"


def parse_alpha(text: str) -> tuple[float, ...]:
    """``--alpha 0.8`` (i.i.d.) or ``--alpha 0.9,0.8,0.7`` (per position α_k)."""
    try:
        return tuple(float(a) for a in text.split(","))
    except ValueError:
        raise UserError(f"--alpha {text!r}: expected a probability such as 0.8, or "
                        "comma-separated per-position values such as 0.9,0.8,0.7") from None


def _acceptance(alpha: str | None, trace: str | None) -> Acceptance:
    if alpha is not None and trace is not None:
        raise UserError("give either --alpha or --acceptance (a trace), not both")
    if trace is not None:
        return load_trace(trace)
    alphas = parse_alpha(alpha) if alpha is not None else (0.8,)
    return IIDAcceptance(alphas[0]) if len(alphas) == 1 else PositionalAcceptance(alphas)


def speculate(spec: HardwareSpec, target: ModelEntry, *, draft: str | None, gamma: int | None,
              alpha: str | None, acceptance: str | None, tree: tuple[int, ...] | None,
              prefill: int, decode: int, batch: int = 1, dtype: str = "float16",
              fidelity: str | None = None, trace_out: str | None = None,
              use_cache: bool = True, graph_pass: Callable[[Graph], Graph] | None = None,
              seed: int = 0, compression: CompressionConfig | None = None,
              decode_bucket: int | None = None) -> SimResult:
    """Speculative decode of ``target`` on ``spec``; UserError on any bad flag.

    ``compression``, ``decode_bucket``: FlightLLM at cycle fidelity, the compression config
    (None: the default) and the keys per program length bucket (None: 16).
    The default fidelity is cycle on HADES, and on FlightLLM for chains at any batch and
    trees at batch 1 (what its schedule runs; a tree at batch > 1 runs at the roofline there,
    with a note, and ``--fidelity cycle`` refuses it).
    """
    importlib.import_module("sim.hades.spec")  # registers the hades kind
    from sim.hades.simulate import simulate_speculative
    from sim.perfetto import TraceWriter
    from sim.registry import best_fidelity, fidelities, run

    acc = _acceptance(alpha, acceptance)
    if gamma is None:
        gamma = getattr(acc, "gamma", 4)
    cfg = SpecConfig(gamma=gamma, tree=tree, acceptance=acc, seed=seed)
    d_entry = get_model(draft or DEFAULT_DRAFT)
    fid = fidelity or (HADES_FIDELITY if spec.kind == "hades" else "roofline")
    notes: tuple[str, ...] = ()
    if spec.kind == "flightllm" and fidelity is None:
        fid = "cycle" if batch == 1 or not cfg.tree else "roofline"
        if fid == "roofline":
            notes = (f"tree speculation at batch {batch} on {spec.name} runs at roofline: "
                     "FlightLLM's cycle-level speculation schedule runs trees at batch 1 "
                     "(chains at any batch)",)
    if fid == "best":
        fid = best_fidelity(spec.kind, speculative=True)
    if fid not in fidelities(spec.kind):
        raise UserError(f"unknown --fidelity {fid!r} for {spec.name}; available: "
                        f"{', '.join(fidelities(spec.kind))}")
    if spec.kind == "flightllm" and fid == "cycle":   # before tracing: trees at batch 1
        from sim.flightllm.speculate import check_flags

        check_flags(spec, cfg, batch)
    if trace_out is not None:
        if fid not in (HADES_FIDELITY, "event") or spec.kind != "hades":
            raise UserError("--trace (a Perfetto timeline) needs the event-driven simulator: "
                            f"--hw hades (--fidelity {HADES_FIDELITY})")
        if not Path(trace_out).resolve().parent.exists():
            raise UserError(f"--trace: directory of {trace_out!r} does not exist")
    w: SpeculativeWorkload = build_speculative_workload(
        target, d_entry, prefill=prefill, decode=decode, config=cfg, batch=batch, dtype=dtype,
        use_cache=use_cache)
    if graph_pass is not None:
        w = w.map(graph_pass)
    if trace_out is not None:
        tw = TraceWriter(f"{spec.name}: {w.model} + {w.draft}")
        result = simulate_speculative(spec, w, tw)  # type: ignore[arg-type]
        tw.write(trace_out)
        return result
    if spec.kind == "flightllm" and fid == "cycle":
        from models.cache import get_graph
        from sim.flightllm.speculate import simulate_speculative as flightllm_speculative

        def fallback(phase: Phase, tokens: int, context: int, draft: bool) -> Graph:
            g = get_graph(d_entry if draft else target, phase, tokens=tokens,
                          context=context, batch=batch, dtype=dtype, use_cache=use_cache)
            return graph_pass(g) if graph_pass is not None else g

        return flightllm_speculative(spec, w, compression,  # type: ignore[arg-type]
                                     fallback=fallback,
                                     decode_bucket=decode_bucket)
    result = run(spec, w, fid)
    return dataclasses.replace(result, notes=notes + result.notes) if notes else result

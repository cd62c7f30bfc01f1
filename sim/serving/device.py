"""One device's serving run: fidelity and storage choices, KV budget, the pass table, the run.

Defaults: GPUs at ``calibrated`` (the measured-GPU model), FlightLLM at ``cycle`` (its
cycle-level simulator, whole prefill and decode passes: ``sim.serving.passes``), HADES at
``cycle``. FlightLLM runs prefill and decode as separate programs, and its cycle-level
simulator times whole passes, so at ``cycle`` its table holds whole passes and its prompts
run whole. HADES's cycle-level simulator splits each pass by op kind, so its table at
``cycle`` shares the dense ops between decodes and prompts, as the roofline's does.
FlightLLM stores the artifact's compression (INT4
weights, INT8 KV cache; at cycle level its whole setting, which the simulator applies
itself); other devices FP16.
FlightLLM's decode batch is bounded by its B buffer (``mapping.flightllm.decode``): a larger
``--max-batch`` is lowered to that bound, with a note.

With a :class:`Speculation` the run decodes speculatively (``sim.serving.speculative``): the
draft model gets its own pass table on the same device and fidelity, the target a verify
grid, and memory holds both models' weights and KV caches. FlightLLM at cycle level (whole
separate passes) serves speculation at the roofline, with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mapping.acceptance import Acceptance, IIDAcceptance
from mapping.compression import quantize
from models.errors import UserError
from models.graph import Phase
from models.zoo import ModelEntry
from sim.registry import run as registry_run
from sim.serving.cache import load_table, save_table, table_path
from sim.serving.metrics import summarize
from sim.serving.passes import PassTable, build_table, default_sources
from sim.serving.requests import Request
from sim.serving.scheduler import SchedulerConfig, ServeRun, simulate_serving
from sim.serving.speculative import SpecServing, verify_table
from sim.spec import HardwareSpec

__all__ = ["MAX_ADAPTIVE_GAMMA", "DeviceServe", "Speculation", "default_fidelity",
           "kv_budget_tokens", "serve_device"]

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


def kv_budget_tokens(spec: HardwareSpec, table: PassTable,
                     draft: PassTable | None = None) -> int:
    """Tokens of KV cache that fit in the device memory left after the weights (with a
    ``draft`` table: both models' weights, and a token's KV rows in both caches)."""
    weights = table.weight_bytes + (draft.weight_bytes if draft is not None else 0.0)
    per_token = table.kv_bytes_per_token + (draft.kv_bytes_per_token if draft else 0.0)
    free = spec.mem_capacity_bytes - weights
    if free <= per_token:
        raise UserError(f"{spec.name}: the weights ({weights / 1e9:.2f} GB) leave no "
                        f"room for a KV cache in its {spec.mem_capacity_bytes / 1e9:.2f} GB")
    return int(free // per_token)


# the longest adaptive chain: one verify grid is traced and simulated per length (SpecInfer,
# Medusa and EAGLE verify at most ~8-10 tokens per sequence; 16 leaves room)
MAX_ADAPTIVE_GAMMA = 16


@dataclass(frozen=True)
class Speculation:
    """Speculative decoding for a serving run: a chain of ``gamma`` drafts from ``draft``
    (``adaptive``: up to ``gamma``, chosen per iteration, ``sim.serving.speculative``)."""

    draft: ModelEntry
    gamma: int = 4
    acceptance: Acceptance = IIDAcceptance(0.8)
    seed: int = 0
    # graph sources (draft prefill(t), draft decode(b, c), verify(rows) -> (b, c) -> graph);
    # None: traced
    sources: tuple | None = None
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.adaptive and self.gamma > MAX_ADAPTIVE_GAMMA:
            raise UserError(f"--gamma {self.gamma} with --adaptive-gamma: at most "
                            f"{MAX_ADAPTIVE_GAMMA} (each draft length needs its own traced "
                            "verify table)")

    @classmethod
    def from_flags(cls, target: ModelEntry, *, draft: str | None, gamma: int | None,
                   alpha: str | None, seed: int = 0, adaptive: bool = False) -> Speculation:
        """From ``serve``'s flags or a sweep point's inputs, checked as ``simulate --draft``
        checks them (default draft llama-68m, α 0.8, γ the per-position α count else 4)."""
        from mapping.acceptance import PositionalAcceptance
        from mapping.speculation import SpecConfig, check_vocab
        from models.zoo import get_model
        from sim.hades.speculate import DEFAULT_DRAFT, parse_alpha

        alphas = parse_alpha(alpha) if alpha is not None else (0.8,)
        acc = IIDAcceptance(alphas[0]) if len(alphas) == 1 else PositionalAcceptance(alphas)
        g = SpecConfig(gamma=getattr(acc, "gamma", 4) if gamma is None else gamma).gamma
        d = get_model(draft or DEFAULT_DRAFT)
        check_vocab(target.name, int(target.config.get("vocab_size", 0)), d.name,
                    int(d.config.get("vocab_size", 0)))
        return cls(d, g, acc, seed, adaptive=adaptive)

    def label(self) -> str:
        acc = self.acceptance.describe()
        alpha = acc["alpha"] if "alpha" in acc else ",".join(map(str, acc.get("alphas", [])))
        gamma = f"γ≤{self.gamma} adaptive" if self.adaptive else f"γ{self.gamma}"
        return f"spec {gamma} α{alpha} {self.draft.name}"

    def graph_sources(self, target: ModelEntry) -> tuple:
        if self.sources is not None:
            return self.sources
        return (*default_sources(self.draft), lambda rows: verify_source(target, rows))


def verify_source(target: ModelEntry, rows: int):
    """(batch, context) -> the target's verify graph of ``rows`` tokens (trace cache)."""
    from models.cache import get_graph

    return lambda b, c: get_graph(target, Phase.VERIFY, tokens=rows, context=c, batch=b)


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


def _spec_fidelity(spec: HardwareSpec, fidelity: str | None, fid: str,
                   speculation: Speculation | None) -> tuple[str, list[str]]:
    """The fidelity a speculative run uses, and its notes."""
    if speculation is None:
        return fid, []
    if spec.kind == "flightllm" and fid == "cycle":
        if fidelity is not None:
            raise UserError(f"{spec.name}: speculative serving at --fidelity cycle needs drafts, "
                            "verifies and prompts in one pass, and FlightLLM's cycle-level "
                            "table holds separate whole passes; use --fidelity roofline, or "
                            "`llmcosim simulate --draft` for its cycle-level speculation")
        return "roofline", [f"speculative serving on {spec.name} runs at the roofline: its "
                            "cycle-level table holds separate whole passes"]
    notes = []
    if _on_draft_engine(spec, fid):
        notes.append("drafts run on the separate draft engine "
                     f"({spec.draft_pe_rows}x{spec.draft_pe_cols}), then the verify on the main "
                     "array; drafting ahead during the verify is not modelled in serving")
    elif spec.kind == "hades" and getattr(spec, "draft_engine", "") == "separate":
        notes.append(f"drafts run time-multiplexed on the main array at --fidelity {fid} (the "
                     "separate draft engine is modelled at cycle level)")
    return fid, notes


def _on_draft_engine(spec: HardwareSpec, fidelity: str) -> bool:
    """HADES at cycle level with ``draft_engine = "separate"``: drafts time on that engine."""
    return spec.kind == "hades" and fidelity == "cycle" and \
        getattr(spec, "draft_engine", "") == "separate"


def serve_device(spec: HardwareSpec, entry: ModelEntry, requests: list[Request],
                 cfg: SchedulerConfig, slo: dict[str, float], fidelity: str | None = None,
                 sources: tuple | None = None,
                 speculation: Speculation | None = None) -> DeviceServe:
    """Build the device's pass table for these requests and simulate serving them."""
    cfg.check()
    fid, notes = _spec_fidelity(spec, fidelity, fidelity or default_fidelity(spec.kind),
                                speculation)
    storage, gp, sp = _storage(spec.kind, fid)
    prefill, decode = sources or default_sources(entry)
    limit = _batch_limit(spec, fid, decode, sp)
    max_batch = min(cfg.max_batch, limit or cfg.max_batch)
    longest = max(r.prompt_tokens for r in requests)
    max_ctx = max(r.prompt_tokens + r.output_tokens for r in requests)
    grid = {"fidelity": fid, "storage": storage, "max_tokens": max(cfg.token_budget, longest),
            "max_batch": max_batch, "max_context": max_ctx,
            "separate": spec.kind == "flightllm" and fid == "cycle"}

    def table_of(model: ModelEntry, pre, dec, key: dict[str, Any], fix=None,
                 runner=registry_run) -> PassTable:
        def build() -> PassTable:
            t = build_table(spec, fid, pre, dec, max_tokens=grid["max_tokens"],
                            max_batch=max_batch, max_context=max_ctx, graph_pass=gp,
                            size_pass=sp, separate=grid["separate"], runner=runner)
            return fix(t) if fix is not None else t
        if sources is None:   # tables of the trace cache's graphs are kept (memory, disk)
            return _cached_table(spec, model, key, build)
        return build()

    table = table_of(entry, prefill, decode, grid)
    spec_run, draft = None, None
    if speculation is not None:
        dpre, ddec, verify = speculation.graph_sources(entry)
        if _on_draft_engine(spec, fid):
            from sim.hades.simulate import simulate_on_draft_engine

            draft = table_of(speculation.draft, dpre, ddec, {**grid, "engine": "draft"},
                             runner=lambda s, w, f: simulate_on_draft_engine(s, w))
        else:
            draft = table_of(speculation.draft, dpre, ddec, grid)
        def verify_of(k: int) -> PassTable:   # the verify grid of k drafts
            return table_of(entry, prefill, decode, {**grid, "verify_tokens": k + 1},
                            lambda t: verify_table(t, spec, fid, verify(k + 1), k, gp))

        g = speculation.gamma
        adaptive = {0: table, **{k: verify_of(k) for k in range(1, g + 1)}} \
            if speculation.adaptive else None
        spec_run = SpecServing(g, speculation.acceptance, speculation.draft.name, draft,
                               adaptive[g] if adaptive else verify_of(g), speculation.seed,
                               adaptive=adaptive)
    budget = cfg.kv_budget_tokens or kv_budget_tokens(spec, table, draft)
    # a separate-pass device (FlightLLM) runs each prompt's prefill program whole
    c = SchedulerConfig(cfg.token_budget, max_batch, budget, whole_prompts=table.separate)
    run = simulate_serving(table, requests, c, spec_run)
    m = summarize(run, slo)
    m.update(hw=spec.name, fidelity=fid, storage=storage, energy=table.has_energy,
             max_batch=max_batch)
    if speculation is not None:
        m["storage"] = f"{storage}, {speculation.label()}"
        m["speculation"] = {"draft": speculation.draft.name, "gamma": speculation.gamma,
                            "adaptive": speculation.adaptive,
                            "acceptance": speculation.acceptance.describe(),
                            **(run.speculation or {})}
    if max_batch < cfg.max_batch:
        notes.append(f"max batch {max_batch}, not {cfg.max_batch}: always-on-chip decode "
                     f"keeps each sequence's vector in the {int(spec.b_buffer_bytes):,}-byte B "
                     "buffer (FlightLLM cycle level)")
    if notes:
        m["notes"] = notes
    if not table.has_energy:
        m["energy_per_request_j"] = None
    return DeviceServe(spec.name, fid, storage, table, run, m)

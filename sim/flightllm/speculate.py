"""Chain speculative decoding on FlightLLM at cycle level: draft steps + verify programs.

Every round of ``mapping.speculation.plan_rounds`` runs, on the same cores one after the other
(time-multiplexed, the draft's weights in HBM like the target's):

1. gamma draft decode passes: the draft model's decode program at the round's context + j;
2. one verify pass: the target's verify program (``Phase.VERIFY``, gamma + 1 tokens of one
   sequence over the cache, compiled in MV mode: each weight tile and each K/V tile loaded once
   for all of them, one MV per token; ``mapping.flightllm.codegen`` / ``decode.py``);
3. rollback: nothing (see :func:`rollback_s`). Sampling and the accept/reject comparison run
   on the host, as the logits of FlightLLM's plain decode do: not charged either.

Each pass is a program compiled for its length bucket (as decode: ``DECODE_BUCKET`` keys,
artifact length-adaptive compilation), simulated once per bucket with ``simulate_graph``.
"""

from __future__ import annotations

from collections.abc import Callable

from mapping.flightllm.compression import CompressionConfig, apply_compression
from mapping.flightllm.decode import check_batch_buffers
from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import SpecConfig, plan_rounds
from models.errors import UserError
from models.graph import Graph, Phase, interpolate
from sim.flightllm.simulate import (
    DECODE_BUCKET,
    PassResult,
    _tallies,
    energy_fields,
    simulate,
    simulate_graph,
)
from sim.flightllm.timing import arch_of
from sim.result import SimResult, result_from_times
from sim.spec import FlightLLMSpec

__all__ = ["PassCache", "base_step_s", "check_flags", "rollback_s", "simulate_speculative"]


def rollback_s() -> float:
    """Seconds a chain rollback costs on FlightLLM: zero.

    The verify pass's KV stores (``kv_store`` in the code generator) write the K/V rows of all
    gamma + 1 verified tokens to the cache at rows context .. context + gamma. After A drafts
    are accepted, the valid length becomes context + A + 1; the rejected rows above it are
    never read (the next pass's attention covers only the valid length, its program compiled
    for that context) and the next verify overwrites them in place. Rollback is therefore a
    pointer reset (the host's context register), exactly as HADES's chain rollback; every byte
    it involves was already charged by the verify program's stores.
    """
    return 0.0


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


class PassCache:
    """Simulated pass time per (graph kind, length bucket), each bucket simulated once.

    ``first``/``last``: two traces (or compressed/mapped graphs) of one phase at two contexts;
    the graph at any other context is their affine interpolation, or ``fallback(context)``
    (e.g. ``models.cache.get_graph``) when a field is not affine in the context.
    """

    def __init__(self, spec: FlightLLMSpec, first: Graph, last: Graph,
                 cfg: CompressionConfig | None = None, bucket: int = DECODE_BUCKET,
                 fallback: Callable[[int], Graph] | None = None) -> None:
        self.spec, self.first, self.last, self.cfg = spec, first, last, cfg
        self.bucket, self.fallback = bucket, fallback
        self.done: dict[int, PassResult] = {}

    def context_of(self, context: int) -> int:
        """The cache length the pass is compiled for: its keys (context + tokens) rounded up
        to the bucket, as decode's ceil16(c + 1)."""
        q = self.first.tokens
        return _ceil(context + q, self.bucket) - q

    def graph_at(self, context: int) -> Graph:
        for g in (self.first, self.last):
            if g.context == context:
                return g
        try:
            return interpolate(self.first, self.last, context)
        except ValueError:
            if self.fallback is None:
                raise
            return self.fallback(context)

    def at(self, context: int) -> PassResult:
        c = self.context_of(context)
        if c not in self.done:
            g = apply_compression(self.graph_at(c), self.cfg)
            self.done[c] = simulate_graph(self.spec, g, periodic=True)
        return self.done[c]

    def seconds(self, context: int) -> float:
        return self.at(context).seconds


def check_flags(spec: FlightLLMSpec, sc: SpecConfig, batch: int) -> None:
    """UserError unless the speculation is a chain at batch 1 (what this schedule runs)."""
    if sc.tree:
        raise UserError(
            f"--tree on FlightLLM at --fidelity cycle: {spec.name}'s speculation schedule runs "
            "chains only (a tree's verify needs a tree-attention mask and a rollback that "
            "gathers the accepted path's K/V rows, which its program does not model); use a "
            "chain (--gamma) or --fidelity roofline for trees")
    if batch != 1:
        raise UserError(
            f"--batch {batch} with speculation on FlightLLM at --fidelity cycle: the "
            "speculation schedule runs batch 1 only (one sequence's gamma + 1 tokens per "
            "verify); use --batch 1, or --fidelity roofline for batched speculation")


def simulate_speculative(spec: FlightLLMSpec, w: SpeculativeWorkload,
                         cfg: CompressionConfig | None = None,
                         fallback: Callable[[Phase, int, int], Graph] | None = None,
                         decode_bucket: int | None = None) -> SimResult:
    """Prefill + chain speculative decode of ``w`` on ``spec`` at cycle level, with the
    non-speculative baseline (``sim.flightllm.simulate.simulate``) for the speedup.

    ``fallback(phase, tokens, context)``: the raw graph at a bucket context when the two traces
    do not interpolate (``models.cache.get_graph``); None raises instead.
    ``decode_bucket``: keys per length bucket of every pass (decode, draft, verify; None:
    ``DECODE_BUCKET``).
    """
    from sim.hades.engine import SpecRun
    from sim.hades.simulate import _spec_extra

    sc = w.config
    assert sc is not None, "a speculative workload carries its SpecConfig"
    check_flags(spec, sc, w.batch)
    if None in (w.verify_first, w.verify_last, w.draft_first, w.draft_last):
        raise ValueError("a speculative workload needs draft and verify graphs at two contexts")
    assert w.verify_first is not None and w.draft_first is not None
    assert w.verify_last is not None and w.draft_last is not None
    # the verify's gamma + 1 input vectors sit in the B buffer like a decode batch's
    check_batch_buffers(w.verify_first, arch_of(spec))
    base = simulate(spec, w, cfg, decode_bucket=decode_bucket)   # UserError if < 1
    decode_bucket = DECODE_BUCKET if decode_bucket is None else decode_bucket

    def fb(phase: Phase, tokens: int) -> Callable[[int], Graph] | None:
        return None if fallback is None else (lambda c: fallback(phase, tokens, c))
    verify = PassCache(spec, w.verify_first, w.verify_last, cfg, decode_bucket,
                       fb(Phase.VERIFY, w.verify_first.tokens))
    draft = PassCache(spec, w.draft_first, w.draft_last, cfg, decode_bucket,
                      fb(Phase.DECODE, 1))
    run = SpecRun(rounds=plan_rounds(sc, w.prefill_tokens, w.decode_tokens, 1))
    pre_e, dec_e = _tallies(spec, cfg, speculation=True)
    for r in run.rounds:
        if not sc.zero_cost_draft:
            for j in range(sc.gamma):
                run.split["draft"] += draft.seconds(r.context + j)
                dec_e.add(draft.at(r.context + j))
        run.split["verify"] += verify.seconds(r.context)
        dec_e.add(verify.at(r.context))
        run.split["rollback"] += rollback_s()
    run.decode_s = sum(run.split.values())
    prefill_s = base.prefill_ms / 1e3
    pre_e.add_joules(base.extra.get("prefill_energy_j"))   # the target's prompt pass
    if w.draft_prefill is not None:   # the draft reads the prompt too, on the same cores
        p = simulate_graph(spec, apply_compression(w.draft_prefill, cfg), periodic=True)
        prefill_s += p.seconds
        pre_e.add(p)
    extra = _spec_extra(run, w, base.decode_tokens_per_s)
    extra["draft_target_cost_ratio"] = (draft.seconds(w.prefill_tokens)
                                        / base_step_s(spec, w, cfg, decode_bucket))
    extra["verify_buckets"] = len(verify.done)
    extra["draft_buckets"] = len(draft.done)
    # where a verify's and a plain decode step's time goes (per queue busy fraction): why
    # speculation wins or loses on this design
    extra["verify_busy"] = verify.at(w.prefill_tokens).busy
    extra["decode_busy"] = base.extra.get("decode_busy", {})
    extra["baseline_tokens_per_j"] = base.tokens_per_j
    energy = energy_fields(spec, pre_e, dec_e, run.decode_s, extra)
    counts = {"verify_passes": float(len(run.rounds)),
              "draft_passes": float(0 if sc.zero_cost_draft else sc.gamma * len(run.rounds))}
    # memory and the result's fields over the compressed graphs, as the plain cycle run
    wc = w.map(lambda g: apply_compression(g, cfg))
    return result_from_times(spec, wc, "cycle", prefill_s, run.decode_s, notes=base.notes,
                             breakdown_ms={"decode": extra["split_ms"]}, counts=counts,
                             extra=extra, **energy)


def base_step_s(spec: FlightLLMSpec, w: SpeculativeWorkload,
                cfg: CompressionConfig | None = None, bucket: int = DECODE_BUCKET) -> float:
    """One target decode step at the prompt length (its bucket's program)."""
    assert w.decode_first is not None and w.decode_last is not None
    g = w.decode_at(_ceil(w.prefill_tokens + 1, bucket) - 1) \
        if w.decode_first.context != w.decode_last.context else w.decode_first
    return simulate_graph(spec, apply_compression(g, cfg), periodic=True).seconds

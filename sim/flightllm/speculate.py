"""Speculative decoding on FlightLLM at cycle level: draft passes, verify programs, rollback.

Every round of ``mapping.speculation.plan_rounds`` (the schedule and acceptance models HADES
uses) runs the steps below. A chain at batch B runs the B sequences in lockstep rounds, as
HADES and the roofline do: each sequence draws its own acceptance, every pass is the batch-B
program (one weight load per tile for all B vectors, each sequence attending to its own
cache) at the batch's mean context (``Round.context``), and a sequence that has emitted its
tokens keeps its slot idle until the last one ends. Token trees run at batch 1
(:func:`check_flags`).

1. draft: a chain's gamma draft decode passes (the draft's decode program at context + j, at
   batch B for B sequences); a token tree's ``depth`` passes, as HADES counts them
   (``sim.hades.engine``): pass 0 over the root (the last emitted token), pass j over the
   j-th level's nodes, each a program of that many tokens of one sequence (MV mode) whose
   attention applies the tree's mask;
2. verify: the target's verify program (``Phase.VERIFY``: 1 + gamma or 1 + tree-size tokens of
   one sequence over the cache, or 1 + gamma of each of B sequences, in MV mode, each weight
   tile loaded once for all of them and each sequence's K/V tiles once for its tokens;
   ``mapping.flightllm.codegen`` / ``decode.py``). A tree adds its attention mask: per
   layer and core, an LD of q x n bits into the global buffer the softmax reads
   (``DecodeMixin.tree_mask``); a chain's causal mask is free (an index comparison). A pass
   whose tokens' input vectors do not fit the B buffer together (``max_pass_tokens``: 11 for
   LLaMA2-7B's down_proj on the U280's 128 KB) runs as several passes over groups of at most
   that many tokens, the way always-on-chip decode must: each group streams the weights again
   and attends to the cache plus the earlier groups' rows (stored by their KV stores). A chain
   too long for the B buffer is refused, as before (``check_batch_buffers``: B x (gamma + 1)
   rows at batch B, e.g. at most 11 for LLaMA2-7B on the U280, so batch 2 at gamma 4 fits
   and batch 3 does not).
3. rollback: a chain's is a pointer reset (:func:`rollback_s`, 0; per sequence at batch B); a
   tree's is the compaction program of ``mapping.flightllm.rollback`` (LD/ST of the accepted
   path's K/V rows, target and draft caches), simulated by the same engine.
4. verifier: the accept/reject comparison runs on the verifier block (``rtl/`` and its timing
   ``sim.blocks.verifier``, the same function HADES and the RTL's cocotb test use; its
   resources are in ``llmcosim resources --speculation``), greedy mode: one request per chain
   (split at the RTL's ``MAX_GAMMA``; one per sequence the round verifies at batch B, in
   turn), one per tree level, after the verify pass and before the next round's draft. The
   target's argmax over the vocabulary is not charged (as in plain decode, whose lm_head
   output the program ends with); sampling is greedy.

Where the draft runs follows the spec (``sim.flightllm.draft``):
``draft_weights`` hbm/uram and ``draft_engine`` shared/separate; a separate engine pre-drafts
the next chain while the cores verify (:func:`schedule`, mirroring HADES's PEARL-style
pre-drafting; at batch B it holds only when every sequence accepted all drafts and the
bonus, ``Round.predrafted``; trees draft after the previous round, as in HADES).

Each pass is a program compiled for its length bucket (as decode: ``DECODE_BUCKET`` keys,
artifact length-adaptive compilation), simulated once per bucket with ``simulate_graph``.
"""

from __future__ import annotations

from collections.abc import Callable

from mapping.flightllm.compression import CompressionConfig
from mapping.flightllm.decode import check_batch_buffers
from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import SpecConfig, plan_rounds, tree_levels
from models.errors import UserError
from models.graph import Graph, Phase
from sim.blocks.verifier import round_cycles
from sim.flightllm.passes import Fallback, PassCache, Passes
from sim.flightllm.simulate import (
    DECODE_BUCKET,
    _tallies,
    compressed,
    energy_fields,
    simulate,
    simulate_graph,
)
from sim.result import SimResult, result_from_times
from sim.spec import FlightLLMSpec

__all__ = ["PassCache", "base_step_s", "check_flags", "rollback_s", "schedule",
           "simulate_speculative", "verifier_s"]


def rollback_s() -> float:
    """Seconds a chain rollback costs on FlightLLM: zero.

    The verify pass's KV stores (``kv_store`` in the code generator) write the K/V rows of all
    gamma + 1 verified tokens to the cache at rows context .. context + gamma. After A drafts
    are accepted, the valid length becomes context + A + 1; the rejected rows above it are
    never read (the next pass's attention covers only the valid length, its program compiled
    for that context) and the next verify overwrites them in place. Rollback is therefore a
    pointer reset (the host's context register), exactly as HADES's chain rollback; every byte
    it involves was already charged by the verify program's stores. (A tree's is not free:
    ``mapping.flightllm.rollback``.)
    """
    return 0.0


def verifier_s(spec: FlightLLMSpec, sc: SpecConfig) -> float:
    """Seconds of the verifier block per round (greedy mode, at the accelerator clock)."""
    levels = len(tree_levels(sc.tree)) if sc.tree else None
    return round_cycles("greedy", sc.gamma or 1, levels) / spec.clock_hz


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def check_flags(spec: FlightLLMSpec, sc: SpecConfig, batch: int) -> None:
    """UserError unless this schedule runs the speculation: chains at any batch, token trees
    at batch 1 (a batched tree's verify groups, masks and compaction are not modelled)."""
    if batch != 1 and sc.tree:
        raise UserError(
            f"--tree at --batch {batch} on {spec.name} at --fidelity cycle: the cycle-level "
            "schedule runs token trees at batch 1 only; use --batch 1, a chain (--gamma, any "
            "batch), or --fidelity roofline for a batched tree")


def schedule(rounds: list, steps: Callable[[int], list[float]],
             predraft: Callable[[int], list[float]] | None, verify: Callable[[int], float],
             rollback: Callable[[object], float]) -> tuple[dict[str, float], int]:
    """Wall time of the rounds, split into draft / verify / rollback, and the pre-draft hits.

    ``steps(context)``: the draft passes of a round, in order. ``predraft(context)`` (a
    separate engine drafting chains, else None): the passes it runs while the cores verify
    the round at ``context``, from the context after a fully accepted round (HADES
    ``_predraft``: the bonus guess, then the next round's gamma drafts). A round whose drafts
    were pre-drafted (``Round.predrafted``) waits only for what is left of them; otherwise it
    abandons the pre-draft after the pass in flight (HADES: ``abort``, then the step ends)
    and drafts anew.
    """
    # the verifier block's time is added per round by the caller (greedy: no sampling step)
    split = dict.fromkeys(("draft", "verify", "rollback"), 0.0)
    t, ends, hits = 0.0, None, 0
    for rd in rounds:
        if rd.predrafted and ends is not None:
            d = max(ends[-1] - t, 0.0)
            hits += 1
        else:   # a pre-draft's pass in flight finishes first
            wait = next((e for e in ends if e > t), t) - t if ends is not None else 0.0
            d = wait + sum(steps(rd.context))
        t += d
        split["draft"] += d
        if predraft is not None:
            ends, acc = [], t
            for s in predraft(rd.context):
                acc += s
                ends.append(acc)
        v = verify(rd.context)
        b = rollback(rd)
        split["verify"] += v
        split["rollback"] += b
        t += v + b
    return split, hits


def simulate_speculative(spec: FlightLLMSpec, w: SpeculativeWorkload,
                         cfg: CompressionConfig | None = None,
                         fallback: Fallback | None = None,
                         decode_bucket: int | None = None) -> SimResult:
    """Prefill + speculative decode of ``w`` on ``spec`` at cycle level, with the
    non-speculative baseline (``sim.flightllm.simulate.simulate``) for the speedup.

    ``fallback(phase, tokens, context, draft)``: the raw graph of the target (draft False) or
    the draft at a context the two traces do not give, or of a token count the workload does
    not carry (a tree's draft levels, a verify split in B-buffer groups); None: traced from
    the zoo (``models.cache.get_graph``).
    ``decode_bucket``: keys per length bucket of every pass (None: ``DECODE_BUCKET``).
    """
    sc = w.config
    assert sc is not None, "a speculative workload carries its SpecConfig"
    check_flags(spec, sc, w.batch)
    if None in (w.verify_first, w.verify_last, w.draft_first, w.draft_last):
        raise ValueError("a speculative workload needs draft and verify graphs at two contexts")
    assert w.verify_first is not None and w.draft_first is not None
    if not sc.tree:   # the verify's gamma + 1 input vectors sit in the B buffer together
        from sim.flightllm.timing import arch_of

        check_batch_buffers(w.verify_first, arch_of(spec))
    decode_bucket = DECODE_BUCKET if decode_bucket is None else decode_bucket
    p = Passes(spec, w, cfg, decode_bucket,   # UserError: draft placement
               fallback if fallback is not None else default_fallback(w))
    base = simulate(spec, w, cfg, decode_bucket=decode_bucket)   # UserError if < 1
    rounds = plan_rounds(sc, w.prefill_tokens, w.decode_tokens, w.batch)
    zero = sc.zero_cost_draft
    pre = p.predraft if p.separate and not sc.tree and not zero else None
    pre_e, dec_e = _tallies(spec, cfg, speculation=True)
    p.on_pass = dec_e.add   # every draft, pre-draft and verify pass the schedule runs
    split, hits = schedule(rounds, (lambda c: []) if zero else p.draft_steps, pre, p.verify_s,
                           p.rollback_s)
    p.on_pass = None
    # one greedy request per sequence the round verifies (Round.paths: one at batch 1)
    split["verifier"] = sum(len(r.paths) for r in rounds) * verifier_s(spec, sc)
    decode_s = sum(split.values())
    dec_e.add_bytes(p.moved_bytes)   # a tree rollback's compaction LD/ST
    dec_e.close(decode_s)
    prefill_s = base.prefill_ms / 1e3
    pre_e.add_joules(base.extra.get("prefill_energy_j"))   # the target's prompt pass
    if w.draft_prefill is not None:   # the draft reads the prompt too
        d = simulate_graph(p.dspec, compressed(w.draft_prefill, cfg), periodic=True)
        # on the cores after the target's prefill, or on its own engine beside it (HADES)
        longer = max(prefill_s, d.seconds) if p.separate else prefill_s + d.seconds
        pre_e.add(d)
        pre_e.close(longer - prefill_s)
        prefill_s = longer
    power: dict = {}   # the power model's fields of extra (energy_fields fills them)
    energy = energy_fields(spec, pre_e, dec_e, decode_s, power)
    return _result(spec, w, cfg, p, base, rounds, split, hits, prefill_s, decode_s,
                   (energy, power))


def _result(spec: FlightLLMSpec, w: SpeculativeWorkload, cfg: CompressionConfig | None,
            p: Passes, base: SimResult, rounds: list, split: dict[str, float], hits: int,
            prefill_s: float, decode_s: float,
            energy: tuple[dict[str, float], dict]) -> SimResult:
    from sim.hades.engine import SpecRun
    from sim.hades.simulate import _spec_extra

    sc = w.config
    assert sc is not None
    run = SpecRun(decode_s=decode_s, split=split, rounds=rounds)
    extra = _spec_extra(run, w, base.decode_tokens_per_s)
    extra["draft_target_cost_ratio"] = (sum(p.draft_steps(w.prefill_tokens)) / sc.draft_steps
                                        / base_step_s(spec, w, cfg, p.bucket))
    extra.update(p.describe(), predraft_hits=hits)
    # why speculation wins or loses on this design: where a verify's and a plain decode
    # step's time goes (busy fraction per queue), and the plain decode's energy
    verify = p.cache(False, p.groups[0][1], p.groups[0][1] if sc.tree else None)
    extra["verify_busy"] = verify.at(w.prefill_tokens).busy
    extra["decode_busy"] = base.extra.get("decode_busy", {})
    extra["baseline_tokens_per_j"] = base.tokens_per_j
    extra.update(energy[1])
    steps = 0 if sc.zero_cost_draft else sum(p.draft_passes(r.context) for r in rounds)
    counts = {"verify_passes": float(len(rounds) * len(p.groups)),
              "draft_passes": float(steps), "rollback_bytes": float(p.moved_bytes)}
    # memory and the result's fields over the compressed graphs, as the plain cycle run
    wc = w.map(lambda g: compressed(g, cfg))
    return result_from_times(spec, wc, "cycle", prefill_s, decode_s, notes=base.notes,
                             breakdown_ms={"decode": extra["split_ms"]}, counts=counts,
                             extra=extra, **energy[0])


def base_step_s(spec: FlightLLMSpec, w: SpeculativeWorkload,
                cfg: CompressionConfig | None = None, bucket: int = DECODE_BUCKET) -> float:
    """One target decode step at the prompt length (its bucket's program)."""
    assert w.decode_first is not None and w.decode_last is not None
    g = w.decode_at(_ceil(w.prefill_tokens + 1, bucket) - 1) \
        if w.decode_first.context != w.decode_last.context else w.decode_first
    return simulate_graph(spec, compressed(g, cfg), periodic=True).seconds


def default_fallback(w: SpeculativeWorkload, use_cache: bool = True) -> Fallback:
    """Raw graphs from the zoo's models (traced once, then cached on disk)."""
    def fb(phase: Phase, tokens: int, context: int, draft: bool) -> Graph:
        from models.cache import get_graph

        assert w.verify_first is not None
        return get_graph(w.draft if draft else w.model, phase, tokens=tokens, context=context,
                         batch=w.batch, dtype=w.verify_first.dtype, use_cache=use_cache)
    return fb

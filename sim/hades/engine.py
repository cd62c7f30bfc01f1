"""HADES event-driven simulator (SimPy): speculation rounds over the chip's units.

Processes: the **main PE array** (target prefill/verify, and the draft when ``draft_engine =
shared``), the **draft engine** (``separate``: its own array, pre-drafting the next round while
the target verifies, PEARL-style), the **SFU + verification unit** (probabilities, top-k and
accept/reject after each verify), the **KV rollback unit** and the **off-chip memory**, a
SimPy resource that passes hold for their memory time layer by layer, so a pre-draft streaming
its weights from HBM contends with verification. Per-op cycles come from ``sim.hades.units``;
the verifier's cycles from the RTL timing function (``sim.blocks.verifier``).

Parallel pre-drafting: during the verify of round r the draft engine drafts γ+1 tokens assuming
every draft is accepted and guessing the bonus token itself. Round r+1 uses them when round r
accepted all γ and the bonus guess was right (``Round.predrafted``); otherwise the pre-draft is
abandoned after its current step and the round drafts from scratch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import simpy

from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import Round, plan_rounds, tree_levels
from sim.hades.affine import AffineGraph
from sim.hades.spec import HadesSpec
from sim.hades.units import PassCost, pass_cost, sampling_cycles
from sim.hades.verifier import verify_cycles
from sim.perfetto import TraceWriter

__all__ = ["SpecRun", "run_speculative"]


@dataclass
class SpecRun:
    """What one speculative decode did: time split, unit busy time, action counts."""

    decode_s: float = 0.0
    split: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("draft", "verify", "sampling", "rollback"), 0.0))
    busy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("pe_array", "draft_engine", "offchip", "sfu_verifier", "rollback"), 0.0))
    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("macs", "offchip_bytes", "sram_bytes", "sfu_elems", "verifier_cycles", "rollback_bytes",
         "draft_passes", "verify_passes"), 0.0))
    bound_s: float = 0.0            # Σ roofline of every target pass (verify) on this chip
    predraft_hits: int = 0
    rounds: list[Round] = field(default_factory=list)
    wall_s: float = 0.0


class _Sim:
    def __init__(self, spec: HadesSpec, w: SpeculativeWorkload, trace: TraceWriter | None):
        assert w.config is not None and w.draft_first is not None and w.verify_first is not None
        self.spec, self.w, self.cfg, self.trace = spec, w, w.config, trace
        self.verify = AffineGraph.from_graphs(w.verify_first, w.verify_last)
        draft = AffineGraph.from_graphs(w.draft_first, w.draft_last)
        if self.cfg.tree:   # EAGLE-style: one draft pass per level over the previous level
            widths = [1, *tree_levels(self.cfg.tree)[:-1]]
            self.draft_steps = [draft.widen(n) for n in widths]
        else:
            self.draft_steps = [draft] * self.cfg.gamma
        self.parallel = spec.draft_engine == "separate"
        self.on_chip = self.parallel and draft.param_bytes <= spec.draft_sram_bytes
        self.contend = self.parallel and not self.on_chip   # both engines use off-chip memory
        self.indirect = bool(self.cfg.tree) and spec.kv_tree_mode == "indirection"
        # one sequence's K/V row (a batch's graphs write every sequence's)
        self.kv_row = sum(n.kv_write_bytes for n in w.verify_first.nodes) \
            / (self.verify.tokens * w.batch)
        self.draft_kv_row = sum(n.kv_write_bytes for n in w.draft_first.nodes) / w.batch
        self.env = simpy.Environment()
        self.mem = simpy.Resource(self.env, 1)
        self.main = simpy.Resource(self.env, 1)
        self.draft_unit = simpy.Resource(self.env, 1) if self.parallel else self.main
        self.r = SpecRun()

    # -- primitives ------------------------------------------------------------------------
    def _pass(self, cost: PassCost, unit: str, label: str, res: simpy.Resource):
        with res.request() as req:
            yield req
            start = self.env.now
            if self.contend:
                for alone, mem in cost.chunks:
                    t0 = self.env.now
                    if mem > 0:
                        with self.mem.request() as m:
                            yield m
                            yield self.env.timeout(mem)
                    rest = alone - (self.env.now - t0)
                    if rest > 0:
                        yield self.env.timeout(rest)
            else:
                yield self.env.timeout(cost.time_s)
            dur = self.env.now - start
        self.r.busy[unit] += dur
        self.r.busy["offchip"] += cost.mem_s
        c = self.r.counts
        c["macs"] += cost.macs
        c["offchip_bytes"] += cost.offchip_bytes
        c["sram_bytes"] += cost.sram_bytes
        c["sfu_elems"] += cost.sfu_elems
        if self.trace is not None:
            self.trace.span(unit, label, start, dur)

    def _draft_step(self, j: int, ctx: int, label: str):
        if self.cfg.zero_cost_draft:
            return
        cost = pass_cost(self.spec, self.draft_steps[j], ctx + j, draft=True,
                         weights_on_chip=self.on_chip, chunks=self.contend)
        unit = "draft_engine" if self.parallel else "pe_array"
        self.r.counts["draft_passes"] += 1
        yield from self._pass(cost, unit, label, self.draft_unit)
        # the draft samples its token: one max/softmax pass over its vocabulary on the SFU
        # (per sequence of the batch)
        yield self.env.timeout(sampling_cycles(self.spec, self.w.vocab, 1) * self.w.batch
                               / self.spec.clock_hz)

    def _predraft(self, ctx: int, state: dict):
        for j in range(self.cfg.gamma + 1):   # the bonus guess, then the next round's γ drafts
            if state["abort"]:
                return
            yield from self._draft_step(min(j, len(self.draft_steps) - 1), ctx, "predraft")
        state["done"] = True

    # -- one round -------------------------------------------------------------------------
    def _round(self, rd: Round, pre: dict | None):
        spec, env, s = self.spec, self.env, self.r.split
        t0 = env.now
        if rd.predrafted and pre is not None:
            yield pre["proc"]
        else:
            if pre is not None:
                pre["abort"] = True
                yield pre["proc"]
            for j in range(len(self.draft_steps)):
                yield from self._draft_step(j, rd.context, f"draft {rd.index}.{j}")
        s["draft"] += env.now - t0
        nxt = None
        if self.parallel and not self.cfg.tree and not self.cfg.zero_cost_draft:
            nxt = {"abort": False, "done": False}
            nxt["proc"] = env.process(self._predraft(rd.context + self.cfg.gamma + 1, nxt))
        t1 = env.now
        cost = pass_cost(spec, self.verify, rd.context, kv_indirect=self.indirect,
                         chunks=self.contend)
        self.r.bound_s += self.verify.roofline_s(spec, rd.context)
        self.r.counts["verify_passes"] += 1
        yield from self._pass(cost, "pe_array", f"verify {rd.index}", self.main)
        s["verify"] += env.now - t1
        # SFU: probabilities/argmax at every verified position, then the verification unit
        levels = len(tree_levels(self.cfg.tree)) if self.cfg.tree else None
        seqs = len(rd.paths)   # the verifier checks each sequence's drafts in turn
        vcyc = verify_cycles(spec, self.cfg.gamma, levels) * seqs
        scyc = sampling_cycles(spec, self.w.vocab, self.verify.tokens) * self.w.batch
        t2 = env.now
        yield env.timeout((scyc + vcyc) / spec.clock_hz)
        s["sampling"] += env.now - t2
        self.r.busy["sfu_verifier"] += env.now - t2
        self.r.counts["verifier_cycles"] += vcyc
        self.r.counts["sfu_elems"] += scyc * spec.sfu_lanes
        if self.trace is not None:
            self.trace.span("sfu_verifier", f"sample+verify {rd.index}", t2, env.now - t2,
                            accepted=rd.accepted)
        t3 = env.now
        yield from self._rollback(rd)
        s["rollback"] += env.now - t3
        self.r.busy["rollback"] += env.now - t3
        if self.trace is not None:
            self.trace.span("rollback", f"rollback {rd.index}", t3, env.now - t3)
        return nxt

    def _rollback(self, rd: Round):
        spec = self.spec
        seqs = len(rd.paths)
        if not self.cfg.tree:                        # chain: reset two length pointers
            yield self.env.timeout(spec.rollback_cycles * seqs / spec.clock_hz)
            return
        if spec.kv_tree_mode == "indirection":       # one table entry per kept row
            yield self.env.timeout((rd.accepted + seqs) / spec.clock_hz)
            return
        moved = sum(1 for path in rd.paths for k, node in enumerate(path) if node != k)
        nbytes = 2.0 * moved * (self.kv_row + self.draft_kv_row)   # read + write each row
        self.r.counts["rollback_bytes"] += nbytes
        self.r.counts["offchip_bytes"] += nbytes
        t = nbytes / (spec.offchip_bytes_per_s * spec.offchip_efficiency)
        with self.mem.request() as m:
            yield m
            yield self.env.timeout(max(t, spec.rollback_cycles / spec.clock_hz))
        self.r.busy["offchip"] += t

    def _main(self, rounds: list[Round]):
        pre = None
        for rd in rounds:
            pre = yield from self._round(rd, pre)
            if rd.predrafted:
                self.r.predraft_hits += 1
        if pre is not None:
            pre["abort"] = True

    def run(self) -> SpecRun:
        t = time.perf_counter()
        rounds = plan_rounds(self.cfg, self.w.prefill_tokens, self.w.decode_tokens,
                             self.w.batch)
        self.r.rounds = rounds
        self.env.process(self._main(rounds))
        self.env.run()
        self.r.decode_s = sum(self.r.split.values())
        self.r.wall_s = time.perf_counter() - t
        return self.r


def run_speculative(spec: HadesSpec, w: SpeculativeWorkload,
                    trace: TraceWriter | None = None) -> SpecRun:
    """Simulate the decode phase of ``w`` (speculation rounds) on ``spec``."""
    return _Sim(spec, w, trace).run()

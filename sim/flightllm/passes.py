"""The passes of FlightLLM speculation (``sim.flightllm.speculate``): per-bucket pass times of
the draft, verify and rollback programs, and where each runs.

:class:`PassCache` simulates one kind of pass (one graph shape at every context) once per
length bucket; :class:`Passes` holds them all for a workload: the draft's passes per round
(a chain's gamma decode steps, or a tree's per-level passes), the verify's passes (one, or
B-buffer-sized groups of a tree's tokens) and the tree rollback's compaction programs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mapping.flightllm.compression import CompressionConfig
from mapping.flightllm.decode import TREE_MASK_KEYS, max_pass_tokens
from mapping.flightllm.rollback import generate_rollback
from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import tree_levels
from models.errors import UserError
from models.graph import Graph, Phase, interpolate
from sim.flightllm.draft import check_draft_fits, draft_engine_spec
from sim.flightllm.simulate import DECODE_BUCKET, PassResult, compressed, simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles
from sim.spec import FlightLLMSpec

__all__ = ["Fallback", "PassCache", "Passes"]

# (phase, tokens, context, draft?) -> the raw traced graph of the target or the draft
Fallback = Callable[[Phase, int, int, bool], Graph]


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def _masked(g: Graph, keys: int | None) -> Graph:
    """``g`` marked as a token-tree pass whose mask covers ``keys`` new keys (decode.py)."""
    if keys is None:
        return g
    import dataclasses

    return dataclasses.replace(g, meta=tuple(sorted({**dict(g.meta),
                                                     TREE_MASK_KEYS: keys}.items())))


class PassCache:
    """Simulated pass time per (graph kind, length bucket), each bucket simulated once.

    ``first``/``last``: two traces (or compressed/mapped graphs) of one phase at two contexts;
    the graph at any other context is their affine interpolation, or ``fallback(context)``
    (e.g. ``models.cache.get_graph``) when a field is not affine in the context.
    ``mask_keys``: a token tree's pass (its mask covers that many new keys); ``onchip``: the
    linear weights sit in URAM (``draft_weights = "uram"``).
    """

    def __init__(self, spec: FlightLLMSpec, first: Graph, last: Graph,
                 cfg: CompressionConfig | None = None, bucket: int = DECODE_BUCKET,
                 fallback: Callable[[int], Graph] | None = None, *,
                 mask_keys: int | None = None, onchip: bool = False) -> None:
        self.spec, self.first, self.last, self.cfg = spec, first, last, cfg
        self.bucket, self.fallback = bucket, fallback
        self.mask_keys, self.onchip = mask_keys, onchip
        self.done: dict[int, PassResult] = {}
        # called with the PassResult of every pass run through ``seconds`` (the energy tally)
        self.on_pass: Callable[[PassResult], None] | None = None

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
            g = compressed(_masked(self.graph_at(c), self.mask_keys), self.cfg)
            self.done[c] = simulate_graph(self.spec, g, periodic=True,
                                          weights_on_chip=self.onchip)
        return self.done[c]

    def seconds(self, context: int) -> float:
        r = self.at(context)
        if self.on_pass is not None:
            self.on_pass(r)
        return r.seconds


def _groups(tokens: int, limit: int) -> list[tuple[int, int]]:
    """(offset, tokens) of the passes that run ``tokens`` at most ``limit`` at a time."""
    return [(o, min(limit, tokens - o)) for o in range(0, tokens, limit)]


class Passes:
    """Every pass of one speculative workload on ``spec``; UserError for a draft placement
    that does not fit (URAM, HBM channels) or a pass no B buffer holds one token of."""

    def __init__(self, spec: FlightLLMSpec, w: SpeculativeWorkload,
                 cfg: CompressionConfig | None, bucket: int, fallback: Fallback) -> None:
        sc = w.config
        assert sc is not None and w.verify_first is not None and w.draft_first is not None
        self.spec, self.w, self.sc, self.cfg, self.bucket, self.fb = spec, w, sc, cfg, bucket, \
            fallback
        self.separate = spec.draft_engine == "separate"
        self.dspec = draft_engine_spec(spec) if self.separate else spec
        self.onchip = spec.draft_weights == "uram"
        self.uram288 = check_draft_fits(spec, compressed(w.draft_first, cfg), w.draft) \
            if self.onchip else 0
        self.end = w.prefill_tokens + w.decode_tokens + sc.draft_steps
        self.caches: dict[tuple[bool, int, int | None], PassCache] = {}
        self.rollbacks: dict[tuple, tuple[float, int]] = {}
        self.moved_bytes = 0
        # every pass the schedule runs (draft, verify, pre-draft) is handed to this, if set
        self.on_pass: Callable[[PassResult], None] | None = None
        t = w.verify_first.tokens
        self.groups = [(0, t)]
        if sc.tree:   # a tree's verify: B-buffer-sized groups (chains: check_batch_buffers)
            self.groups = _groups(t, self._limit(w.verify_first, spec, "verify", t))
        # draft passes per round: (context offset, tokens, tree-mask keys)
        self.dsteps: list[tuple[int, int, int | None]] = [(j, 1, None) for j in range(sc.gamma)]
        if sc.tree:
            levels = tree_levels(sc.tree)
            dl = self._limit(w.draft_first, self.dspec, "draft level", max(levels))
            self.dsteps = [(0, 1, None)]   # the root (last emitted token): a decode step
            for j in range(1, len(levels)):   # level j's nodes, over root + levels < j
                before = 1 + sum(levels[:j - 1])
                self.dsteps += [(before + o, q, before + o + q)
                                for o, q in _groups(levels[j - 1], dl)]

    def _limit(self, g: Graph, spec: FlightLLMSpec, what: str, tokens: int) -> int:
        limit = max_pass_tokens(g, arch_of(spec))
        if limit < 1:
            raise UserError(f"--tree on {spec.name}: the {what} pass of {tokens} tokens of "
                            f"{g.model} cannot hold even one token's input vector in the B "
                            f"buffer ({int(spec.b_buffer_bytes)} bytes); give the preset a "
                            "larger b_buffer_bytes")
        return limit

    # -- pass caches -----------------------------------------------------------------------
    def cache(self, draft: bool, tokens: int, keys: int | None) -> PassCache:
        key = (draft, tokens, keys)
        if key not in self.caches:
            w, fb = self.w, self.fb
            spec = self.dspec if draft else self.spec
            phase = Phase.DECODE if draft and keys is None else Phase.VERIFY
            if draft and keys is None:
                first, last = w.draft_first, w.draft_last
            elif not draft and tokens == w.verify_first.tokens:
                first, last = w.verify_first, w.verify_last
            else:   # a tree level or a verify group: traced at this token count
                first = fb(phase, tokens, w.prefill_tokens, draft)
                last = fb(phase, tokens, self.end, draft)
            assert first is not None and last is not None
            self.caches[key] = PassCache(
                spec, first, last, self.cfg, self.bucket,
                lambda c, p=phase, t=tokens, d=draft: fb(p, t, c, d),
                mask_keys=keys, onchip=self.onchip and draft)
            self.caches[key].on_pass = lambda r: self.on_pass(r) if self.on_pass else None
        return self.caches[key]

    def draft_steps(self, context: int) -> list[float]:
        """Seconds of each draft pass of a round starting at ``context``."""
        return [self.cache(True, q, k).seconds(context + o) for o, q, k in self.dsteps]

    def draft_passes(self, context: int) -> int:
        return len(self.dsteps)

    def predraft(self, context: int) -> list[float]:
        """A separate engine's pre-draft during the verify of the chain round at ``context``:
        gamma + 1 steps from the context after all drafts and the bonus (HADES)."""
        nxt = context + self.sc.gamma + 1
        return [self.cache(True, 1, None).seconds(nxt + j) for j in range(self.sc.gamma + 1)]

    def verify_s(self, context: int) -> float:
        keys = (lambda o, q: o + q) if self.sc.tree else (lambda o, q: None)
        return sum(self.cache(False, q, keys(o, q)).seconds(context + o)
                   for o, q in self.groups)

    # -- rollback --------------------------------------------------------------------------
    def rollback_s(self, rd: Any) -> float:
        """A chain's rollback: 0 (pointer reset). A tree's: the compaction programs of the
        target's cache and the draft's (the nodes its level passes wrote: depth < the tree's),
        the draft's on its own engine beside the cores' when separate."""
        if not self.sc.tree:
            return 0.0
        depth = len(tree_levels(self.sc.tree))
        wc = self.spec.weight_channels
        key = (rd.path, rd.context % wc)
        if key not in self.rollbacks:
            t, tb = self._compaction(self.spec, self.w.verify_first, rd.context, rd.path)
            d, db = self._compaction(self.dspec, self.w.draft_first, rd.context,
                                     rd.path[:depth - 1])
            self.rollbacks[key] = (max(t, d) if self.separate else t + d, tb + db)
        s, nbytes = self.rollbacks[key]
        self.moved_bytes += nbytes
        return s

    def _compaction(self, spec: FlightLLMSpec, g: Graph, context: int,
                    path: tuple[int, ...]) -> tuple[float, int]:
        from sim.flightllm.engine_fast import run_fast

        prog = generate_rollback(compressed(g, self.cfg), arch_of(spec), context, path)
        if not prog.moves:
            return 0.0, 0
        prog = fill_cycles(prog.program, spec)
        _, finish = run_fast(prog, spec.hbm_channels)
        cycles = max(int(f.max()) for f in finish if len(f))
        return cycles / spec.clock_hz, sum(int(a["nbytes"].sum()) for a in prog.cores)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "draft_engine": self.spec.draft_engine, "draft_weights": self.spec.draft_weights,
            "verify_buckets": sum(len(c.done) for k, c in self.caches.items() if not k[0]),
            "draft_buckets": sum(len(c.done) for k, c in self.caches.items() if k[0]),
            "verify_groups": [q for _, q in self.groups]}
        if self.onchip:
            out["draft_uram288"] = self.uram288
        if self.sc.tree:
            out["tree_mask_bytes_per_layer_core"] = sum(-(-q * (o + q) // 8)
                                                        for o, q in self.groups)
            out["draft_level_passes"] = [q for _, q, _ in self.dsteps]
        return out

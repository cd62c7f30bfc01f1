"""Speculative-decoding schedule: rounds of γ draft steps + one verify pass, torch-free.

A decode of D tokens becomes rounds. In round r (cache of ``context`` tokens with KV):

1. draft: γ draft decode steps (chain) or ``depth`` draft steps over the tree levels;
2. verify: one target pass over γ+1 positions (the last emitted token + γ drafts) or 1 + n
   tree nodes, with a causal or tree-attention mask; the target writes KV for all of them;
3. acceptance: A leading drafts (or a root-to-node path of length A) are accepted;
4. rollback: valid KV becomes ``context + 1 + A`` — a pointer reset for chains, a gather of the
   accepted path's rows (or an indirection-table update) for trees;
5. the bonus (all accepted) or resampled token is emitted: A + 1 tokens per round.

:func:`plan_rounds` draws acceptance with a seeded generator and returns the rounds; timing
models (roofline on any device, the HADES simulator) walk the same rounds, so every design sees
identical speculation. :class:`KVCacheModel` is the reference of what rollback must leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mapping.acceptance import Acceptance, IIDAcceptance, TraceAcceptance, children_of
from models.errors import UserError

__all__ = [
    "DRAFT_MODES",
    "KVCacheModel",
    "Round",
    "SpecConfig",
    "check_spec_tree",
    "check_vocab",
    "eagle2_like_tree",
    "plan_rounds",
    "tree_levels",
]

DRAFT_MODES = ("shared", "parallel")   # time-multiplexed on the target's array, or own engine


def check_spec_tree(parents: Sequence[int]) -> tuple[int, ...]:
    """Validate a token tree; UserError naming a cycle or an orphan node.

    ``parents[i]`` is node i's parent, -1 for a child of the last verified token. Nodes may be
    listed in any order; the tree is returned renumbered in topological (BFS) order, which the
    tracer and the schedule need.
    """
    parents = tuple(parents)
    n = len(parents)
    if n == 0:
        raise UserError("--tree is empty; give the parent of each draft token, e.g. -1,0,0,1")
    for i, p in enumerate(parents):
        if isinstance(p, bool) or not isinstance(p, int) or not -1 <= p < n or p == i:
            what = "itself" if p == i else f"node {p}, which does not exist"
            raise UserError(f"--tree node {i} is an orphan: its parent is {what}; a parent must "
                            f"be -1 (the root) or another node 0..{n - 1}")
    for i in range(n):
        seen, node = set(), i
        while node != -1:
            if node in seen:
                cyc = " -> ".join(str(x) for x in [*seen, node])
                raise UserError(f"--tree has a cycle through node {node} ({cyc}); every node "
                                "must reach the root (-1) by following parents")
            seen.add(node)
            node = parents[node]
    order: list[int] = []
    kids = children_of(parents)
    frontier = [-1]
    while frontier:
        nxt = []
        for v in frontier:
            for c in kids.get(v, []):
                order.append(c)
                nxt.append(c)
        frontier = nxt
    new = {old: k for k, old in enumerate(order)}
    return tuple(-1 if parents[old] == -1 else new[parents[old]] for old in order)


def tree_levels(parents: Sequence[int]) -> list[int]:
    """Number of nodes at each depth (depth 1 first): the draft's per-level widths."""
    depth: list[int] = []
    for p in parents:
        depth.append(1 if p < 0 else depth[p] + 1)
    return [depth.count(d) for d in range(1, max(depth) + 1)]


def eagle2_like_tree(nodes: int = 60, depth: int = 6, topk: int = 10,
                     beta: float = 0.4) -> tuple[int, ...]:
    """A static EAGLE-2-like tree: best-first expansion by path confidence.

    EAGLE-2 (Li et al. 2024) expands the top-k children of each frontier node for ``depth``
    levels and keeps the ``nodes`` most confident tokens (confidence = product of the draft's
    probabilities along the path). Offline we stand in a geometric rank profile for the draft's
    probabilities: the rank-j child (0-based) has confidence (1 − β)·β^j. Because confidence
    only decreases along a path, the top-``nodes`` set is ancestor-closed (a valid tree).
    """
    import heapq

    heap = [(-(1 - beta) * beta**j, (j,)) for j in range(topk)]
    heapq.heapify(heap)
    chosen: list[tuple[float, tuple[int, ...]]] = []
    while heap and len(chosen) < nodes:
        negc, path = heapq.heappop(heap)
        chosen.append((-negc, path))
        if len(path) < depth:
            for j in range(topk):
                heapq.heappush(heap, (negc * (1 - beta) * beta**j, (*path, j)))
    chosen.sort(key=lambda cp: (len(cp[1]), cp[1]))  # BFS order, rank order within a level
    index = {path: i for i, (_, path) in enumerate(chosen)}
    return tuple(-1 if len(p) == 1 else index[p[:-1]] for _, p in chosen)


def check_vocab(target: str, target_vocab: int, draft: str, draft_vocab: int) -> None:
    """Speculative decoding compares token ids: the vocabularies must be identical."""
    if target_vocab != draft_vocab:
        raise UserError(f"--draft {draft} has a vocabulary of {draft_vocab} tokens but the target "
                        f"{target} has {target_vocab}; draft and target must share a tokenizer "
                        "(e.g. llama-68m drafts for llama2-7b/13b)")


@dataclass(frozen=True)
class SpecConfig:
    """What the speculation looks like: chain of γ or a tree, acceptance, draft engine."""

    gamma: int = 4
    tree: tuple[int, ...] | None = None     # parents; None: a chain of gamma
    acceptance: Acceptance = field(default_factory=lambda: IIDAcceptance(0.8))
    zero_cost_draft: bool = False           # the draft takes no time (tests of E)
    seed: int = 0

    def __post_init__(self) -> None:
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise UserError(f"--gamma {g!r}: the draft length must be an integer >= 1")
        if self.tree is not None:
            object.__setattr__(self, "tree", check_spec_tree(self.tree))

    @property
    def verify_tokens(self) -> int:
        """Target positions per verify pass: the last emitted token + the drafts."""
        return 1 + (len(self.tree) if self.tree else self.gamma)

    @property
    def draft_steps(self) -> int:
        """Sequential draft forward passes per round (tree: one per level)."""
        return len(tree_levels(self.tree)) if self.tree else self.gamma

    @property
    def max_accept(self) -> int:
        return len(tree_levels(self.tree)) if self.tree else self.gamma

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"gamma": self.gamma, "acceptance": self.acceptance.describe(),
                                "seed": self.seed}
        if self.tree:
            d.update(tree_nodes=len(self.tree), tree_levels=tree_levels(self.tree))
            d.pop("gamma")
        return d


@dataclass(frozen=True)
class Round:
    """One speculation round (at batch > 1: of every sequence, in lockstep)."""

    index: int
    context: int            # tokens with valid KV when the round starts (batch: the mean)
    accepted: int           # accepted drafts A (batch: summed over the sequences)
    emitted: int            # tokens emitted (A + 1, the last round may be truncated)
    path: tuple[int, ...]   # tree: accepted node indices (chain: 0..A-1)
    predrafted: bool        # parallel draft engine: this round's drafts were made during the
                            # previous verify (previous round fully accepted, bonus guessed)
    # batch > 1: the accepted path of each sequence still generating (its own acceptance)
    seqs: tuple[tuple[int, ...], ...] = ()

    @property
    def paths(self) -> tuple[tuple[int, ...], ...]:
        """The accepted path of every sequence the round verified."""
        return self.seqs or (self.path,)


def plan_rounds(cfg: SpecConfig, prefill: int, decode: int, batch: int = 1) -> list[Round]:
    """Rounds that emit ``decode`` tokens per sequence after a prompt of ``prefill`` (seeded
    by cfg.seed).

    At ``batch`` > 1 the sequences run in lockstep (one batched draft step, one batched verify
    per round), each with its own acceptance draws (in sequence order, one generator); a
    sequence that has emitted its ``decode`` tokens keeps its slot idle until the last one
    ends. Every count in a pass is affine in the context, so the batch's pass at the mean of
    its sequences' contexts costs what their own contexts would (``Round.context``).
    """
    if decode < 1:
        raise UserError("speculative decoding needs --decode >= 1")
    rng = np.random.default_rng(cfg.seed)
    acc = cfg.acceptance
    if isinstance(acc, TraceAcceptance):
        acc.reset()
    rounds: list[Round] = []
    done, ctx, pre = [0] * batch, [prefill] * batch, False
    while min(done) < decode:
        context = round(sum(ctx) / batch)
        paths, emitted, full_all = [], 0, True
        for b in range(batch):
            if done[b] >= decode:
                continue
            if cfg.tree:
                path = tuple(acc.draw_tree(rng, cfg.tree))
                full = len(path) == cfg.max_accept
            else:
                path = tuple(range(acc.draw(rng, cfg.gamma)))
                full = len(path) == cfg.gamma
            # the draft engine guessed the bonus token too (chains): pre-drafts hold
            full_all = full_all and full and not cfg.tree and acc.bonus_match(rng, cfg.gamma)
            emit = min(len(path) + 1, decode - done[b])
            paths.append(path)
            emitted += emit
            done[b] += emit
            ctx[b] += len(path) + 1
        rounds.append(Round(len(rounds), context, sum(map(len, paths)), emitted, paths[0],
                            pre, tuple(paths) if batch > 1 else ()))
        pre = full_all
    return rounds


class KVCacheModel:
    """Reference KV cache: each row holds the token id whose K/V it stores.

    ``mode`` "pointer" (chains), "gather" (tree: copy the accepted path's rows down) or
    "indirection" (tree: a logical→physical row table, no copy). :meth:`logical` is what
    attention sees; after every round it must equal the emitted sequence minus its last token.
    """

    def __init__(self, prompt: Sequence[int], mode: str = "pointer") -> None:
        if mode not in ("pointer", "gather", "indirection"):
            raise ValueError(f"mode {mode!r}: pointer, gather or indirection")
        self.mode = mode
        self.rows: list[int] = list(prompt)       # physical rows
        self.table: list[int] = list(range(len(prompt)))  # logical -> physical
        self.length = len(prompt)                  # valid logical length
        self.rows_moved = 0                        # rows copied by compaction (a cost)

    def logical(self) -> list[int]:
        if self.mode == "indirection":
            return [self.rows[i] for i in self.table[: self.length]]
        return self.rows[: self.length]

    def verify(self, last: int, drafts: Sequence[int], parents: Sequence[int] | None,
               path: Sequence[int]) -> None:
        """Write KV for ``last`` + every draft node, then keep only ``last`` + the ``path``."""
        base = len(self.rows) if self.mode == "indirection" else self.length
        del self.rows[base:]
        self.rows += [last, *drafts]                 # rows base .. base + n
        if parents is None:
            parents = tuple(range(-1, len(drafts) - 1))
        for k, node in enumerate(path):               # path must be a root-to-node chain
            if parents[node] != (path[k - 1] if k else -1):
                raise ValueError(f"path {list(path)} is not a root-to-node path")
        keep = [base] + [base + 1 + node for node in path]
        if self.mode == "indirection":
            self.table[self.length:] = keep
        else:
            for k, src in enumerate(keep):
                dst = self.length + k
                if src != dst:
                    self.rows[dst] = self.rows[src]
                    self.rows_moved += 1
            del self.rows[self.length + len(keep):]
        self.length += len(keep)

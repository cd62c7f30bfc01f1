"""Acceptance models for speculative decoding: how many draft tokens the target accepts.

Three models, all seeded through a ``numpy.random.Generator`` passed in by the caller:

- :class:`IIDAcceptance` — every draft token is accepted with the same probability α,
  independently (Leviathan et al. 2023, §3.1). Expected tokens per verify pass
  ``E = (1 − α^(γ+1)) / (1 − α)`` (:func:`expected_tokens`).
- :class:`PositionalAcceptance` — the k-th draft token of a round (1-based) is accepted with
  probability α_k given all earlier ones were (acceptance typically decays with depth). Positions
  past the list reuse its last value.
- :class:`TraceAcceptance` — replays accepted lengths measured on a real system, round by round
  (cycling when the simulation needs more rounds than the trace has).

Trace format (JSONL, one object per verify round; blank lines and lines starting with ``#`` are
ignored)::

    {"accepted": 3}                                  # draft tokens accepted in this round
    {"accepted": 4, "gamma": 4, "bonus_match": true}

``accepted`` (required, int ≥ 0) counts accepted *draft* tokens, not the bonus/corrected token,
so the round emits ``accepted + 1`` tokens. ``gamma`` (optional) is the draft length the system
used; a round with ``accepted > gamma`` is an error. ``bonus_match`` (optional, default false)
says whether the draft's own next-token guess equalled the target's bonus token; only the
parallel draft engine's pre-drafting uses it. When ``--gamma`` is not given, the largest
``gamma`` (or largest ``accepted``) in the trace is used.

Tree rounds: every node of a token tree is a candidate at its depth; the model walks from the
root, trying the children of the current node in index order (index = draft rank), each accepted
independently with α_depth, and follows the first accepted child (SpecInfer's multi-candidate
verification under an independence assumption). A trace gives the accepted depth directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError, empty

__all__ = [
    "Acceptance",
    "IIDAcceptance",
    "PositionalAcceptance",
    "TraceAcceptance",
    "children_of",
    "expected_tokens",
    "expected_tokens_positional",
    "load_trace",
]


def expected_tokens(alpha: float, gamma: int) -> float:
    """Mean tokens per verify pass with i.i.d. acceptance α and γ drafts (Leviathan eq. 1)."""
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_tokens_positional(alphas: Sequence[float], gamma: int) -> float:
    """Mean tokens per pass when draft k is accepted with α_k given its predecessors were."""
    e, p = 1.0, 1.0
    for k in range(gamma):
        p *= alphas[min(k, len(alphas) - 1)]
        e += p
    return e


def _check_alpha(name: str, a: float) -> float:
    if isinstance(a, bool) or not isinstance(a, int | float) or math.isnan(a) or not 0 <= a <= 1:
        raise UserError(f"{name} = {a!r}: an acceptance probability must be in [0, 1]")
    return float(a)


def children_of(parents: Sequence[int]) -> dict[int, list[int]]:
    """Children (in index order) of each node; key -1 is the root (the last verified token)."""
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        kids.setdefault(p, []).append(i)
    return kids


class Acceptance:
    """Base class: ``draw`` gives accepted drafts of a chain; ``draw_tree`` a path in a tree."""

    name = "acceptance"

    def alpha(self, k: int) -> float:  # pragma: no cover - abstract
        """Acceptance probability of the k-th (1-based) draft position."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, gamma: int) -> int:
        """Leading accepted tokens among ``gamma`` drafts."""
        for k in range(1, gamma + 1):
            if rng.random() >= self.alpha(k):
                return k - 1
        return gamma

    def bonus_match(self, rng: np.random.Generator, gamma: int) -> bool:
        """Whether the draft's guess of the bonus token after a full accept is right."""
        return bool(rng.random() < self.alpha(gamma + 1))

    def draw_tree(self, rng: np.random.Generator, parents: Sequence[int]) -> list[int]:
        """Node indices of the accepted root-to-node path (may be empty)."""
        kids = children_of(parents)
        path: list[int] = []
        node = -1
        while node in kids:
            depth = len(path) + 1
            nxt = next((c for c in kids[node] if rng.random() < self.alpha(depth)), None)
            if nxt is None:
                break
            path.append(nxt)
            node = nxt
        return path

    def mean_tokens(self, gamma: int) -> float:
        """Analytic mean tokens per pass for a chain of ``gamma`` (when known)."""
        return expected_tokens_positional([self.alpha(k) for k in range(1, gamma + 1)], gamma)

    def describe(self) -> dict[str, object]:
        return {"model": self.name}


@dataclass(frozen=True)
class IIDAcceptance(Acceptance):
    alpha_value: float
    name = "iid"

    def __post_init__(self) -> None:
        _check_alpha("--alpha", self.alpha_value)

    def alpha(self, k: int) -> float:
        return self.alpha_value

    def draw(self, rng: np.random.Generator, gamma: int) -> int:
        if self.alpha_value >= 1.0:
            return gamma
        # leading successes of Bernoulli(α) = a geometric count, capped at γ
        return int(min(gamma, rng.geometric(1.0 - self.alpha_value) - 1))

    def mean_tokens(self, gamma: int) -> float:
        return expected_tokens(self.alpha_value, gamma)

    def describe(self) -> dict[str, object]:
        return {"model": self.name, "alpha": self.alpha_value}


@dataclass(frozen=True)
class PositionalAcceptance(Acceptance):
    alphas: tuple[float, ...]
    name = "positional"

    def __post_init__(self) -> None:
        if not self.alphas:
            raise UserError("per-position acceptance needs at least one α_k")
        for k, a in enumerate(self.alphas, 1):
            _check_alpha(f"alpha_{k}", a)

    def alpha(self, k: int) -> float:
        return self.alphas[min(k, len(self.alphas)) - 1]

    def describe(self) -> dict[str, object]:
        return {"model": self.name, "alphas": list(self.alphas)}


@dataclass(frozen=True)
class TraceAcceptance(Acceptance):
    """Replays ``rounds`` = ((accepted, gamma or None, bonus_match), ...) in order, cycling."""

    rounds: tuple[tuple[int, int | None, bool], ...]
    source: str = "<trace>"
    name = "trace"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_state", [0, None])  # [next round index, last round]

    @property
    def gamma(self) -> int:
        return max(max(g or 0, a) for a, g, _ in self.rounds) or 1

    def _next(self) -> tuple[int, int | None, bool]:
        st = self._state  # type: ignore[attr-defined]
        st[1] = self.rounds[st[0] % len(self.rounds)]
        st[0] += 1
        return st[1]

    def reset(self) -> None:
        """Start replaying from the first round again."""
        self._state[:] = [0, None]  # type: ignore[attr-defined]

    def alpha(self, k: int) -> float:
        """Empirical P(position k accepted | k−1 accepted) over the trace."""
        reach = sum(1 for a, _, _ in self.rounds if a >= k - 1)
        ok = sum(1 for a, _, _ in self.rounds if a >= k)
        return ok / reach if reach else 0.0

    def draw(self, rng: np.random.Generator, gamma: int) -> int:
        return min(self._next()[0], gamma)

    def bonus_match(self, rng: np.random.Generator, gamma: int) -> bool:
        last = self._state[1]  # type: ignore[attr-defined]
        return bool(last and last[0] >= gamma and last[2])

    def draw_tree(self, rng: np.random.Generator, parents: Sequence[int]) -> list[int]:
        depth = self.draw(rng, len(parents))
        kids = children_of(parents)
        path, node = [], -1
        while len(path) < depth and node in kids:  # leftmost path of the recorded depth
            node = kids[node][0]
            path.append(node)
        return path

    def mean_tokens(self, gamma: int) -> float:
        return 1.0 + sum(min(a, gamma) for a, _, _ in self.rounds) / len(self.rounds)

    def describe(self) -> dict[str, object]:
        return {"model": self.name, "source": self.source, "rounds": len(self.rounds)}


def load_trace(path: str | Path) -> TraceAcceptance:
    """Read a JSONL acceptance trace (format in the module docstring)."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"--acceptance file {str(p)!r} does not exist") from None
    rounds = []
    for no, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise UserError(f"{p}:{no}: not JSON ({e.msg}); each line is an object such as "
                            '{"accepted": 3}') from None
        a = obj.get("accepted") if isinstance(obj, dict) else None
        if isinstance(a, bool) or not isinstance(a, int) or a < 0:
            raise UserError(f"{p}:{no}: 'accepted' must be an integer >= 0, got {a!r}")
        g = obj.get("gamma")
        if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 1 or a > g):
            raise UserError(f"{p}:{no}: 'gamma' must be an integer >= 1 and >= accepted "
                            f"({a}), got {g!r}")
        rounds.append((a, g, bool(obj.get("bonus_match", False))))
    if not rounds:
        raise UserError(empty("--acceptance file", p, 'one JSON object per round and line, '
                              'such as {"accepted": 3}'))
    return TraceAcceptance(tuple(rounds), str(p))

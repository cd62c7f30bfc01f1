"""The verification unit: functional reference (numpy) and timing (from the RTL's timing model).

Functional (chain, Leviathan et al. 2023 / Chen et al. 2023):

- greedy: accept drafts while they equal the target argmax; emit the target argmax at the first
  mismatch, or the bonus argmax at position γ;
- sample: accept draft x_i with probability min(1, p_i(x_i)/q_i(x_i)); at the first rejection
  draw from norm(max(0, p_i − q_i)); if all γ pass, draw the bonus from p_γ. The emitted tokens
  are then distributed exactly as the target's (tests check it statistically).

Timing comes from ``sim.blocks.verifier.verifier_timing`` — the same function the RTL block's
cocotb test checks — so the simulator and the RTL agree on the unit's cycles.
"""

from __future__ import annotations

import numpy as np

from sim.blocks.verifier import round_cycles
from sim.hades.spec import HadesSpec

__all__ = ["verify_cycles", "verify_greedy", "verify_sample"]


def verify_greedy(draft: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``draft`` (B, γ), ``target`` argmaxes (B, γ+1) → (accepted (B,), emitted token (B,))."""
    draft, target = np.asarray(draft), np.asarray(target)
    match = draft == target[:, :-1]
    accepted = np.cumprod(match, axis=1).sum(axis=1)
    return accepted, target[np.arange(len(target)), accepted]


def verify_sample(draft: np.ndarray, p: np.ndarray, q: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling. ``draft`` (B, γ) ids, ``p`` (B, γ+1, V), ``q`` (B, γ, V).

    Returns (accepted (B,), emitted token (B,)): the resampled token at the first rejection, or
    the bonus token drawn from p_γ when all drafts pass.
    """
    b, gamma = draft.shape
    idx = np.arange(b)[:, None]
    pos = np.arange(gamma)[None, :]
    px = p[idx, pos, draft]                   # (B, γ)
    qx = q[idx, pos, draft]
    u = rng.random((b, gamma))
    ok = u * qx < px                          # u < p/q without dividing by q = 0
    accepted = np.cumprod(ok, axis=1).sum(axis=1)
    q_pad = np.concatenate([q, np.zeros_like(p[:, :1])], axis=1)  # bonus position: q = 0
    p_a = p[np.arange(b), accepted]           # (B, V)
    res = np.maximum(p_a - q_pad[np.arange(b), accepted], 0.0)
    tot = res.sum(axis=1, keepdims=True)
    dist = np.where(tot > 0, res / np.where(tot > 0, tot, 1.0), p_a)
    cdf = np.cumsum(dist, axis=1)
    r = rng.random((b, 1)) * cdf[:, -1:]
    token = np.minimum((cdf <= r).sum(axis=1), p.shape[2] - 1)
    return accepted, token


def verify_cycles(spec: HadesSpec, gamma: int, levels: int | None = None) -> int:
    """Cycles of the verification unit for one round (chain of ``gamma``, or a tree of
    ``levels``): ``sim.blocks.verifier.round_cycles`` in the spec's mode."""
    return round_cycles(spec.verify_mode, gamma, levels, vocab=spec.verify_topk)

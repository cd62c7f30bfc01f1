"""Speculative-decoding verification reference (chain drafts; Leviathan et al. 2023).

Greedy: accept draft tokens while they equal the target argmax; the emitted token is the
target argmax at the first mismatch (correction) or at position γ (bonus).

Sampling, fixed point: p, q are UQ0.16 probabilities (integer / 2**16) of the target and draft;
u, r are UQ0.16 uniform randoms. Position i < γ accepts draft x_i iff ``u_i · q_i[x_i] <
p_i[x_i] · 2**16`` (u < p/q, i.e. probability min(1, p/q)). At the first rejected position A
(A = γ when all pass: the bonus position, where q counts as 0) the token is drawn from
``res = max(0, p_A − q_A)`` (or from p_A when res sums to 0) by inverse CDF: the first v with
``cumsum(res)[v] > (r_A · Σres) >> 16``; token 0 when the distribution is all zero.
"""

from __future__ import annotations

import torch

from kernels._device import resolve_device

__all__ = ["verify_greedy", "verify_sample"]


def verify_greedy(draft: torch.Tensor, target: torch.Tensor, *,
                  device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``draft`` (B, γ), ``target`` (B, γ+1) token ids → (accepted (B,), token (B,)) int64."""
    dev = resolve_device(device)
    d = draft.to(dev, torch.int64)
    t = target.to(dev, torch.int64)
    if t.shape[:-1] != d.shape[:-1] or t.shape[-1] != d.shape[-1] + 1:
        raise ValueError(f"draft {tuple(d.shape)}, target {tuple(t.shape)}: need (B, γ), (B, γ+1)")
    match = (d == t[..., :-1]).to(torch.int64)
    accepted = torch.cumprod(match, dim=-1).sum(dim=-1)  # leading matches
    token = torch.gather(t, -1, accepted.unsqueeze(-1)).squeeze(-1)
    return accepted, token


def _first_rejection(draft, p, q, u):
    gamma = draft.shape[-1]
    x = draft.unsqueeze(-1)
    p_x = torch.gather(p[:, :gamma], 2, x).squeeze(-1)  # (B, γ)
    q_x = torch.gather(q, 2, x).squeeze(-1)
    accept = (u * q_x < (p_x << 16)).to(torch.int64)
    return torch.cumprod(accept, dim=-1).sum(dim=-1)  # (B,)


def verify_sample(draft: torch.Tensor, p: torch.Tensor, q: torch.Tensor, u: torch.Tensor,
                  r: torch.Tensor, *, device: str | torch.device | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point rejection sampling.

    ``draft`` (B, γ) ids < V; ``p`` (B, γ+1, V), ``q`` (B, γ, V), ``u`` (B, γ), ``r`` (B, γ+1)
    UQ0.16 integers → (accepted (B,), token (B,)) int64.
    """
    dev = resolve_device(device)
    draft, p, q, u, r = (t.to(dev, torch.int64) for t in (draft, p, q, u, r))
    b, gamma = draft.shape
    if p.shape[:2] != (b, gamma + 1) or q.shape != (b, gamma, p.shape[2]):
        raise ValueError(f"p {tuple(p.shape)}, q {tuple(q.shape)}: need (B, γ+1, V), (B, γ, V)")
    accepted = _first_rejection(draft, p, q, u)
    q_pad = torch.cat([q, torch.zeros_like(p[:, :1])], dim=1)  # bonus position: q = 0
    sel = accepted.view(b, 1, 1).expand(b, 1, p.shape[2])
    p_a = torch.gather(p, 1, sel).squeeze(1)  # (B, V)
    res = (p_a - torch.gather(q_pad, 1, sel).squeeze(1)).clamp(min=0)
    use = torch.where(res.sum(-1, keepdim=True) == 0, p_a, res)
    total = use.sum(-1)
    thr = (torch.gather(r, 1, accepted.unsqueeze(1)).squeeze(1) * total) >> 16
    hit = torch.cumsum(use, dim=-1) > thr.unsqueeze(-1)
    token = torch.where(hit.any(-1), hit.to(torch.int64).argmax(-1), torch.zeros_like(total))
    return accepted, token

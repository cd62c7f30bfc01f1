"""CSD-Chain reference: N:16-sparse INT8 weight rows × INT8 activations → INT32 (wrapping).

Compressed layout (FlightLLM: 4-bit index per kept weight, N kept per 16 inputs):
``values`` (rows, K/16, N) int8, ``indices`` (rows, K/16, N) in 0..15 (position inside the
16-block), ``acts`` (lanes, K) int8. Output (rows, lanes) int32:
``out[r, l] = Σ_b Σ_j values[r, b, j] · acts[l, 16·b + indices[r, b, j]]`` modulo 2**32.
"""

from __future__ import annotations

import torch

from kernels._device import resolve_device, wrap_int32

__all__ = ["BLOCK_M", "compress_nm", "csd_chain", "dense_matvec"]

BLOCK_M = 16  # FlightLLM N:M sparsity with M = 16


def csd_chain(values: torch.Tensor, indices: torch.Tensor, acts: torch.Tensor, *,
              device: str | torch.device | None = None) -> torch.Tensor:
    """Sparse dot products of compressed weight rows with activation lanes; int32 result."""
    dev = resolve_device(device)
    if values.shape != indices.shape or values.dim() != 3:
        raise ValueError(f"values {tuple(values.shape)} / indices {tuple(indices.shape)}: "
                         "expected equal shapes (rows, K/16, N)")
    rows, blocks, n = values.shape
    if acts.dim() != 2 or acts.shape[1] != blocks * BLOCK_M:
        raise ValueError(f"acts {tuple(acts.shape)}: expected (lanes, {blocks * BLOCK_M})")
    v = values.to(dev, torch.int64)
    idx = indices.to(dev, torch.int64)
    a = acts.to(dev, torch.int64).reshape(acts.shape[0], blocks, BLOCK_M)  # (lanes, K/16, 16)
    # gather the activation each kept weight selects: (lanes, rows, K/16, N)
    a_exp = a.unsqueeze(1).expand(-1, rows, -1, -1)
    picked = torch.gather(a_exp, 3, idx.unsqueeze(0).expand(a.shape[0], -1, -1, -1))
    out = (picked * v.unsqueeze(0)).sum(dim=(2, 3))  # (lanes, rows)
    return wrap_int32(out.transpose(0, 1).contiguous())


def compress_nm(weights: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``n`` largest-magnitude weights of every 16-block of each row.

    ``weights`` (rows, K) int8 → (values, indices), both (rows, K/16, n), indices ascending.
    """
    rows, k = weights.shape
    if k % BLOCK_M or not 1 <= n <= BLOCK_M:
        raise ValueError(f"K={k}, n={n}: K must be a multiple of 16 and n in 1..16")
    w = weights.reshape(rows, k // BLOCK_M, BLOCK_M)  # (rows, K/16, 16)
    mag = w.to(torch.int32).abs()
    # stable tie-break on position so the result is deterministic on CPU and CUDA
    pos = torch.arange(BLOCK_M, device=w.device, dtype=torch.int32)
    key = mag * BLOCK_M + (BLOCK_M - 1 - pos)
    idx = torch.topk(key, n, dim=-1).indices.sort(dim=-1).values
    return torch.gather(w, 2, idx), idx.to(torch.uint8)


def dense_matvec(weights: torch.Tensor, acts: torch.Tensor, *,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """Dense INT8 (rows, K) × (lanes, K) → (rows, lanes) int32, wrapping; the dense reference."""
    dev = resolve_device(device)
    w = weights.to(dev, torch.int64)
    a = acts.to(dev, torch.int64)
    return wrap_int32((w.unsqueeze(1) * a.unsqueeze(0)).sum(-1))

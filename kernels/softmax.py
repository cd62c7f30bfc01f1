"""Fixed-point softmax reference (the SFU of rtl/sfu.py).

Input: INT8 logits in Q3.4 (value = x / 2**frac_bits, frac_bits = 4 by default).
1. m = max(x); d = m − x ∈ 0..255.
2. e = EXP[d] with EXP[d] = floor(exp(−d / 2**frac_bits) · 2**16 + 1/2) (UQ1.16, EXP[0] = 2**16).
3. S = Σ e (≥ 2**16); recip = 2**32 // S.
4. y = min((e · recip + 2**15) >> 16, 2**16 − 1): UQ0.16 probabilities.
"""

from __future__ import annotations

import torch

from kernels._device import resolve_device

__all__ = ["FRAC_BITS", "exp_table", "softmax_fixed", "softmax_float"]

FRAC_BITS = 4


def exp_table(frac_bits: int = FRAC_BITS, *, device: str | torch.device | None = None
              ) -> torch.Tensor:
    """The 256-entry exp table, int64, computed in float64 and rounded half up."""
    d = torch.arange(256, dtype=torch.float64, device=resolve_device(device))
    return torch.floor(torch.exp(-d / 2**frac_bits) * 2**16 + 0.5).to(torch.int64)


def softmax_fixed(x: torch.Tensor, frac_bits: int = FRAC_BITS, *,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Softmax over the last axis of INT8 ``x`` → int32 UQ0.16 values (0..65535)."""
    dev = resolve_device(device)
    xi = x.to(dev, torch.int64)
    if (xi < -128).any() or (xi > 127).any():
        raise ValueError("x must hold INT8 values")
    d = xi.amax(dim=-1, keepdim=True) - xi  # (..., n) in 0..255
    e = exp_table(frac_bits, device=dev)[d]
    recip = torch.div(2**32, e.sum(dim=-1, keepdim=True), rounding_mode="floor")
    y = (e * recip + 2**15) >> 16
    return y.clamp(max=2**16 - 1).to(torch.int32)


def softmax_float(x: torch.Tensor, frac_bits: int = FRAC_BITS, *,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """FP32 softmax of the same Q3.4 logits: the accuracy reference."""
    dev = resolve_device(device)
    return torch.softmax(x.to(dev, torch.float32) / 2**frac_bits, dim=-1)

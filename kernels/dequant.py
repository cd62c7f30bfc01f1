"""Group-wise low-bit → INT8 dequantization reference (FlightLLM mixed precision).

``q`` holds unsigned ``bits``-bit codes (0..2**bits − 1); each group of ``group`` consecutive
weights along the last axis shares a zero point ``zero`` (same range as q) and a scale in UQ8.4
(12-bit unsigned, 4 fractional bits). The INT8 weight is
``clamp((( q − zero) · scale + 8) >> 4, −128, 127)``: round half up, saturate.
"""

from __future__ import annotations

import torch

from kernels._device import resolve_device

__all__ = ["SCALE_BITS", "SCALE_FRAC", "dequant"]

SCALE_BITS = 12
SCALE_FRAC = 4


def dequant(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, *, bits: int, group: int,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Dequantize ``q`` (..., K) with per-group ``scale``/``zero`` (..., K/group) to int8."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits {bits}: must be 2..8")
    k = q.shape[-1]
    if k % group or scale.shape[-1] != k // group or zero.shape != scale.shape:
        raise ValueError(f"q (..., {k}), scale {tuple(scale.shape)}, zero {tuple(zero.shape)}: "
                         f"expected K divisible by group {group} and (..., K/group) params")
    dev = resolve_device(device)
    qi = q.to(dev, torch.int64)
    s = scale.to(dev, torch.int64).repeat_interleave(group, dim=-1)
    z = zero.to(dev, torch.int64).repeat_interleave(group, dim=-1)
    if (qi < 0).any() or (qi >= 2**bits).any() or (z < 0).any() or (z >= 2**bits).any():
        raise ValueError(f"q and zero must be {bits}-bit unsigned codes")
    if (s < 0).any() or (s >= 2**SCALE_BITS).any():
        raise ValueError(f"scale must be {SCALE_BITS}-bit unsigned (UQ8.4)")
    prod = (qi - z) * s
    rounded = (prod + (1 << (SCALE_FRAC - 1))) >> SCALE_FRAC  # arithmetic shift: floor
    return rounded.clamp(-128, 127).to(torch.int8)

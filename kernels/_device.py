"""Device choice shared by the kernels: CUDA when present, else CPU."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "wrap_int32"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` → CUDA if available else CPU; anything else is used as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def wrap_int32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor to int32 (what a 32-bit accumulator does)."""
    return (torch.remainder(x + 2**31, 2**32) - 2**31).to(torch.int32)

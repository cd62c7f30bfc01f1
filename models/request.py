"""A validated trace request (torch-free, so bad input fails before torch is imported)."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import UserError
from models.graph import Phase
from models.zoo import ModelEntry

__all__ = ["DTYPES", "TraceRequest"]

DTYPES = ("float16", "bfloat16", "float32")


@dataclass(frozen=True)
class TraceRequest:
    phase: Phase
    tokens: int        # new tokens per sequence in this pass
    context: int       # tokens already in the KV cache
    batch: int = 1
    dtype: str = "float16"

    @classmethod
    def make(cls, entry: ModelEntry, phase: str | Phase, *, tokens: int | None = None,
             context: int = 0, batch: int = 1, dtype: str = "float16") -> TraceRequest:
        """Validate a user's request; UserError names the bad argument and the allowed range."""
        try:
            ph = Phase(phase)
        except ValueError:
            raise UserError(f"unknown phase {phase!r}; allowed: "
                            f"{', '.join(p.value for p in Phase)}") from None
        if tokens is None:
            tokens = 1 if ph is Phase.DECODE else 128 if ph is Phase.PREFILL else 4
        if ph is Phase.DECODE and tokens != 1:
            raise UserError(f"decode processes exactly 1 token per pass, got --tokens {tokens}; "
                            "use --phase verify for several query tokens")
        if ph is Phase.PREFILL and context != 0:
            raise UserError("prefill starts from an empty KV cache: --context must be 0 "
                            f"(got {context}); use --tokens for the prompt length")
        if tokens < 1:
            raise UserError(f"--tokens must be >= 1, got {tokens}")
        if context < 0:
            raise UserError(f"--context must be >= 0, got {context}")
        if ph is not Phase.PREFILL and context < 1:
            raise UserError(f"{ph.value} needs a non-empty KV cache: --context must be >= 1")
        if batch < 1:
            raise UserError(f"--batch must be >= 1, got {batch}")
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
        limit = entry.max_positions
        if limit is not None and context + tokens > limit:
            raise UserError(f"context {context} + {tokens} new tokens = {context + tokens} exceeds "
                            f"{entry.name}'s maximum of {limit} positions")
        return cls(ph, tokens, context, batch, dtype)

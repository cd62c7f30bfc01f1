"""A serving workload: prefill of P tokens, then D decode passes, as IR graphs (torch-free).

Decode pass i (0-based) processes one token over a cache of P + i tokens, as FlightLLM's
artifact counts it. All decode graphs follow from two traces (contexts P and P + D - 1)
through :func:`models.graph.interpolate`, so a 2,048-token generation costs two traces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from models.graph import Graph, interpolate

__all__ = ["Workload"]


@dataclass(frozen=True)
class Workload:
    model: str
    batch: int
    prefill_tokens: int
    decode_tokens: int
    prefill: Graph | None        # None when prefill_tokens == 0
    decode_first: Graph | None   # decode at context P (None when decode_tokens == 0)
    decode_last: Graph | None    # decode at context P + D - 1 (same graph when D == 1)

    @property
    def decode_contexts(self) -> range:
        """Cache length seen by each decode pass."""
        p = self.prefill_tokens
        return range(p, p + self.decode_tokens)

    def decode_graph(self, step: int) -> Graph:
        """The graph of decode pass ``step`` (0-based)."""
        if self.decode_first is None or self.decode_last is None:
            raise ValueError("this workload has no decode passes")
        if not 0 <= step < self.decode_tokens:
            raise IndexError(f"decode step {step} outside 0..{self.decode_tokens - 1}")
        context = self.prefill_tokens + step
        if context == self.decode_first.context:
            return self.decode_first
        if context == self.decode_last.context:
            return self.decode_last
        return interpolate(self.decode_first, self.decode_last, context)

    def map(self, fn: Callable[[Graph], Graph]) -> Workload:
        """The same workload with ``fn`` (a mapping pass) applied to every graph."""
        first = fn(self.decode_first) if self.decode_first is not None else None
        last = first if self.decode_last is self.decode_first else (
            fn(self.decode_last) if self.decode_last is not None else None)
        return replace(self, prefill=fn(self.prefill) if self.prefill is not None else None,
                       decode_first=first, decode_last=last)

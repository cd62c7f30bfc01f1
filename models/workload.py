"""A serving workload: prefill of P tokens, then D decode passes, as IR graphs (torch-free).

Decode pass i (0-based) processes one token over a cache of P + i tokens, as FlightLLM's
artifact counts it. All decode graphs follow from two traces (contexts P and P + D - 1)
through :func:`models.graph.interpolate`, so a 2,048-token generation costs two traces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

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
    # Mapping passes applied so far (see map); interpolation runs on the unmapped traces, as
    # passes may round (bits, block counts) and so need not keep counts affine in the context.
    passes: tuple[Callable[[Graph], Graph], ...] = field(default=(), compare=False)
    traced_first: Graph | None = field(default=None, compare=False)
    traced_last: Graph | None = field(default=None, compare=False)

    @property
    def decode_contexts(self) -> range:
        """Cache length seen by each decode pass."""
        p = self.prefill_tokens
        return range(p, p + self.decode_tokens)

    def decode_at(self, context: int) -> Graph:
        """The (mapped) decode graph over a cache of ``context`` tokens."""
        first, last = self.decode_first, self.decode_last
        if first is None or last is None:
            raise ValueError("this workload has no decode passes")
        if context == first.context:
            return first
        if context == last.context:
            return last
        if first.context == last.context:
            raise ValueError("one decode trace cannot give other contexts; trace two")
        g = interpolate(self.traced_first or first, self.traced_last or last, context)
        for fn in self.passes:
            g = fn(g)
        return g

    def decode_graph(self, step: int) -> Graph:
        """The graph of decode pass ``step`` (0-based)."""
        if not 0 <= step < self.decode_tokens:
            raise IndexError(f"decode step {step} outside 0..{self.decode_tokens - 1}")
        return self.decode_at(self.prefill_tokens + step)

    def map(self, fn: Callable[[Graph], Graph]) -> Workload:
        """The same workload with ``fn`` (a mapping pass) applied to every graph."""
        first = fn(self.decode_first) if self.decode_first is not None else None
        last = first if self.decode_last is self.decode_first else (
            fn(self.decode_last) if self.decode_last is not None else None)
        return replace(self, prefill=fn(self.prefill) if self.prefill is not None else None,
                       decode_first=first, decode_last=last, passes=(*self.passes, fn),
                       traced_first=self.traced_first if self.passes else self.decode_first,
                       traced_last=self.traced_last if self.passes else self.decode_last)

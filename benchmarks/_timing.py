"""Wall-clock timing shared by the benchmark scripts (run as ``python benchmarks/<name>.py``,
so this sibling module is importable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["timed"]

T = TypeVar("T")


def timed(label: str, fn: Callable[[], T]) -> T:
    """Run ``fn``, print its wall time after ``label``, return its result."""
    t = time.perf_counter()
    out = fn()
    print(f"{label:62s} {time.perf_counter() - t:7.3f} s")
    return out

"""Design points from axes: full grid, random samples or a Latin hypercube (seeded).

An axis is either a list of values or a numeric range ``[lo, hi]`` (linear or log scale,
optionally integer). Grids need ``steps`` on ranges; random and Latin-hypercube sampling draw
``n`` points with a :class:`numpy.random.Generator` seeded from the sweep, so the same spec
always gives the same points, whatever the backend or worker count.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Axis", "grid", "latin_hypercube", "random_samples"]


@dataclass(frozen=True)
class Axis:
    """One swept input: ``values`` (discrete) or ``lo``..``hi`` (continuous)."""

    name: str
    values: tuple[Any, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    steps: int | None = None       # grid points on a range
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if self.values is None and (self.lo is None or self.hi is None):
            raise ValueError(f"axis {self.name}: needs values or lo/hi")

    def grid_values(self) -> tuple[Any, ...]:
        if self.values is not None:
            return self.values
        if not self.steps:
            raise ValueError(f"axis {self.name}: a range needs steps for a grid")
        u = np.linspace(0.0, 1.0, self.steps) if self.steps > 1 else np.array([0.0])
        return tuple(dict.fromkeys(self.at(float(x)) for x in u))  # drop rounding duplicates

    def at(self, u: float) -> Any:
        """The axis value at quantile ``u`` in [0, 1]."""
        if self.values is not None:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        assert self.lo is not None and self.hi is not None
        if self.log:
            x = math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))
        else:
            x = self.lo + u * (self.hi - self.lo)
        if self.integer:
            return int(round(x))
        return float(f"{x:.6g}")  # 6 significant digits: stable hashes, readable tables


def grid(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination, the first axis varying slowest."""
    names = [a.name for a in axes]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(a.grid_values() for a in axes))]


def random_samples(axes: list[Axis], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points, each axis drawn independently and uniformly (log-uniform on log axes)."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, len(axes)))  # (points, axes)
    return [{a.name: a.at(float(u[i, j])) for j, a in enumerate(axes)} for i in range(n)]


def latin_hypercube(axes: list[Axis], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points with exactly one sample in each of ``n`` equal strata of every axis."""
    rng = np.random.default_rng(seed)
    u = np.empty((n, len(axes)))  # (points, axes)
    for j in range(len(axes)):
        u[:, j] = (rng.permutation(n) + rng.random(n)) / n
    return [{a.name: a.at(float(u[i, j])) for j, a in enumerate(axes)} for i in range(n)]

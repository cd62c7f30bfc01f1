"""Least-squares fitting without SciPy: Nelder-Mead on the squared log error.

The calibrated GPU model has a handful of parameters per op class (a fixed kernel time and
one or two efficiencies), so a derivative-free simplex search is plenty and keeps SciPy out of
the dependencies. Deterministic: same data, same start, same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["fit_log_error", "nelder_mead"]


def nelder_mead(f: Callable[[np.ndarray], float], x0: Sequence[float], *, step: float = 0.25,
                iters: int = 2000, tol: float = 1e-12) -> np.ndarray:
    """Minimise ``f`` from ``x0`` (standard reflection/expansion/contraction/shrink)."""
    x0 = np.asarray(x0, dtype=np.float64)
    simplex = [x0] + [x0 + step * np.eye(len(x0))[i] * max(abs(x0[i]), 1.0)
                      for i in range(len(x0))]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                simplex = [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex]
                values = [f(x) for x in simplex]
    return simplex[int(np.argmin(values))]


def fit_log_error(model: Callable[[np.ndarray], np.ndarray], measured: np.ndarray,
                  x0: Sequence[float], upper: Sequence[float | None] | None = None
                  ) -> np.ndarray:
    """Parameters minimising sum(log(model(p) / measured)^2), each kept positive (searched
    in log space) and below its ``upper`` bound where one is given (a logistic map)."""
    logm = np.log(np.asarray(measured, dtype=np.float64))
    ub = np.array([np.inf if u is None else u for u in (upper or [None] * len(x0))])
    bounded = np.isfinite(ub)

    def to_p(z: np.ndarray) -> np.ndarray:
        p = np.exp(z)
        p[bounded] = ub[bounded] / (1 + np.exp(-z[bounded]))
        return p

    def to_z(p: np.ndarray) -> np.ndarray:
        z = np.log(p)
        frac = np.clip(p[bounded] / ub[bounded], 1e-6, 1 - 1e-6)
        z[bounded] = np.log(frac / (1 - frac))
        return z

    def loss(z: np.ndarray) -> float:
        pred = model(to_p(z))
        if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            return float("inf")
        return float(np.sum((np.log(pred) - logm) ** 2))

    best = to_z(np.asarray(x0, dtype=np.float64))
    for _ in range(3):  # restarts from the best point escape a collapsed simplex
        best = nelder_mead(loss, best)
    return to_p(best)

"""Analysis of a results DB: a flat table, Pareto frontiers, sensitivity, best design, export.

Metrics are the table's columns (``decode_tokens_per_s``, ``tokens_per_j``, ``total_ms``, ...)
plus ``tokens_per_s`` (alias of decode throughput) and ``tokens_per_s_per_usd``. Throughputs,
efficiencies and the speculation gains (speedup, mean_accepted, tokens_per_pass) are maximised
and times/energy/bytes/price minimised unless the name is prefixed with ``+`` (maximise) or
``-`` (minimise).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import UserError
from sweeps.expr import parse_expr
from sweeps.store import Store

__all__ = ["best", "export", "load", "metric_names", "pareto", "pareto_mask", "sensitivity",
           "where"]

ALIASES = {"tokens_per_s": "decode_tokens_per_s", "throughput": "decode_tokens_per_s"}
_MAXIMISE = ("per_s", "per_j", "per_usd", "fits_memory", "speedup", "mean_accepted",
             "tokens_per_pass", "goodput", "slo_attainment")


def load(db: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every point as a row; hardware overrides become columns named by their field."""
    with Store(db, readonly=True) as store:
        meta = store.meta()
        rows = store.rows()
    for r in rows:
        for k, v in json.loads(r.pop("overrides") or "{}").items():
            r.setdefault(k, v)
    df = pd.DataFrame(rows)
    if "alpha" in df and df.alpha.notna().any():   # i.i.d. acceptance as a number
        num = pd.to_numeric(df.alpha, errors="coerce")
        if num.notna().sum() == df.alpha.notna().sum():
            df["alpha"] = num
    if len(df):
        df["tokens_per_s"] = df["decode_tokens_per_s"]
        df["tokens_per_s_per_usd"] = df["decode_tokens_per_s"] / df["price_usd"]
    return df, meta


def _parse(metrics: str) -> list[tuple[str, bool]]:
    """``"a,-b"`` -> [(column, maximise)]."""
    out = []
    for m in (x.strip() for x in metrics.split(",") if x.strip()):
        sign = m[0] if m[0] in "+-" else ""
        name = ALIASES.get(m.lstrip("+-"), m.lstrip("+-"))
        out.append((name, sign == "+" if sign else name.endswith(_MAXIMISE)))
    return out


def metric_names(metrics: str) -> list[str]:
    return [n for n, _ in _parse(metrics)]


def _check(df: pd.DataFrame, names: list[str]) -> None:
    for n in names:
        if n not in df.columns:
            numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
            raise UserError(f"unknown metric {n!r}; available: {', '.join(numeric)}")


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (to maximise, (points, metrics)) that no other row dominates."""
    n = len(values)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        dominated = np.all(values >= values[i], axis=1) & np.any(values > values[i], axis=1)
        if dominated.any():
            keep[i] = False
    return keep


def pareto(df: pd.DataFrame, metrics: str) -> pd.DataFrame:
    """The non-dominated rows over 2 or 3 metrics, sorted by the first."""
    spec = _parse(metrics)
    if not 2 <= len(spec) <= 3:
        raise UserError(f"--pareto {metrics!r}: give 2 or 3 comma-separated metrics")
    _check(df, [n for n, _ in spec])
    sub = df.dropna(subset=[n for n, _ in spec])
    vals = np.column_stack([sub[n].to_numpy(float) * (1 if mx else -1) for n, mx in spec])
    front = sub[pareto_mask(vals)]
    return front.sort_values(spec[0][0], ascending=not spec[0][1])


def best(df: pd.DataFrame, metric: str, n: int = 1) -> pd.DataFrame:
    (name, mx), = _parse(metric)
    _check(df, [name])
    return df.dropna(subset=[name]).sort_values(name, ascending=not mx).head(n)


def where(df: pd.DataFrame, expr: str) -> pd.DataFrame:
    """Rows for which ``expr`` (over column names) holds."""
    e = parse_expr(expr, "--where", known=[c for c in df.columns if c.isidentifier()])
    keep = [bool(e.evaluate({k: _py(v) for k, v in r.items() if k in e.names}))
            for r in df.to_dict("records")]
    return df[np.array(keep, dtype=bool)] if len(df) else df


def _py(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v


def sensitivity(df: pd.DataFrame, axes: list[str], metric: str) -> dict[str, float]:
    """Per axis: max / min over its values of the metric's mean (1.0: no effect)."""
    name = metric_names(metric)[0]
    _check(df, [name])
    out = {}
    for a in axes:
        if a not in df.columns:
            continue
        means = df.groupby(df[a].astype(str), dropna=False)[name].mean().dropna()
        lo = means.min() if len(means) else float("nan")
        out[a] = float(means.max() / lo) if len(means) and lo > 0 else float("nan")
    return dict(sorted(out.items(), key=lambda kv: -(kv[1] if kv[1] == kv[1] else 0)))


def export(db: str | Path, out: str | Path) -> Path:
    """Write the table as CSV or Parquet (by extension)."""
    df, _ = load(db)
    p = Path(out)
    if p.suffix == ".csv":
        df.to_csv(p, index=False)
    elif p.suffix == ".parquet":
        df.to_parquet(p, index=False)
    else:
        raise UserError(f"export to {str(p)!r}: the file must end in .csv or .parquet")
    return p

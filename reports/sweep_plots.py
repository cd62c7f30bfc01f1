"""The sweep report's figures; each function returns a matplotlib ``Figure`` (saved by the caller).

Every axis says its quantity and unit (``reports.labels``); titles name the sweep and the
model; points are coloured by one swept axis (``colour_by``: the report passes the axis with
the largest effect on decode throughput) with a colour bar (numbers) or a legend (categories).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from reports.labels import label, scale  # noqa: E402

__all__ = ["axis_figure", "pareto_figure", "roofline_figure", "speculation_figure",
           "sweep_title"]

_MAX_CATEGORIES = 10  # distinct values a legend lists (C0..C9, matplotlib's cycle)
_FEW = 6              # numbers with at most this many distinct values: a legend, not a bar


def sweep_title(name: str, ok: pd.DataFrame) -> str:
    """"sweep <name>: <model>" (or "<n> models")."""
    models = sorted({str(m) for m in ok.get("model", pd.Series(dtype=str)).dropna()})
    what = models[0] if len(models) == 1 else f"{len(models)} models"
    return f"sweep {name}: {what}"


def _categories(vals: pd.Series) -> tuple[list[str], list[str]]:
    """Each value's text and the sorted distinct texts ("none" for missing, last)."""
    text = ["none" if v is None or v != v else f"{v:g}" if isinstance(v, float) else str(v)
            for v in vals]

    def key(c: str) -> tuple[bool, float, str]:
        try:
            return (c == "none", float(c), c)
        except ValueError:
            return (c == "none", float("inf"), c)
    return text, sorted(set(text), key=key)


def _numeric(vals: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(vals) and bool(vals.notna().all())


def _scatter(fig: Figure, ax: Any, x: np.ndarray, y: np.ndarray, colour: pd.Series | None,
             colour_by: str | None, **kw: Any) -> str | None:
    """Points, coloured by ``colour`` with a colour bar (many numbers) or legend entries
    (categories, few numbers); returns the legend's title (None: no colour legend)."""
    if colour is None or colour_by is None:
        ax.scatter(x, y, s=18, alpha=0.6, color="C0", label="designs", **kw)
        return None
    if _numeric(colour) and colour.nunique() > _FEW:
        sc = ax.scatter(x, y, s=18, alpha=0.8, c=colour.to_numpy(float) * scale(colour_by),
                        cmap="viridis", **kw)
        fig.colorbar(sc, ax=ax, label=label(colour_by))
        return None
    if _numeric(colour):
        colour = colour * scale(colour_by)   # legend entries in the label's unit
    text, cats = _categories(colour)
    for i, c in enumerate(cats[:_MAX_CATEGORIES]):
        m = np.array([t == c for t in text])
        ax.scatter(x[m], y[m], s=18, alpha=0.8, color=f"C{i % 10}", label=c, **kw)
    return label(colour_by)


def pareto_figure(ok: pd.DataFrame, front: pd.DataFrame, metrics: list[str], *, title: str,
                  colour_by: str | None = None) -> Figure:
    """Every design (the dominated ones too) and the frontier over the first two metrics; a
    frontier of one design says so: it dominates every other."""
    x, y = metrics[:2]
    fig = Figure(figsize=(6.5, 4.8), dpi=110)
    ax = fig.add_subplot()
    legend = _scatter(fig, ax, ok[x].to_numpy(float) * scale(x),
                      ok[y].to_numpy(float) * scale(y), ok[colour_by] if colour_by else None,
                      colour_by, zorder=2)
    f = front.sort_values(x)
    fx, fy = f[x].to_numpy(float) * scale(x), f[y].to_numpy(float) * scale(y)
    ax.plot(fx, fy, "-", color="C3", lw=1.2, zorder=3)
    ax.scatter(fx, fy, s=80, facecolors="none", edgecolors="C3", lw=1.5, zorder=4,
               label="Pareto front")
    if len(f) == 1:
        note = f"Pareto front is one design: it dominates the other {len(ok) - 1}"
        ax.annotate(note, (fx[0], fy[0]), xytext=(-10, -18), textcoords="offset points",
                    ha="right", fontsize=8, color="C3")
        title += " (one-design Pareto front)"
    ax.legend(title=legend, fontsize=7, title_fontsize=7)
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    ax.set_title(textwrap.fill(title, 64), fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def axis_figure(ok: pd.DataFrame, axis: str, *, title: str,
                colour_by: str | None = None) -> Figure:
    """Decode throughput against one swept axis, the mean per value as a line."""
    fig = Figure(figsize=(5.8, 4), dpi=110)
    ax = fig.add_subplot()
    vals = ok[axis]
    numeric = _numeric(vals)
    if numeric:
        xs = vals.to_numpy(float) * scale(axis)
    else:  # categories (presets, models, bits with "none") at integer positions
        text, cats = _categories(vals)
        xs = np.array([cats.index(c) for c in text], dtype=float)
        ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 4 else 0,
                      ha="right" if len(cats) > 4 else "center")
    y = ok["decode_tokens_per_s"].to_numpy(float)
    colour = ok[colour_by] if colour_by and colour_by != axis else None
    legend = _scatter(fig, ax, xs, y, colour, colour_by if colour is not None else None,
                      zorder=2)
    means = pd.Series(y).groupby(xs).mean()
    ax.plot(means.index, means.values, "-", color="0.3", lw=1, zorder=1, label="mean")
    ax.legend(title=legend, fontsize=7, title_fontsize=7)
    if numeric and xs.min() > 0 and xs.max() / xs.min() > 50:
        ax.set_xscale("log")
    elif numeric and np.all(xs == np.round(xs)):   # counts (cores, γ): whole-number ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label(axis))
    ax.set_ylabel(label("decode_tokens_per_s"))
    ax.set_title(textwrap.fill(title, 64), fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def speculation_figure(ok: pd.DataFrame, *, title: str) -> Figure | None:
    """Speedup vs gamma per (device, alpha); trees at their depth (draft steps)."""
    if "speedup" not in ok.columns or not ok["speedup"].notna().any():
        return None
    sub = ok[ok["speedup"].notna()].copy()
    depth = [len(json.loads(r)["extra"].get("tree_levels", [])) if isinstance(r, str) else 0
             for r in sub["result"]]
    sub["steps"] = [g if g == g and g is not None else d for g, d in zip(sub["gamma"], depth,
                                                                         strict=True)]
    sub["is_tree"] = sub["tree"].notna()
    fig = Figure(figsize=(6.5, 4.3), dpi=110)
    ax = fig.add_subplot()
    colours: dict[tuple[str, str], str] = {}
    for (hw, alpha, tree), g in sub.groupby(["hw", sub["alpha"].astype(str), "is_tree"]):
        c = colours.setdefault((hw, alpha), f"C{len(colours) % 10}")   # tree = its chain's
        g = g.groupby("steps")["speedup"].max()
        ax.plot(g.index, g.values, "s--" if tree else "o-", color=c,
                label=f"{hw} α={alpha}" + (" tree" if tree else ""))
    ax.set_xlabel("draft steps per round, γ (tokens; tree: depth)")
    ax.set_ylabel("speedup over plain decode (x, best over other axes)")
    ax.set_title(textwrap.fill(title, 64), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


_MAX_ROOFS = 6  # more distinct roofs than this: one colour per memory bandwidth instead


def _roof_groups(sub: pd.DataFrame, hi: float
                 ) -> list[tuple[list[tuple[float, float]], str, np.ndarray]]:
    """Roofs to draw, in colour groups: (roofs as (peak, bandwidth), legend text, designs).

    One roof per device; devices whose roofs coincide over the plot are merged (the same
    bandwidth, compute peaks above the right edge). With more than ``_MAX_ROOFS`` roofs a
    group is one memory bandwidth (the slope decode sits on) with every peak drawn thin."""
    bw = sub["mem_bytes_per_s"].to_numpy(float)
    peak = sub["peak_ops_per_s"].to_numpy(float)
    seen = np.where(peak < bw * hi, peak, np.inf)   # inf: the flat part is off the plot
    keys = list(zip(bw, seen, strict=True))
    if len(set(keys)) > _MAX_ROOFS:
        keys = [(b, np.nan) for b in bw]
    out = []
    for key in dict.fromkeys(keys):
        m = np.array([k == key or (k[0] == key[0] and key[1] != key[1]) for k in keys])
        names = ", ".join(dict.fromkeys(sub["hw"][m]))
        peaks = peak[m]
        top = f"{peaks.min() / 1e12:.3g}" if peaks.min() == peaks.max() else \
            f"{peaks.min() / 1e12:.3g}-{peaks.max() / 1e12:.3g}"
        roofs = sorted({(float(min(p, key[0] * hi)), float(key[0])) for p in peaks})
        n = len(set(peaks))
        out.append((roofs, f"{names}: {key[0] / 1e9:,.0f} GB/s, {top} TOP/s"
                    + (f" ({n} configurations)" if n > 1 else ""), m))
    return out


def roofline_figure(ok: pd.DataFrame, *, title: str) -> Figure | None:
    """Decode arithmetic intensity vs achieved compute: one roof per device (roofs that
    coincide over the data merged), its designs in the roof's colour; x fitted to the data."""
    counts = [json.loads(r or "{}").get("counts", {}) for r in ok["result"]]
    flops = np.array([c.get("decode_flops", np.nan) for c in counts], dtype=float)
    nbytes = np.array([c.get("decode_bytes", np.nan) for c in counts], dtype=float)
    secs = ok["decode_ms_per_token"].to_numpy(float) * ok["decode"].to_numpy(float) / 1e3
    good = np.isfinite(flops) & (nbytes > 0) & (secs > 0)
    if not good.any():
        return None
    sub = ok.loc[good].reset_index(drop=True)
    intensity, achieved = flops[good] / nbytes[good], flops[good] / secs[good]
    lo, hi = intensity.min() / 2, intensity.max() * 2
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig = Figure(figsize=(6.8, 4.8), dpi=110)
    ax = fig.add_subplot()
    for i, (roofs, text, m) in enumerate(_roof_groups(sub, hi)):
        colour = f"C{i % 10}"
        for j, (peak, bw) in enumerate(roofs):
            ax.plot(xs, np.minimum(peak, bw * xs) / 1e12, color=colour,
                    lw=1.2 if len(roofs) == 1 else 0.8, label=None if j else text)
        ax.scatter(intensity[m], achieved[m] / 1e12, s=16, color=colour, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    for axis in (ax.xaxis, ax.yaxis):   # plain numbers, not 2x10^0
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25"
                                               else ""))
    ax.set_xlabel("decode arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved decode compute (TFLOP/s)")
    ax.set_title(textwrap.fill(title, 64), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig

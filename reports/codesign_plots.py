"""Figures of the co-design report (``reports/codesign.py``); each returns a matplotlib Figure.

``front`` marks the Pareto designs; the published design (our model of it) and FlightLLM's
measured 55 token/s are drawn as references on every throughput axis.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["resources_figure", "split_figure", "tradeoff_figure"]


def _by_gamma(ax, ok: pd.DataFrame, x: str, y: str) -> None:
    """Points coloured by the ``speculation`` column ("none", "γ = k", "tree")."""
    order = sorted(ok.speculation.unique(), key=lambda s: (s != "none", s == "tree", s))
    for i, g in enumerate(order):
        sub = ok[ok.speculation == g]
        ax.scatter(sub[x], sub[y], s=14, alpha=0.6, color=f"C{i}",
                   label="no speculation" if g == "none" else g)


def tradeoff_figure(ok: pd.DataFrame, front: pd.DataFrame, ref: dict, paper_tps: float) -> Figure:
    """Decode tokens/s against tokens/J, every design, Pareto front ringed."""
    fig = Figure(figsize=(7, 4.8), layout="constrained")
    ax = fig.subplots()
    _by_gamma(ax, ok, "tokens_per_j", "decode_tokens_per_s")
    ax.scatter(front.tokens_per_j, front.decode_tokens_per_s, s=60, facecolors="none",
               edgecolors="k", label="Pareto front (tokens/s, tokens/J, DSP)")
    ax.scatter([ref["tokens_per_j"]], [ref["tokens_per_s"]], marker="*", s=180, color="red",
               label="published design (our model)", zorder=5)
    ax.axhline(paper_tps, color="red", ls=":", lw=1, label=f"FlightLLM U280 measured "
               f"({paper_tps:g} token/s)")
    ax.axhline(2 * ref["tokens_per_s"], color="grey", ls="--", lw=1,
               label="2x our published-design model")
    ax.set_xlabel("decode energy efficiency (tokens/J)")
    ax.set_ylabel("decode throughput (tokens/s)")
    ax.set_title("U280 co-design: LLaMA-2-7B, batch 1, cycle-level")
    ax.legend(fontsize=7, loc="best")
    return fig


def resources_figure(ok: pd.DataFrame, front: pd.DataFrame, ref: dict,
                     caps: dict[str, float]) -> Figure:
    """Decode tokens/s against DSP48E2 and URAM288 use, device capacity as a line."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, name in zip(axes, ("resources_dsp", "resources_uram"),
                             ("DSP48E2", "URAM288"), strict=True):
        _by_gamma(ax, ok, col, "decode_tokens_per_s")
        ax.scatter(front[col], front.decode_tokens_per_s, s=60, facecolors="none",
                   edgecolors="k")
        ax.scatter([ref[col]], [ref["tokens_per_s"]], marker="*", s=180, color="red", zorder=5)
        if caps.get(col):
            ax.axvline(caps[col], color="k", ls=":", lw=1, label=f"XCU280 ({caps[col]:,.0f})")
        ax.set_xlabel(f"{name} used (count)")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("decode throughput (tokens/s)")
    fig.suptitle("throughput vs FPGA resources (★ published design, ○ Pareto front)")
    return fig


def split_figure(rows: list[dict]) -> Figure:
    """Decode time per generated token split into draft / verify (or plain decode)."""
    fig = Figure(figsize=(9, 1.2 + 0.5 * max(len(rows), 2)), layout="constrained")
    ax = fig.subplots()
    parts = ("decode", "draft", "verify", "verifier", "rollback")
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for i, p in enumerate(parts):
        vals = np.array([r["split_ms_per_token"].get(p, 0.0) for r in rows])
        ax.barh(y, vals, left=left, color=f"C{i}", label=p)
        left += vals
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("decode time per generated token (ms)")
    ax.legend(fontsize=7)
    ax.set_title("where the time goes (fastest; at INT4; without a draft; published)",
                 fontsize=9)
    return fig

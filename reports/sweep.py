"""Sweep report: ``index.md`` + ``index.html`` with PNG plots from a sweep's results DB.

Plots (``reports/sweep_plots.py``): the Pareto scatter of two metrics (frontier highlighted),
decode throughput against each axis, points coloured by the axis with the largest effect, and
a roofline (decode arithmetic intensity vs achieved FLOP/s, one roof per device). Tables:
status counts, the Pareto designs, the best design per metric, sensitivity per axis and the
distinct failure messages. Sweeps with speculation axes get a speedup-vs-draft-length plot
and the top speculative designs.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.labels import quantity
from reports.sweep_plots import (
    axis_figure,
    pareto_figure,
    roofline_figure,
    speculation_figure,
    sweep_title,
)
from sweeps.analysis import best, load, metric_names, pareto, sensitivity

__all__ = ["write_sweep_report"]

_SHOW = ["decode_tokens_per_s", "tokens_per_j", "total_ms", "memory_bytes", "fits_memory"]


def _save(fig: Figure | None, path: Path) -> bool:
    if fig is None:
        return False
    fig.savefig(path)
    return True


def _colour_axis(sens: dict[str, float]) -> str | None:
    """The swept axis with the largest effect on decode throughput (None if none has one)."""
    ranked = [a for a, v in sens.items() if v == v and v > 1.0]
    return ranked[0] if ranked else None


def _num(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return float("inf")


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in r) + " |")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating):
        return "-" if v != v else f"{v:,.4g}"
    return str(v)


def write_sweep_report(db: str | Path, out: str | Path | None = None,
                       pareto: str = "tokens_per_s,tokens_per_j") -> Path:
    """Write the report for ``db``; returns the path of ``index.html``."""
    df, meta = load(db)
    name = meta.get("name", Path(db).stem)
    out_dir = Path(out) if out else Path("reports/out") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = df[df["status"] == "ok"] if len(df) else df
    axes = [a for a in meta.get("axes", []) if a in df.columns]
    md = [f"# Sweep {name}", "",
          f"{len(df)} points: " + ", ".join(f"{n} {s}" for s, n in
                                            sorted(df["status"].value_counts().items())) +
          f". Axes: {', '.join(axes) or '-'}. Code version {meta.get('code_version', '?')}.",
          ""]
    images: list[tuple[str, str]] = []
    if len(ok):
        md += _plots(ok, axes, name, pareto, out_dir, images)
    bad = df[df["status"].isin(["failed", "filtered"])] if len(df) else df
    if len(bad):
        msgs = bad.groupby("error").size().sort_values(ascending=False).head(10)
        md += ["## Failed and filtered points", "", "| points | message |", "|---|---|",
               *(f"| {n} | {str(e).splitlines()[0]} |" for e, n in msgs.items()), ""]
    (out_dir / "index.md").write_text("\n".join(md) + "\n")
    page = out_dir / "index.html"
    page.write_text(_html(name, md))
    return page


def _plots(ok: pd.DataFrame, axes: list[str], name: str, pareto_metrics: str, out_dir: Path,
           images: list[tuple[str, str]]) -> list[str]:
    """Write the figures; the Markdown lines around them."""
    md: list[str] = []
    title = sweep_title(name, ok)
    sens = sensitivity(ok, axes, "tokens_per_s") if axes else {}
    colour = _colour_axis(sens)
    metrics = metric_names(pareto_metrics)
    front = _front(ok, pareto_metrics)
    if front is not None and len(metrics) >= 2:
        _save(pareto_figure(ok, front, metrics, title=title, colour_by=colour),
              out_dir / "pareto.png")
        images.append(("Pareto frontier", "pareto.png"))
        md += [f"## Pareto frontier over {', '.join(metrics)} ({len(front)} designs)", "",
               _md_table(front[list(dict.fromkeys([*axes, *metrics, *_SHOW]))].head(30)),
               "", "![Pareto](pareto.png)", ""]
    md += ["## Best designs", "", "| metric | value | design |", "|---|---|---|"]
    for m in ("tokens_per_s", "tokens_per_j", "-total_ms", "tokens_per_s_per_usd"):
        b = best(ok, m)
        if len(b):
            r = b.iloc[0]
            design = ", ".join(f"{a}={_fmt(r[a])}" for a in axes) or r["hw"]
            md.append(f"| {m.lstrip('-')} | {_fmt(r[metric_names(m)[0]])} | {design} |")
    md.append("")
    if axes:
        md += ["## Sensitivity of decode throughput", "",
               "max / min over each axis of the mean decode tokens/s (1.0: no effect)", "",
               "| axis | effect |", "|---|---|",
               *(f"| {a} | {v:.3g}x |" for a, v in sens.items()), ""]
        if colour is not None:
            md += [f"Points in the plots are coloured by {colour}, the axis with the largest "
                   "effect.", ""]
    for a in axes[:8]:
        other = colour if colour != a else _colour_axis({k: v for k, v in sens.items()
                                                         if k != a})
        _save(axis_figure(ok, a, title=f"{title}: decode throughput vs {quantity(a)}",
                          colour_by=other), out_dir / f"axis_{a}.png")
        images.append((f"decode tokens/s vs {a}", f"axis_{a}.png"))
        md.append(f"![tokens/s vs {a}](axis_{a}.png)")
    if _save(speculation_figure(ok, title=title), out_dir / "speculation.png"):
        images.append(("Speculation speedup", "speculation.png"))
        top = ok.sort_values("speedup", ascending=False).head(10)
        cols = [c for c in ("hw", *axes, "speedup", "mean_accepted", "tokens_per_pass",
                            "decode_tokens_per_s") if c in ok.columns]
        md += ["", "## Speculation", "",
               "Speedup over non-speculative decode on the same device, against the "
               "draft length (chains; one line per acceptance and device, dashed: token "
               "trees at their depth).", "", "![speculation](speculation.png)", "",
               _md_table(top[list(dict.fromkeys(cols))]), ""]
    if _save(roofline_figure(ok, title=f"{title}: decode roofline"),
             out_dir / "roofline.png"):
        images.append(("Roofline (decode)", "roofline.png"))
        md += ["", "## Roofline (decode)", "", "![roofline](roofline.png)", ""]
    return md


def _front(ok: pd.DataFrame, metrics: str) -> pd.DataFrame | None:
    try:
        return pareto(ok, metrics)
    except ValueError:
        return None


def _html(name: str, md: list[str]) -> str:
    """A self-contained page from the Markdown lines (tables, headings, images)."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, rows = table[0], table[2:]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                        + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>"
                                                             for c in r) + "</tr>" for r in rows)
                        + "</table>")
            table.clear()

    for line in md:
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](")
            body.append(f'<img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}">')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
             "collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:"
             "right}img{max-width:48%;margin:4px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {html.escape(name)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")

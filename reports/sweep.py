"""Sweep report: ``index.md`` + ``index.html`` with PNG plots from a sweep's results DB.

Plots: the Pareto scatter of two metrics (frontier highlighted), decode throughput against
each axis, and a roofline (decode arithmetic intensity vs achieved FLOP/s, with the roofs of
up to six distinct hardware configurations). Tables: status counts, the Pareto designs, the
best design per metric, sensitivity per axis and the distinct failure messages. Sweeps with
speculation axes get a speedup-vs-draft-length plot and the top speculative designs.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sweeps.analysis import best, load, metric_names, pareto, sensitivity  # noqa: E402

__all__ = ["write_sweep_report"]

_SHOW = ["decode_tokens_per_s", "tokens_per_j", "total_ms", "memory_bytes", "fits_memory"]


def _pareto_plot(ok: pd.DataFrame, front: pd.DataFrame, metrics: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    x, y = metrics[:2]
    ax.scatter(ok[x], ok[y], s=10, alpha=0.4, label="designs")
    f = front.sort_values(x)
    ax.plot(f[x], f[y], "o-", color="C3", label="Pareto frontier")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axis_plot(ok: pd.DataFrame, axis: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    vals = ok[axis]
    numeric = pd.api.types.is_numeric_dtype(vals) and bool(vals.notna().all())
    if numeric:
        xs = vals.to_numpy(float)
    else:  # categories (presets, models, bits with "none") at integer positions
        labels = ["none" if v is None or v != v else _fmt(v) for v in vals]
        cats = sorted(set(labels), key=lambda c: (c == "none", _num(c), c))
        xs = np.array([cats.index(c) for c in labels], dtype=float)
        ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 6 else 0)
    y = ok["decode_tokens_per_s"].to_numpy(float)
    ax.scatter(xs, y, s=10, alpha=0.4)
    means = pd.Series(y).groupby(xs).mean()
    ax.plot(means.index, means.values, "o-", color="C3", label="mean")
    if numeric and vals.min() > 0 and vals.max() / vals.min() > 50:
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("decode tokens/s")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _speculation_plot(ok: pd.DataFrame, path: Path) -> bool:
    """Speedup vs gamma per (device, alpha); trees at their depth (draft steps)."""
    if "speedup" not in ok.columns or not ok["speedup"].notna().any():
        return False
    sub = ok[ok["speedup"].notna()].copy()
    depth = [len(json.loads(r)["extra"].get("tree_levels", [])) if isinstance(r, str) else 0
             for r in sub["result"]]
    sub["steps"] = [g if g == g and g is not None else d for g, d in zip(sub["gamma"], depth,
                                                                         strict=True)]
    sub["is_tree"] = sub["tree"].notna()
    fig, ax = plt.subplots(figsize=(6, 4))
    colours: dict[tuple[str, str], str] = {}
    for (hw, alpha, tree), g in sub.groupby(["hw", sub["alpha"].astype(str), "is_tree"]):
        c = colours.setdefault((hw, alpha), f"C{len(colours) % 10}")   # tree = its chain's
        g = g.groupby("steps")["speedup"].max()
        ax.plot(g.index, g.values, "s--" if tree else "o-", color=c,
                label=f"{hw} α={alpha}" + (" tree" if tree else ""))
    ax.set_xlabel("draft tokens per round (γ; tree: depth)")
    ax.set_ylabel("speedup (best over other axes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _roofline_plot(ok: pd.DataFrame, path: Path) -> bool:
    counts = [json.loads(r or "{}").get("counts", {}) for r in ok["result"]]
    flops = np.array([c.get("decode_flops", np.nan) for c in counts], dtype=float)
    nbytes = np.array([c.get("decode_bytes", np.nan) for c in counts], dtype=float)
    secs = ok["decode_ms_per_token"].to_numpy(float) * ok["decode"].to_numpy(float) / 1e3
    good = np.isfinite(flops) & (nbytes > 0) & (secs > 0)
    if not good.any():
        return False
    intensity, achieved = flops[good] / nbytes[good], flops[good] / secs[good]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    roofs = ok.loc[good, ["peak_ops_per_s", "mem_bytes_per_s"]].drop_duplicates()
    roofs = roofs.sort_values(["mem_bytes_per_s", "peak_ops_per_s"])
    roofs = roofs.iloc[sorted(set(np.linspace(0, len(roofs) - 1, min(6, len(roofs))).astype(int)))]
    xs = np.logspace(np.log10(intensity.min() / 10), np.log10(intensity.max() * 1000), 200)
    for i, (peak, bw) in enumerate(roofs.itertuples(index=False)):
        ax.plot(xs, np.minimum(peak, bw * xs), color=f"C{i + 1}", lw=1,
                label=f"roof {peak / 1e12:.3g} TOP/s, {bw / 1e9:.3g} GB/s")
    ax.scatter(intensity, achieved, s=12, color="C0", zorder=3, label="designs (decode)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / compulsory byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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
        metrics = metric_names(pareto)
        front = _front(ok, pareto)
        if front is not None and len(metrics) >= 2:
            _pareto_plot(ok, front, metrics, out_dir / "pareto.png")
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
            sens = sensitivity(ok, axes, "tokens_per_s")
            md += ["## Sensitivity of decode throughput", "",
                   "max / min over each axis of the mean decode tokens/s (1.0: no effect)", "",
                   "| axis | effect |", "|---|---|",
                   *(f"| {a} | {v:.3g}x |" for a, v in sens.items()), ""]
        for a in axes[:8]:
            _axis_plot(ok, a, out_dir / f"axis_{a}.png")
            images.append((f"decode tokens/s vs {a}", f"axis_{a}.png"))
            md.append(f"![tokens/s vs {a}](axis_{a}.png)")
        if _speculation_plot(ok, out_dir / "speculation.png"):
            images.append(("Speculation speedup", "speculation.png"))
            top = ok.sort_values("speedup", ascending=False).head(10)
            cols = [c for c in ("hw", *axes, "speedup", "mean_accepted", "tokens_per_pass",
                                "decode_tokens_per_s") if c in ok.columns]
            md += ["", "## Speculation", "",
                   "Speedup over non-speculative decode on the same device, against the "
                   "draft length (chains; one line per acceptance and device, dashed: token "
                   "trees at their depth).", "", "![speculation](speculation.png)", "",
                   _md_table(top[list(dict.fromkeys(cols))]), ""]
        if _roofline_plot(ok, out_dir / "roofline.png"):
            images.append(("Roofline (decode)", "roofline.png"))
            md += ["", "## Roofline (decode)", "", "![roofline](roofline.png)", ""]
    bad = df[df["status"].isin(["failed", "filtered"])] if len(df) else df
    if len(bad):
        msgs = bad.groupby("error").size().sort_values(ascending=False).head(10)
        md += ["## Failed and filtered points", "", "| points | message |", "|---|---|",
               *(f"| {n} | {str(e).splitlines()[0]} |" for e, n in msgs.items()), ""]
    (out_dir / "index.md").write_text("\n".join(md) + "\n")
    page = out_dir / "index.html"
    page.write_text(_html(name, md))
    return page


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

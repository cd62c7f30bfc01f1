"""The co-design report (issue 18): a better FlightLLM design on the U280, from the sweep's data.

Run ``python -m reports.codesign`` (reads ``results/u280_codesign.db``, running
``configs/sweeps/u280_codesign.toml`` with 2 workers first when the DB is missing; ``--db``,
``--run``). Writes ``reports/codesign.md`` and ``reports/codesign_*.png``. Every number comes
from the DB or from simulations run here: the reference is our cycle-level model of the
published design (the ``flightllm-u280`` preset with FlightLLM's compression config) on the same
workload, next to FlightLLM's measured 55 token/s; the GPUs run the best design's speculation
(draft, γ, α) on the calibrated GPU model (FP16 weights, as measured there).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from reports.codesign_plots import resources_figure, split_figure, tradeoff_figure
from reports.flightllm import U280_TOKENS_PER_S
from sweeps.analysis import load, pareto

__all__ = ["DB", "SPEC", "build_report", "gpu_rows", "main", "reference_row", "row_of",
           "speculation_of", "within_device"]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "configs" / "sweeps" / "u280_codesign.toml"
DB = ROOT / "results" / "u280_codesign.db"
PARETO = "decode_tokens_per_s,tokens_per_j,resources_dsp"
GPUS = ("gpu-a100", "gpu-h100")
TARGET = 2.0   # issue 18: >= 2x FlightLLM U280 decode tokens/s within U280 resources
_DESIGN = ["cores", "mm_macs_per_cycle", "weight_channels", "weight_bits", "keep", "gamma",
           "mv_rows", "draft_weights", "draft_engine", "tree"]
_CAPS = {"resources_dsp": "fpga_dsp_count", "resources_uram": "fpga_uram288_count",
         "resources_bram": "fpga_bram36_count"}


def row_of(name: str, r: Any) -> dict[str, Any]:
    """A design (a sweep row or a SimResult dict) as the report's flat record."""
    get = r.get if isinstance(r, dict) else (lambda k, d=None: getattr(r, k, d))
    res = get("result")
    res = json.loads(res) if isinstance(res, str) else (res or {})
    extra = get("extra") or res.get("extra") or {}
    split = (get("breakdown_ms") or res.get("breakdown_ms") or {}).get("decode", {})
    tokens = get("decode") or 1
    per_tok = {k: v / tokens for k, v in split.items() if v} or \
        {"decode": 1e3 / get("decode_tokens_per_s")}
    return {"label": name, "tokens_per_s": get("decode_tokens_per_s"),
            "tokens_per_j": get("tokens_per_j"), "split_ms_per_token": per_tok,
            "busy": extra.get("verify_busy") or extra.get("decode_busy") or {},
            "extra": extra, **{c: get(c) for c in ("resources_dsp", "resources_uram",
                                                    "resources_bram", "resources_lut")}}


def speculation_of(df: pd.DataFrame) -> pd.Series:
    """Each row's speculation: "none", "γ = k" (chain) or "tree" (a tree point's gamma is
    unset, as a plain point's)."""
    tree = df["tree"] if "tree" in df else pd.Series(None, index=df.index)
    gamma = df["gamma"] if "gamma" in df else pd.Series(float("nan"), index=df.index)
    return pd.Series([("tree" if isinstance(t, str) else "none" if g is None or g != g
                       else f"γ = {g:g}")
                      for t, g in zip(tree, gamma, strict=True)], index=df.index)


_SHORT = (("cores", "{:g} cores"), ("mm_macs_per_cycle", "{:g} MACs"),
          ("weight_channels", "{:g} ch"), ("weight_bits", "INT{:g}"), ("keep", "keep {:g}"),
          ("speculation", "{}"), ("mv_rows", "mv_rows {:g}"), ("draft_weights", "draft {}"),
          ("draft_engine", "{}"))


def _short(r: dict) -> str:
    """A compact design label for figures."""
    parts = [f.format(r[c]) for c, f in _SHORT
             if r.get(c) is not None and r.get(c) == r.get(c)]
    return ", ".join(parts)


def _label(r: Any) -> str:
    parts = []
    for c in _DESIGN:
        v = r.get(c) if isinstance(r, dict) else getattr(r, c, None)
        if v is None or (isinstance(v, float) and v != v):
            continue
        parts.append(f"{c}={v:g}" if isinstance(v, float | int) else f"{c}={v}")
    return ", ".join(parts) or "published"


def _fmt(v: Any, spec: str = ",.1f") -> str:
    return "—" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, float | int) and not isinstance(v, bool):
        return format(v, ",.0f") if abs(v) >= 100 or float(v).is_integer() else format(v, ".3g")
    return str(v)


def _table(df: pd.DataFrame, cols: list[str]) -> list[str]:
    """A Markdown table of ``cols`` (those the sweep has and that are set on some row)."""
    cols = [c for c in cols if c in df.columns and df[c].notna().any()]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df[cols].itertuples(index=False):
        out.append("| " + " | ".join(_cell(v) for v in r) + " |")
    return out


def within_device(ok: pd.DataFrame, caps: dict[str, float]) -> pd.DataFrame:
    """Rows whose DSP/URAM/BRAM are known and within the device (a NULL resource column, a
    block configuration without synthesis data, cannot claim to fit)."""
    keep = ok[list(_CAPS)].notna().all(axis=1)
    for col in _CAPS:   # DSP, URAM, BRAM: the sweep's rules (LUTs are not one)
        if caps.get(col):
            keep &= ok[col] <= caps[col]
    return ok[keep]


def _why(r: dict, ref: dict) -> list[str]:
    """The time split and unit occupancy of a design against the reference."""
    s = r["split_ms_per_token"]
    busy = r["busy"]
    lines = ["- decode time per generated token: "
             + ", ".join(f"{k} {v:.2f} ms" for k, v in s.items())
             + f" (published design: {sum(ref['split_ms_per_token'].values()):.2f} ms)"]
    if busy:
        which = "verify pass" if r["extra"].get("verify_busy") else "decode step"
        lines.append(f"- {which} occupancy (busy fraction per core): HBM loads (LD) "
                     f"{busy.get('LD', 0):.0%}, MPE MV {busy.get('MV', 0):.0%}, MM "
                     f"{busy.get('MM', 0):.0%}, SFU (MISC) {busy.get('MISC', 0):.0%}")
    x = r["extra"]
    if x.get("tokens_per_pass"):
        lines.append(f"- speculation: {x['tokens_per_pass']:.2f} tokens per verify, "
                     f"{x.get('speedup', float('nan')):.2f}x over the same design without a "
                     f"draft ({x.get('baseline_tokens_per_s', float('nan')):.1f} tokens/s)")
    if x.get("decode_energy_breakdown_j"):
        e = x["decode_energy_breakdown_j"]
        tot = sum(e.values())
        lines.append("- decode energy split: " + ", ".join(f"{k} {v / tot:.0%}"
                                                           for k, v in e.items())
                     + f"; {x.get('decode_power_w', float('nan')):.1f} W while decoding")
    return lines


PUBLISHED = {"cores": 3, "mm_macs_per_cycle": 4096, "weight_channels": 8, "weight_bits": 4,
             "keep": 0.7}


def _published_grid(ok: pd.DataFrame) -> list[str]:
    """Decode tokens/s of the published hardware and compression by draft length (rows) and
    ``mv_rows`` (columns): what speculation does on FlightLLM's own design."""
    sel = ok
    for k, v in PUBLISHED.items():
        if k not in ok:
            return []
        sel = sel[sel[k] == v]
    if not len(sel) or "mv_rows" not in sel:
        return []
    for k, v in (("draft_weights", "hbm"), ("draft_engine", "shared")):   # the defaults
        sel = sel[sel[k] == v] if k in sel else sel
    if not len(sel):
        return []
    t = sel.pivot_table(index="speculation", columns="mv_rows", values="decode_tokens_per_s",
                        aggfunc="max")
    out = ["## Speculation on the published hardware (3 cores, 4096 MACs, 8 channels, INT4)", "",
           "Decode tokens/s by speculation (rows: none, chain γ, tree) and `mv_rows` (columns); "
           "the draft on the cores, its weights in HBM.",
           "", "| speculation | " + " | ".join(f"mv_rows {c:g}" for c in t.columns) + " |",
           "|---|" + "---:|" * len(t.columns)]
    for g, r in t.iterrows():
        out.append(f"| {g} | " + " | ".join(_fmt(v) for v in r) + " |")
    return [*out, ""]


def _same_compression(ok: pd.DataFrame, ref: dict) -> list[str]:
    """The best design at FlightLLM's own compression (INT4, q/k keep 0.7): the speedup of
    the architecture alone, since fewer weight bits also cost model quality (not modelled)."""
    same = ok[(ok.weight_bits == 4) & (ok.get("keep", 0.7) == 0.7)] \
        if "weight_bits" in ok else ok
    if not len(same):
        return []
    r = row_of(_label(same.loc[same.decode_tokens_per_s.idxmax()]),
               same.loc[same.decode_tokens_per_s.idxmax()].to_dict())
    return ["## Best at FlightLLM's compression (INT4 weights, q/k_proj keep 0.7)", "",
            f"**{r['label']}**: {r['tokens_per_s']:.1f} tokens/s "
            f"({r['tokens_per_s'] / ref['tokens_per_s']:.2f}x our published-design model, "
            f"{r['tokens_per_s'] / U280_TOKENS_PER_S:.2f}x 55 token/s), "
            f"{_fmt(r['tokens_per_j'], '.2f')} tokens/J, DSP {_fmt(r['resources_dsp'], ',.0f')}, "
            f"URAM {_fmt(r['resources_uram'], ',.0f')}. Fewer weight bits are a compression "
            "choice (accuracy not modelled here); this row is the architecture's own gain.",
            "", *_why(r, ref)]


def _hbm_ceiling(p: Any) -> list[str]:
    """Plain decode's HBM bound: weight + KV bytes per token over the bandwidth the design's
    weight channels (and the whole device) can stream at the artifact's 0.7 efficiency."""
    from sim.spec import load_preset

    x = row_of("", p.to_dict())["extra"]
    per_token = x.get("decode_hbm_bytes_per_token")
    if not per_token:
        return []
    u = load_preset("flightllm-u280")
    ch_bw = u.hbm_channel_bytes_per_s * u.hbm_eff_same_channel
    used = p.cores * p.weight_channels
    mine, device = used * ch_bw / per_token, u.hbm_channels * ch_bw / per_token
    return [f"- plain decode streams {per_token / 1e9:.2f} GB per token; {used:g} weight "
            f"channels at {ch_bw / 1e9:.2f} GB/s each (0.7 of "
            f"{u.hbm_channel_bytes_per_s / 1e9:.3g} GB/s) bound it to {mine:.1f} tokens/s, and "
            f"all {u.hbm_channels} pseudo-channels of the U280 to {device:.1f} tokens/s = "
            f"{device / U280_TOKENS_PER_S:.2f}x 55 token/s at these bytes per token: without "
            "speculation (or fewer bytes per weight) no U280 design passes that"]


def _verify_cost(r: dict) -> list[str]:
    """What one speculation round costs in decode steps and gives in tokens."""
    x = r["extra"]
    rounds, split, base = x.get("rounds"), x.get("split_ms") or {}, x.get("baseline_tokens_per_s")
    if not (rounds and base and split.get("verify")):
        return []
    step = 1e3 / base
    return [f"- fastest speculative design ({r['label']}): a verify costs "
            f"{split['verify'] / rounds / step:.2f} decode steps and the draft "
            f"{split.get('draft', 0) / rounds / step:.2f} more, for {x['tokens_per_pass']:.2f} "
            f"tokens per round: {r['tokens_per_s']:.1f} tokens/s, {x['speedup']:.2f}x its own "
            "plain decode"]


def _bound(best: dict, ref: dict, ok: pd.DataFrame) -> list[str]:
    """What limits the speedup, in numbers from the data (the target missed or met)."""
    ratio = best["tokens_per_s"] / ref["tokens_per_s"]
    lines = [f"**Target (≥ {TARGET:g}x our published-design model within U280 resources): "
             f"{'met' if ratio >= TARGET else 'not met'}** — best {best['tokens_per_s']:.1f} "
             f"tokens/s = {ratio:.2f}x our model ({ref['tokens_per_s']:.1f}) and "
             f"{best['tokens_per_s'] / U280_TOKENS_PER_S:.2f}x the measured "
             f"{U280_TOKENS_PER_S:g} token/s."]
    plain = ok[ok.speculation == "none"]
    spec = ok[ok.speculation != "none"]
    if len(plain):
        p = plain.loc[plain.decode_tokens_per_s.idxmax()]
        lines.append(f"- best without speculation: {p.decode_tokens_per_s:.1f} tokens/s "
                     f"({_label(p)})")
        lines += _hbm_ceiling(p)
    if len(spec):
        top = spec.loc[spec.decode_tokens_per_s.idxmax()]
        lines += _verify_cost(row_of(_label(top), top.to_dict()))
    if len(spec) and "speedup" in spec:
        lines.append(f"- speculation's gain over the same design: median "
                     f"{spec.speedup.median():.2f}x, best {spec.speedup.max():.2f}x over "
                     f"{len(spec)} speculative designs")
    if "mv_rows" in ok.columns and len(spec):
        for m, sub in spec.groupby("mv_rows"):
            b = sub.loc[sub.decode_tokens_per_s.idxmax()]
            lines.append(f"- mv_rows = {m:g}: speculation gains median {sub.speedup.median():.2f}x"
                         f", best {sub.speedup.max():.2f}x; fastest speculative design "
                         f"{b.decode_tokens_per_s:.1f} tokens/s ({b.speculation}, "
                         f"{b.tokens_per_pass:.2f} tokens per verify)")
    else:
        lines.append("- a verify of q tokens runs q MVs that each stream the A buffer "
                     "(512 B/cycle/core at 8 channels), so from 2 tokens on the A-buffer read "
                     "port, not HBM, bounds it (docs/flightllm.md); the small-M MV mode "
                     "(`mv_rows`) that lets the q tokens share one A read is not in this "
                     "sweep's knobs")
    return lines


def build_report(df: pd.DataFrame, meta: dict, out: Path, *, ref: dict,
                 gpus: list[dict] | None = None, caps: dict[str, float] | None = None,
                 wall_s: float | None = None) -> Path:
    """Write ``out`` (Markdown) and its PNGs beside it from the sweep table ``df``."""
    ran = df[(df.status == "ok") & (df.kind == "flightllm")].copy()
    for c in ("gamma", "tree", "speedup", *_CAPS):
        if c not in ran:
            ran[c] = float("nan")
    ran["speculation"] = speculation_of(ran)
    ok = within_device(ran, caps or {})
    if not len(ok):
        raise ValueError("the sweep DB has no finished FlightLLM points within the device")
    front = pareto(ok, PARETO)
    stem = out.with_suffix("")
    top = ok.loc[ok.decode_tokens_per_s.idxmax()].to_dict()
    best = row_of(_label(top), top)
    shown = [top] + [sub.loc[sub.decode_tokens_per_s.idxmax()].to_dict() for sub in (
        ok[(ok.weight_bits == 4)] if "weight_bits" in ok else ok.iloc[:0],
        ok[ok.speculation == "none"]) if len(sub)]
    figs = {"tradeoff": tradeoff_figure(ok, front, {**ref, **_res(ref)}, U280_TOKENS_PER_S),
            "resources": resources_figure(ok, front, {**ref, **_res(ref)}, caps or {}),
            "split": split_figure([row_of(_short(r), r) for r in shown]
                                  + [{**ref, "label": "published design (our model)"}])}
    watts = ok.decode_tokens_per_s / ok.tokens_per_j
    for k, f in figs.items():
        f.savefig(f"{stem}_{k}.png")
    counts = df.status.value_counts().to_dict()
    lines = [
        "# Co-design: a FlightLLM-style accelerator on the U280 (issue 18)", "",
        f"Generated by `python -m reports.codesign` from `{meta.get('name', 'sweep')}` "
        f"({len(df)} points: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + (f"; sweep wall time ~{wall_s / 60:.0f} min, 2 workers" if wall_s else "") + "). "
        "LLaMA-2-7B target, llama-68m draft, batch 1, cycle-level FlightLLM simulator, "
        "energy from sim/flightllm/power.py (docs/flightllm.md, 'Power')"
        + (f"; {len(ran) - len(ok)} finished points without a resource estimate are left "
           "out" if len(ran) > len(ok) else "") + ".", "",
        f"Decode power across the designs: {watts.min():.1f} to {watts.max():.1f} W (median "
        f"{watts.median():.1f}); static and fabric power dominate it, so tokens/J tracks "
        "tokens/s closely.", "",
        "## Best design", "", f"**{best['label']}**: {best['tokens_per_s']:.1f} tokens/s, "
        f"{_fmt(best['tokens_per_j'], '.2f')} tokens/J, DSP {_fmt(best['resources_dsp'], ',.0f')}"
        f", URAM {_fmt(best['resources_uram'], ',.0f')}, BRAM "
        f"{_fmt(best['resources_bram'], ',.0f')}.", "", *_why(best, ref), "",
        *_bound(best, ref, ok), "", *_same_compression(ok, ref), "", *_published_grid(ok),
        "## Against the published design and GPUs", "",
        "| design | tokens/s | tokens/J | vs our published model | vs 55 token/s |",
        "|---|---:|---:|---:|---:|"]
    for r in [best, ref, *(gpus or [])]:
        lines.append(f"| {r['label']} | {r['tokens_per_s']:.1f} | "
                     f"{_fmt(r['tokens_per_j'], '.2f')} | "
                     f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}x | "
                     f"{r['tokens_per_s'] / U280_TOKENS_PER_S:.2f}x |")
    lines += ["", f"FlightLLM measured {U280_TOKENS_PER_S:g} token/s on the U280 "
              "(shared/papers/flightllm.md); the GPU rows run FP16 weights (the calibrated "
              "model's measured stack), the FPGA rows INT2-4.", "",
              f"## Pareto front ({len(front)} designs: max tokens/s, max tokens/J, min DSP)", "",
              "Resource columns from sim/flightllm/resources.py (RTL syntheses + buffers; a "
              "`draft_weights = uram` draft's own URAM288s are not in them: the simulator "
              "checks they fit the URAM the design leaves free).", "",
              *_table(front, [*_DESIGN, "decode_tokens_per_s", "tokens_per_j", "speedup",
                              "resources_dsp", "resources_uram", "resources_bram"]), "",
              *_caveats(best, ok, caps or {}), "",
              f"![tokens/s vs tokens/J]({stem.name}_tradeoff.png)", "",
              f"![tokens/s vs resources]({stem.name}_resources.png)", "",
              f"![time split]({stem.name}_split.png)", ""]
    out.write_text("\n".join(lines))
    return out


def _caveats(best: dict, ok: pd.DataFrame, caps: dict[str, float]) -> list[str]:
    """What the numbers above assume or leave out."""
    alpha = ok["alpha"].dropna().unique() if "alpha" in ok else []
    lut = best.get("resources_lut")
    lut_cap = caps.get("resources_lut")
    return [
        "## Caveats", "",
        "- acceptance: i.i.d. α = " + ", ".join(f"{a:g}" for a in alpha)
        + " per drafted token (assumed, the issue's example), seeded; short decodes make the "
        "accepted count noisy between neighbouring γ",
        "- `mv_rows` > 1 is a design knob, not FlightLLM: the B bank is read m x 16 B a cycle "
        "(charged: at 128 KB a 64 B bank takes the same 29 BRAM36 as a 32 B one), the "
        "broadcast of each weight beat to the extra DSP chains is not (LUTs and routing; "
        "docs/flightllm.md, 'Small-M MV')",
        "- weight bits below 4 and q/k keep below 0.7 change the model's accuracy, which is not "
        "modelled here; the INT4 section above is the like-for-like comparison",
        "- LUTs are not a rule (our RTL's LUT total exceeds the device even for the published "
        "design); the best design uses "
        + (f"{lut:,.0f} LUTs" + (f" ({lut / lut_cap:.0%} of the device)" if lut_cap else "")
           if lut else "— LUTs") + " by our RTL's count",
        "- the GPU rows run the calibrated model's FP16 stack; INT4/INT2 GPU kernels would "
        "move them"]


def _res(ref: dict) -> dict:
    return {k: ref.get(k) for k in ("resources_dsp", "resources_uram")}


def reference_row() -> dict:
    """Our cycle-level model of the published design on the sweep's workload, with resources."""
    from sim.flightllm.resources import estimate
    from sim.registry import run
    from sim.spec import load_preset
    from sweeps.spec import load_sweep
    from sweeps.worker import _load, _sparsity_config

    sw = load_sweep(SPEC)
    point = sw.points()[0]
    point = type(point)(**{**point.__dict__, "overrides": (), "derived": (), "gamma": None,
                           "alpha": None, "draft": None, "tree": None, "tree_parents": None,
                           "keep": 0.7, "weight_bits": 4})
    spec = load_preset("flightllm-u280")
    r = run(spec, _load(point), "cycle", compression=_sparsity_config(point)).to_dict()
    t = estimate(spec, weight_bits=4).totals
    r.update(resources_dsp=t["dsp"], resources_uram=t["uram288"], resources_bram=t["bram36"],
             resources_lut=t["lut"])
    return row_of("published design (flightllm-u280 preset, our model)", r)


def gpu_rows(best: dict) -> list[dict]:
    """The calibrated GPU model running the best design's speculation (or plain decode)."""
    from mapping.acceptance import IIDAcceptance
    from mapping.spec_workload import build_speculative_workload
    from mapping.speculation import SpecConfig
    from models.cache import get_workload
    from models.zoo import get_model
    from sim.registry import run
    from sim.spec import load_preset
    from sweeps.spec import load_sweep

    fixed = load_sweep(SPEC).fixed
    x = best["extra"]
    out = []
    for hw in GPUS:
        if x.get("gamma"):
            cfg = SpecConfig(gamma=int(x["gamma"]), acceptance=IIDAcceptance(
                float(x["acceptance"]["alpha"])))
            w = build_speculative_workload(get_model(fixed["model"]), x["draft"],
                                           prefill=fixed["prefill"], decode=fixed["decode"],
                                           config=cfg)
            what = f"{x['draft']} γ = {x['gamma']}, α = {x['acceptance']['alpha']}"
        else:
            w = get_workload(get_model(fixed["model"]), prefill=fixed["prefill"],
                             decode=fixed["decode"])
            what = "no speculation"
        r = run(load_preset(hw), w, "calibrated").to_dict()
        out.append(row_of(f"{hw} (calibrated, FP16, {what})", r))
    return out


def main(argv: list[str] | None = None,
         echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Path:
    ap = argparse.ArgumentParser(prog="python -m reports.codesign", description=__doc__)
    ap.add_argument("--db", type=Path, default=DB)
    ap.add_argument("--run", action="store_true", help="run (resume) the sweep first")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "codesign.md")
    a = ap.parse_args(argv)
    if a.run or not a.db.exists():
        from sweeps import run_sweep
        from sweeps.spec import load_sweep

        echo(f"running {SPEC.name} -> {a.db} ({a.workers} workers) ...")
        run_sweep(load_sweep(SPEC), db=a.db, workers=a.workers, progress=True,
                  resume=a.db.exists())
    df, meta = load(a.db)
    wall = _wall(df)   # from the rows: the same whether this call ran the sweep or not
    echo("published design ...")
    ref = reference_row()
    from sim.spec import load_preset

    u280 = load_preset("flightllm-u280")
    caps = {k: float(getattr(u280, v)) for k, v in _CAPS.items()}
    caps_all = {**caps, "resources_lut": float(u280.fpga_lut_count)}
    ok = within_device(df[(df.status == "ok") & (df.kind == "flightllm")], caps)
    echo("GPUs ...")
    gpus = gpu_rows(row_of("best", ok.loc[ok.decode_tokens_per_s.idxmax()].to_dict()))
    ok = ok.assign(speculation=speculation_of(ok))
    spec = ok[ok.speculation.str.startswith("γ")]   # chains: what the GPU model speculates
    if len(spec) and not gpus[0]["extra"].get("gamma"):   # best plain or a tree: best chain
        gpus += gpu_rows(row_of("best speculative",
                                spec.loc[spec.decode_tokens_per_s.idxmax()].to_dict()))
    return build_report(df, meta, a.out, ref=ref, gpus=gpus, caps=caps_all, wall_s=wall)


def _wall(df: pd.DataFrame) -> float | None:
    """The sweep's wall time as its rows record it: from the first simulated chunk's start
    (its first finish less its points' simulation time) to the last finish (an estimate:
    a resumed sweep counts its pause)."""
    ran = df[df.status.isin(["ok", "failed"]) & df.finished_at.notna()]
    if not len(ran):
        return None
    first = ran.finished_at.min()
    start = first - ran[ran.finished_at == first].wall_s.sum()
    return float(ran.finished_at.max() - start)


if __name__ == "__main__":
    print(main())

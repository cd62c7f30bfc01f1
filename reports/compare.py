"""One model on several devices, each at its best fidelity, with the source of every number.

Answers "how does this model run on FlightLLM, HADES and a GPU, per second, per joule and per
dollar?": :func:`compare` simulates each device (FlightLLM and HADES cycle-level, GPUs with the
calibrated model when ``sim/gpu/`` registers one, else the roofline) and :func:`write_compare`
writes ``compare.md``, ``compare.json`` and ``compare.png``. The headline ratios of a paper
(``configs/compare/*.toml``) are recomputed from its stated inputs in ``reports.headline``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapping.compression import quantize
from models.errors import UserError
from models.graph import OpKind
from models.workload import Workload
from reports.labels import label
from sim.registry import fidelities, run
from sim.result import SimResult
from sim.spec import HardwareSpec, list_presets, load_preset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COLUMNS", "DEFAULT_HW", "GPU_STACKS", "Row", "best_fidelity", "check_inputs",
           "compare", "fpga_roofline_workload", "markdown", "parse_hw_list", "plan_device", "plot",
           "row_from_result", "serving_markdown", "table_cells", "with_overrides",
           "write_compare"]

DEFAULT_HW = ("flightllm-u280", "flightllm-vhk158", "hades", "gpu-v100s", "gpu-a100",
              "gpu-h100")
# The calibrated GPU model's software stacks (sim/gpu/): CUDA-graph replay as in vLLM, or
# Hugging Face PyTorch without graphs.
GPU_STACKS = {"graph": "CUDA graphs, HF masked SDPA", "vllm": "CUDA graphs, flash SDPA "
              "without masks (vLLM-like)", "hf-eager": "HF PyTorch eager, generate()"}
_POWER_FIELD = {"gpu": "tdp_w", "flightllm": "board_power_w"}  # HADES: its energy model


@dataclass(frozen=True)
class Row:
    """One device of the comparison: what was simulated and where each number comes from."""

    hw: str
    kind: str
    fidelity: str
    prefill_ms: float
    decode_ms_per_token: float
    decode_tokens_per_s: float
    power_w: float | None            # board power / TDP, or the mean decode power (HADES)
    tokens_per_j: float | None       # decode tokens per joule
    price_usd: float | None
    tokens_per_s_per_usd: float | None
    fits_memory: bool
    source: str                      # where the time numbers come from
    power_source: str
    price_source: str
    notes: tuple[str, ...] = ()
    stack: str | None = None         # the calibrated GPU model's software stack

    @property
    def label(self) -> str:
        """The device as plots name it: "gpu-h100 (calibrated, graph)"."""
        return f"{self.hw} ({', '.join(x for x in (self.fidelity, self.stack) if x)})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def parse_hw_list(text: str) -> list[str]:
    """``--hw a,b,c``: non-empty, distinct names (presets or .toml paths)."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UserError(f"--hw {text!r}: give preset names separated by commas (no empty "
                        f"entries), from: {', '.join(list_presets())}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"--hw lists {', '.join(dup)} more than once")
    return names


def _load_gpu_model() -> None:
    """Import ``sim.gpu`` (it registers the "calibrated" fidelity) if it exists yet."""
    try:
        importlib.import_module("sim.gpu")
    except ModuleNotFoundError as e:
        if e.name != "sim.gpu":
            raise


def best_fidelity(spec: HardwareSpec, cycle: bool = True) -> str:
    """FlightLLM/HADES: ``cycle``; GPU: ``calibrated`` when registered; else ``roofline``."""
    if not cycle:
        return "roofline"
    if spec.kind == "gpu":
        _load_gpu_model()
        return "calibrated" if "calibrated" in fidelities("gpu") else "roofline"
    return "cycle" if "cycle" in fidelities(spec.kind) else "roofline"


def _source(spec: HardwareSpec, fidelity: str, stack: str | None, r: SimResult,
            cycle: bool = True) -> str:
    if fidelity == "calibrated" and spec.kind == "gpu":
        what = r.extra.get("calibration") or r.extra.get("source")
        return (f"modelled: calibrated GPU model (sim/gpu/), stack {stack or 'graph'}"
                + (f"; {what}" if isinstance(what, str) else ""))
    if fidelity == "cycle" and spec.kind == "flightllm":
        return ("modelled: FlightLLM cycle-level simulator (sim/flightllm), artifact "
                "compression (INT4 weights, q/k 70% N:16, INT8 KV)")
    if fidelity == "cycle" and spec.kind == "hades":
        return "modelled: HADES event-driven simulator (sim/hades), FP16, no speculation"
    if fidelity == "roofline":
        bits = "W4 KV8" if spec.kind == "flightllm" else "FP16"
        why = (" (--no-cycle)" if not cycle else
               " (no calibrated model)" if spec.kind == "gpu" else "")
        return f"roofline bound{why}: {bits}, per-op max(FLOPs/peak, bytes/bandwidth)"
    return f"modelled: {fidelity} simulator"


def with_overrides(spec: HardwareSpec, power_w: float | None, price_usd: float | None,
                    why: str) -> HardwareSpec:
    """The spec with the assumptions file's power and price (and their sources)."""
    changes: dict[str, Any] = {}
    sources = dict(spec.sources)
    if power_w is not None:
        field = _POWER_FIELD.get(spec.kind)
        if field is None:
            raise UserError(f"{why}: {spec.name} takes its power from its energy model; "
                            "remove power_w for it")
        changes[field] = power_w
        sources[field] = f"{why}: {power_w:g} W"
    if price_usd is not None:
        changes["price_usd"] = price_usd
        sources["price_usd"] = f"{why}: ${price_usd:,.0f}"
    if not changes:
        return spec
    return replace(spec, **changes, sources=tuple(sources.items()))


def row_from_result(spec: HardwareSpec, r: SimResult, source: str,
                    power_overridden: bool = False) -> Row:
    """One table row; ``power_overridden``: the assumptions file set this device's power."""
    tps = r.decode_tokens_per_s
    measured = r.extra.get("decode_power_w") if spec.kind == "gpu" else None
    tokens_per_j = r.tokens_per_j
    if measured and not power_overridden and r.extra.get("power_source") == "modelled":
        # the calibrated model of a GPU never measured: the measured GPUs' fraction of TDP
        power = measured
        power_source = next(n.removeprefix("energy ") for n in r.notes
                            if n.startswith("energy modelled: "))
    elif measured and not power_overridden:
        # the calibrated model of a GPU we measured used its measured board power, not the TDP
        power = measured
        power_source = f"measured board power while decoding (NVML): {r.extra['calibration']}"
    elif spec.kind in _POWER_FIELD:
        field = _POWER_FIELD[spec.kind]
        power = spec.power_w or None
        power_source = (f"{'TDP' if spec.kind == 'gpu' else 'board power'}: "
                        f"{spec.source_of(field) or 'preset'}" if power
                        else "not published: no energy")
        if measured and tokens_per_j and power:   # the model's energy used the measured power
            tokens_per_j *= measured / power
    else:   # HADES: per-action energy table; show the mean decode power it implies
        power = tps / r.tokens_per_j if r.tokens_per_j else None
        power_source = f"{spec.kind} energy model (mean decode power)"
    price = getattr(spec, "price_usd", 0.0) or None
    price_source = (spec.source_of("price_usd") or "preset") if price else "not published"
    return Row(hw=r.hw, kind=spec.kind, fidelity=r.fidelity, prefill_ms=r.prefill_ms,
               decode_ms_per_token=r.decode_ms_per_token, decode_tokens_per_s=tps,
               power_w=power, tokens_per_j=tokens_per_j, price_usd=price,
               tokens_per_s_per_usd=tps / price if price else None,
               fits_memory=r.fits_memory, source=source, power_source=power_source,
               price_source=price_source, notes=r.notes,
               stack=r.extra.get("stack") if spec.kind == "gpu" else None)


def check_inputs(hw: Iterable[str], gpu_stack: str | None = None) -> list[HardwareSpec]:
    """The presets (UserError naming the allowed values) before any tracing or simulation."""
    if gpu_stack is not None and gpu_stack not in GPU_STACKS:
        raise UserError(f"unknown --gpu-stack {gpu_stack!r}; allowed: {', '.join(GPU_STACKS)}")
    return [load_preset(name) for name in hw]


def plan_device(spec: HardwareSpec, w: Workload, cycle: bool = True,
                gpu_stack: str | None = None) -> tuple[str, dict[str, Any]]:
    """(fidelity, ``run`` options) of ``spec`` in the comparison: its best fidelity, the
    roofline for a mixture-of-experts model on FlightLLM, the GPU stack when given."""
    fidelity = best_fidelity(spec, cycle)
    g0 = w.prefill or w.decode_first
    if fidelity == "cycle" and spec.kind == "flightllm" and g0 is not None \
            and any(n.kind is OpKind.EXPERTS for n in g0.nodes):
        fidelity = "roofline"  # FlightLLM's cycle flow maps dense layers only (refuse_moe)
    options: dict[str, Any] = {}
    if spec.kind == "gpu" and gpu_stack is not None:
        if fidelity != "calibrated":
            raise UserError("--gpu-stack needs the calibrated GPU model (sim/gpu/), "
                            + ("not --no-cycle" if not cycle else "which is not available")
                            + "; the roofline has no software stack")
        options["stack"] = gpu_stack
    return fidelity, options


def fpga_roofline_workload(w: Workload) -> Workload:
    """FlightLLM at the roofline: the artifact's W4 weights and INT8 KV cache (the cycle
    simulator compresses by itself)."""
    return w.map(lambda g: quantize(g, weight_bits=4, kv_bits=8))


def compare(hw: Iterable[str], w: Workload, *, cycle: bool = True, gpu_stack: str | None = None,
            overrides: Mapping[str, Mapping[str, float]] | None = None, overrides_from: str = "",
            known: Mapping[tuple[str, str], SimResult] | None = None,
            progress: Callable[[int, int], None] | None = None) -> list[Row]:
    """Simulate ``w`` on each device at its best fidelity (roofline only when not ``cycle``).

    ``overrides``: preset -> {"power_w": W, "price_usd": $} from an assumptions file (named by
    ``overrides_from``); ``known``: results already simulated, by (hw, fidelity), reused;
    ``progress(done, total)``: called before each device and after the last.
    """
    specs = check_inputs(hw, gpu_stack)
    rows: list[Row] = []
    w_fpga = None
    for spec in specs:
        if progress is not None:
            progress(len(rows), len(specs))
        o = (overrides or {}).get(spec.name, {})
        spec = with_overrides(spec, o.get("power_w"), o.get("price_usd"), overrides_from)
        fidelity, options = plan_device(spec, w, cycle, gpu_stack)
        r = (known or {}).get((spec.name, fidelity)) if not o else None
        if r is None:
            workload = w
            if spec.kind == "flightllm" and fidelity == "roofline":
                # the cycle simulator compresses itself; the roofline gets the artifact's W4/KV8
                w_fpga = w_fpga or fpga_roofline_workload(w)
                workload = w_fpga
            r = _run_or_bound(spec, workload, fidelity, options, w_fpga or w)
        rows.append(row_from_result(spec, r, _source(spec, r.fidelity, gpu_stack, r, cycle),
                                    power_overridden=o.get("power_w") is not None))
    if progress is not None:
        progress(len(rows), len(specs))
    return rows


def _run_or_bound(spec: HardwareSpec, w: Workload, fidelity: str, options: dict[str, Any],
                  w_roofline: Workload) -> SimResult:
    """``run``; where the detailed simulator refuses the request for a resource the design
    lacks (FlightLLM's decode batch, its HBM), the roofline row, whose notes say why."""
    try:
        return run(spec, w, fidelity, **options)
    except UserError as e:
        if fidelity == "roofline":
            raise
        if spec.kind == "flightllm" and w_roofline is w:
            w_roofline = fpga_roofline_workload(w)
        r = run(spec, w_roofline, "roofline")
        return replace(r, notes=(f"{fidelity} refused ({e}); the roofline bound is shown",
                                 *r.notes))


# -- output -----------------------------------------------------------------------------------
def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table_cells(r: Row) -> list[str]:
    """The cells of one row, in :data:`COLUMNS` order (shared by the CLI and the Markdown)."""
    return [r.hw, r.fidelity, f"{r.prefill_ms:,.1f}", f"{r.decode_ms_per_token:,.2f}",
            f"{r.decode_tokens_per_s:,.1f}", _num(r.power_w, ",.0f"), _num(r.tokens_per_j, ".3f"),
            "-" if r.price_usd is None else f"{r.price_usd:,.0f}",
            _num(r.tokens_per_s_per_usd and r.tokens_per_s_per_usd * 1e3, ".2f"), r.source]


COLUMNS = ("device", "fidelity", "prefill ms", "decode ms/token", "decode tokens/s", "power W",
           "tokens/J", "price $", "tokens/s per k$", "source")


def markdown(rows: list[Row], *, title: str, command: str, headline_md: str = "") -> str:
    lines = [f"# {title}", "", f"Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} "
             "UTC.", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if 1 < i < len(COLUMNS) - 1 else "---"
                            for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    lines += ["", "Decode columns are means over the decode passes; tokens/J counts decode "
              "energy only; tokens/s per k$ is decode tokens/s per $1,000 of unit price.", "",
              "## Power and price sources", "",
              "| device | power | price |", "|---|---|---|"]
    lines += [f"| {r.hw} | {r.power_source} | {r.price_source} |" for r in rows]
    lines += ["", "![prefill ms, decode ms/token, decode tokens/s, tokens/J, tokens/s per k$]"
              "(compare.png)", ""]
    notes = [f"- {r.hw}: {n}" for r in rows for n in r.notes]
    notes += [f"- {r.hw}: does not fit in memory" for r in rows if not r.fits_memory]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if headline_md:
        lines += [headline_md, ""]
    return "\n".join(lines)


def serving_markdown(serving: list[dict[str, Any]]) -> str:
    """The serving section: one row per device (``reports.serve``'s columns)."""
    from reports.serve import COLUMNS as SERVE_COLUMNS
    from reports.serve import table_row

    return "\n".join([f"## Serving: {serving[0]['arrivals']}", "",
                      "| " + " | ".join(SERVE_COLUMNS) + " |", "|" + "---|" * len(SERVE_COLUMNS),
                      *("| " + " | ".join(table_row(m)) + " |" for m in serving), "",
                      *(f"- {m['hw']}: {n}" for m in serving for n in m.get("notes", ())),
                      "", "Continuous batching with chunked prefill (`llmcosim serve`, "
                      "docs/serving.md); each device at its serving fidelity (FlightLLM: "
                      "whole prefill and decode passes from its cycle-level simulator).", ""])


_PANELS = (  # (label, value of a row); units in the label (reports.labels)
    (label("prefill_ms"), lambda r: r.prefill_ms),
    (label("decode_ms_per_token"), lambda r: r.decode_ms_per_token),
    (label("decode_tokens_per_s"), lambda r: r.decode_tokens_per_s),
    (label("tokens_per_j"), lambda r: r.tokens_per_j),
    ("decode throughput per price (tokens/s per k$)",
     lambda r: r.tokens_per_s_per_usd and r.tokens_per_s_per_usd * 1e3),
)
_FIDELITY_COLOURS = {"cycle": "tab:blue", "calibrated": "tab:green", "roofline": "tab:gray"}


def plot(rows: list[Row], title: str) -> Figure:
    """Five bar panels: latency (prefill ms, decode ms/token), decode tokens/s, tokens/J,
    tokens/s per k$; colour = fidelity, the legend lists the fidelities shown."""
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(13, 7.5), dpi=110)
    axes = fig.subplots(2, 3).ravel()
    names = [r.label for r in rows]
    colour = [_FIDELITY_COLOURS.get(r.fidelity, "tab:orange") for r in rows]
    for ax, (text, get) in zip(axes, _PANELS, strict=False):
        vals = [get(r) for r in rows]
        bars = ax.bar(names, [v or 0.0 for v in vals], color=colour)
        for bar, v in zip(bars, vals, strict=True):
            ax.annotate("n/a" if v is None else f"{v:.3g}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=7)
        ax.set_ylabel(text, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    legend_ax = axes[-1]
    legend_ax.axis("off")
    used = list(dict.fromkeys(r.fidelity for r in rows))  # only the fidelities a bar uses
    handles = [Rectangle((0, 0), 1, 1, color=_FIDELITY_COLOURS.get(f, "tab:orange"))
               for f in used]
    legend_ax.legend(handles, used, loc="center", title="fidelity", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def write_compare(out: Path, rows: list[Row], *, workload: dict[str, Any], command: str,
                  headline: list[dict[str, Any]] | None = None, headline_md: str = "",
                  stem: str = "compare", serving: list[dict[str, Any]] | None = None,
                  best_batch: dict[str, Any] | None = None, best_batch_md: str = "") -> Path:
    """``<stem>.md``, ``<stem>.json`` and ``<stem>.png`` under ``out``; returns the .md path.
    ``serving``: each device's serving metrics (``sim.serving``), a section of their own;
    ``best_batch``/``best_batch_md``: ``--best-batch``'s search (``reports.best_batch``)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    title = (f"{workload['model']} on {len(rows)} devices: prefill {workload['prefill']}, "
             f"decode {workload['decode']}, batch {workload['batch']}")
    data = {"workload": workload, "command": command, "devices": [r.to_dict() for r in rows]}
    if headline is not None:
        data["headline"] = headline
    if serving:
        data["serving"] = serving
    if best_batch is not None:
        data["best_batch"] = best_batch
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))
    plot(rows, title).savefig(out / f"{stem}.png")
    md = markdown(rows, title=title, command=command, headline_md=headline_md)
    if best_batch_md:
        md += "\n" + best_batch_md
    if serving:
        md += "\n" + serving_markdown(serving)
    path = out / f"{stem}.md"
    path.write_text(md.replace("compare.png", f"{stem}.png"))
    return path

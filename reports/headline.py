"""A paper's headline ratios (energy, cost, throughput) recomputed from its stated inputs.

``configs/compare/*.toml`` holds the paper's assumptions, each with its source;
:func:`headline` recomputes every ratio from them (never a hard-coded result), alongside the
same ratio under our presets and our simulators, and says which input each ratio hangs on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.errors import UserError, read_toml
from reports.compare import _POWER_FIELD, GPU_STACKS, Row
from sim.spec import list_presets, load_preset

__all__ = ["HEADLINE_COLUMNS", "Assumptions", "Input", "Ratio", "RatioResult", "Variant",
           "fmt_input", "headline", "headline_cells", "headline_markdown", "load_assumptions"]


# -- headline ratios from a paper's assumptions ----------------------------------------------
Range = tuple[float, float]
_FIELDS = {"tokens_per_s": "tokens/s", "power_w": "W", "price_usd": "$"}
_METRICS = {"tokens_per_s": (), "tokens_per_j": ("power_w",),
            "tokens_per_s_per_usd": ("price_usd",)}
_DEVICE_KEYS = ("tokens_per_s", "decode_ms_per_token", "power_w", "price_usd")
_STACK_NAMES = {"vllm": "vLLM", "hf": "HF"}


@dataclass(frozen=True)
class Ratio:
    name: str
    metric: str          # one of _METRICS: device metric / baseline metric
    device: str
    baseline: str
    paper: float
    tolerance: float     # the paper's rounding: half a unit of its last digit


@dataclass(frozen=True)
class Assumptions:
    path: str
    title: str
    model: str | None
    stacks: dict[str, str]
    baseline_stack: str | None           # the GPU stack the paper says its baselines ran
    model_stacks: dict[str, str]         # paper stack -> our calibrated GPU model's stack
    devices: dict[str, dict[str, Any]]   # preset -> field -> Range, or {stack: Range}
    sources: dict[str, str]
    ratios: tuple[Ratio, ...]

    def overrides(self) -> dict[str, dict[str, float]]:
        """Power and price per preset (a range's middle) for the device table."""
        return {d: {k: sum(v) / 2 for k, v in f.items() if k in ("power_w", "price_usd")}
                for d, f in self.devices.items()}


def _range(where: str, raw: Any) -> Range:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, list)):
        raise UserError(f"{where}: expected a number or [low, high], got {raw!r}")
    lo, hi = (raw, raw) if not isinstance(raw, list) else (raw + [None, None])[:2]
    if not (isinstance(raw, (int, float)) or len(raw) == 2) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)):
        raise UserError(f"{where}: expected a number or [low, high], got {raw!r}")
    if not 0 < lo <= hi:
        raise UserError(f"{where}: need 0 < low <= high, got {raw!r}")
    return float(lo), float(hi)


def load_assumptions(path: str | Path) -> Assumptions:
    """A paper's stated inputs and headline ratios (format: configs/compare/*.toml)."""

    data = read_toml(path, "assumptions file", expected="a paper's devices and [ratios] "
                     "(configs/compare/flightllm_paper.toml)")
    p = str(path)
    allowed = ("title", "model", "baseline_stack", "model_stacks", "stacks", "devices", "ratios",
               "sources")
    unknown = set(data) - set(allowed)
    if unknown:
        raise UserError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                        f"{', '.join(allowed)}")
    stacks = {str(k): str(v) for k, v in data.get("stacks", {}).items()}
    baseline_stack = data.get("baseline_stack")
    if baseline_stack is not None and baseline_stack not in stacks:
        raise UserError(f"{p}: baseline_stack {baseline_stack!r} is not in [stacks] "
                        f"({', '.join(stacks) or 'none declared'})")
    model_stacks = {str(k): str(v) for k, v in data.get("model_stacks", {}).items()}
    for k, v in model_stacks.items():
        if k not in stacks or v not in GPU_STACKS:
            raise UserError(f"{p}: model_stacks.{k} = {v!r}: keys from [stacks] "
                            f"({', '.join(stacks)}), values from {', '.join(GPU_STACKS)}")
    sources = {str(k): str(v) for k, v in data.get("sources", {}).items()}
    presets = list_presets()
    devices: dict[str, dict[str, Any]] = {}
    for dev, fields in data.get("devices", {}).items():
        if dev not in presets:
            raise UserError(f"{p}: devices.{dev}: unknown hardware preset; presets: "
                            f"{', '.join(presets)}")
        bad = set(fields) - set(_DEVICE_KEYS)
        if bad or ("tokens_per_s" in fields and "decode_ms_per_token" in fields):
            raise UserError(f"{p}: devices.{dev}: keys {', '.join(sorted(fields))}; allowed: "
                            f"{', '.join(_DEVICE_KEYS)} (tokens_per_s or decode_ms_per_token)")
        out: dict[str, Any] = {}
        for key, raw in fields.items():
            where = f"{p}: devices.{dev}.{key}"
            if f"{dev}.{key}" not in sources:
                raise UserError(f"{p}: no [sources] entry \"{dev}.{key}\"; every number needs "
                                "one")
            if key == "tokens_per_s" and isinstance(raw, dict):
                if not raw or set(raw) - set(stacks):
                    raise UserError(f"{where}: stacks {', '.join(raw) or '(none)'}; declared "
                                    f"in [stacks]: {', '.join(stacks) or '(none)'}")
                out[key] = {s: _range(f"{where}.{s}", v) for s, v in raw.items()}
            elif key == "decode_ms_per_token":
                lo, hi = _range(where, raw)
                out["tokens_per_s"] = (1e3 / hi, 1e3 / lo)
                sources[f"{dev}.tokens_per_s"] = f"{sources[f'{dev}.{key}']} (tokens/s = 1000/ms)"
            else:
                out[key] = _range(where, raw)
        devices[dev] = out
    ratios = []
    for i, r in enumerate(data.get("ratios", [])):
        where = f"{p}: ratios[{i}]"
        need = ("name", "metric", "device", "baseline", "paper", "tolerance")
        if set(r) != set(need):
            raise UserError(f"{where}: keys {', '.join(sorted(r))}; need exactly "
                            f"{', '.join(need)}")
        if r["metric"] not in _METRICS:
            raise UserError(f"{where}: unknown metric {r['metric']!r}; allowed: "
                            f"{', '.join(_METRICS)}")
        for side in ("device", "baseline"):
            if r[side] not in devices:
                raise UserError(f"{where}: {side} {r[side]!r} has no [devices] entry; have: "
                                f"{', '.join(devices)}")
        paper, tol = _range(f"{where}.paper", r["paper"])[0], float(r["tolerance"])
        ratios.append(Ratio(str(r["name"]), r["metric"], r["device"], r["baseline"], paper,
                            tol))
    return Assumptions(p, str(data.get("title", p)), data.get("model"), stacks, baseline_stack,
                       model_stacks, devices, sources, tuple(ratios))


@dataclass(frozen=True)
class Input:
    device: str
    field: str               # tokens_per_s, power_w, price_usd
    value: Range | None      # None: nobody states it
    origin: str              # "paper", "preset" (configs/hw) or "model" (this comparison)
    source: str
    stack: str | None = None


@dataclass(frozen=True)
class Variant:
    label: str
    stack: str | None        # GPU software stack of the paper's throughput, if any
    inputs: tuple[Input, ...]
    ratio: Range | None
    within: bool
    implied: tuple[tuple[Input, Range], ...]   # value of an input that gives the paper's ratio


def _short(dev: str) -> str:
    return dev.split("-", 1)[1] if dev.startswith(("gpu-", "flightllm-")) else dev


def _fmt(r: Range, digits: int = 3) -> str:
    lo, hi = (f"{x:,.{digits}g}" if x < 10 ** digits else f"{x:,.0f}" for x in r)
    return lo if lo == hi else f"{lo}–{hi}"


def _fmt_value(field: str, v: Range | None) -> str:
    if v is None:
        return "not stated"
    return "$" + _fmt(v) if field == "price_usd" else f"{_fmt(v)} {_FIELDS[field]}"


def fmt_input(i: Input) -> str:
    """``v100s 87–89 tokens/s (paper, vLLM)``."""
    tag = i.origin + (f", {_STACK_NAMES.get(i.stack, i.stack)}" if i.stack else "")
    return f"{_short(i.device)} {_fmt_value(i.field, i.value)} ({tag})"


def _used(inputs: tuple[Input, ...], metric: str) -> list[Input]:
    return [i for i in inputs if i.field == "tokens_per_s" or i.field in _METRICS[metric]]


def _ratio(ratio: Ratio, inputs: tuple[Input, ...], ones: Input | None = None) -> Range | None:
    """Device metric / baseline metric over the input ranges; ``ones``: that input set to 1."""
    def side(dev: str) -> Range | None:
        by = {i.field: (1.0, 1.0) if i is ones else i.value
              for i in _used(inputs, ratio.metric) if i.device == dev}
        tps = by["tokens_per_s"]
        x = by.get(_METRICS[ratio.metric][0], (1.0, 1.0)) if _METRICS[ratio.metric] else (1, 1)
        return None if tps is None or x is None else (tps[0] / x[1], tps[1] / x[0])
    num, den = side(ratio.device), side(ratio.baseline)
    return None if num is None or den is None else (num[0] / den[1], num[1] / den[0])


def _variant(label: str, stack: str | None, ratio: Ratio, inputs: tuple[Input, ...],
             targets: list[Input]) -> Variant:
    """The ratio over ``inputs`` and, per target input, the value giving the paper's ratio."""
    r = _ratio(ratio, inputs)
    within = r is not None and r[0] <= ratio.paper + ratio.tolerance and \
        r[1] >= ratio.paper - ratio.tolerance
    implied = []
    for t in targets:
        c = _ratio(ratio, inputs, ones=t)
        if c is None:
            continue
        # ratio = c * x**e with e = +1 (device tokens/s, baseline power/price) or -1
        e = 1 if (t.device == ratio.device) == (t.field == "tokens_per_s") else -1
        lo, hi = sorted((ratio.paper / x) ** e for x in c)
        implied.append((t, (lo, hi)))
    return Variant(label, stack, inputs, r, within, tuple(implied))


@dataclass(frozen=True)
class RatioResult:
    ratio: Ratio
    variants: tuple[Variant, ...]
    verdict: str
    hangs_on: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.ratio), "verdict": self.verdict, "hangs_on": list(self.hangs_on),
                "variants": [{"label": v.label, "ratio": v.ratio, "within": v.within,
                              "inputs": [asdict(i) for i in v.inputs],
                              "implied": [{**asdict(i), "implied": r} for i, r in v.implied]}
                             for v in self.variants]}


def _paper_input(a: Assumptions, dev: str, field: str, stack: str | None) -> Input | None:
    v = a.devices[dev].get(field)
    if v is None:
        return None
    src = a.sources[f"{dev}.{field}"]
    if isinstance(v, dict):
        return Input(dev, field, v[stack], "paper", src, stack) if stack in v else None
    return Input(dev, field, v, "paper", src)


def _preset_input(dev: str, field: str) -> Input:
    spec = load_preset(dev)
    value, src = 0.0, "no preset value"
    if field == "power_w" and spec.kind in _POWER_FIELD:
        value = spec.power_w
        src = f"{'TDP' if spec.kind == 'gpu' else 'board power'}: " \
              f"{spec.source_of(_POWER_FIELD[spec.kind]) or f'configs/hw/{dev}.toml'}"
    elif field == "price_usd":
        value = getattr(spec, "price_usd", 0.0)
        src = spec.source_of("price_usd") or f"configs/hw/{dev}.toml"
    return Input(dev, field, (value, value) if value else None, "preset", src)


def _row_inputs(r: Row) -> tuple[Input, ...]:
    def rng(x: float | None) -> Range | None:
        return (x, x) if x else None
    return (Input(r.hw, "tokens_per_s", rng(r.decode_tokens_per_s), "model", r.source),
            Input(r.hw, "power_w", rng(r.power_w), "table", r.power_source),
            Input(r.hw, "price_usd", rng(r.price_usd), "table", r.price_source))


def _stack_label(stack: str | None) -> str:
    return f", {_STACK_NAMES.get(stack, stack)}" if stack else ""


def _paren(stack: str | None) -> str:
    return f" ({_STACK_NAMES.get(stack, stack)})" if stack else ""


def _evaluate(a: Assumptions, ratio: Ratio,
              ours: Mapping[str, Mapping[str, Row]]) -> RatioResult:
    devs = (ratio.device, ratio.baseline)
    stacks = [s for s in a.stacks if any(isinstance(a.devices[d].get("tokens_per_s"), dict)
                                         and s in a.devices[d]["tokens_per_s"] for d in devs)]
    variants: list[Variant] = []
    by_stack: list[tuple[str | None, Variant]] = []
    implied: dict[tuple[str, str], list[str]] = {}       # inputs the paper does not state
    swapped: dict[tuple[str, str], list[str]] = {}       # paper value vs our preset
    for stack in stacks or [None]:
        inputs = tuple(_paper_input(a, d, f, stack) or _preset_input(d, f)
                       for d in devs for f in _FIELDS)
        used = _used(inputs, ratio.metric)
        targets = [i for i in used if i.origin != "paper"] or [
            i for i in used if i.device == ratio.baseline and i.field == "tokens_per_s"]
        v = _variant(f"paper's inputs{_stack_label(stack)}", stack, ratio, inputs, targets)
        variants.append(v)
        by_stack.append((stack, v))
        for i, imp in v.implied:
            if i.origin != "paper":
                implied.setdefault((i.device, i.field), []).append(
                    f"{_fmt_value(i.field, imp)}{_paren(stack)}")
        preset = tuple(i if i.field == "tokens_per_s" else _preset_input(i.device, i.field)
                       for i in inputs)
        changed = [q for p, q in zip(used, _used(preset, ratio.metric), strict=True)
                   if p.value != q.value]
        if changed:
            pv = _variant(f"preset power/price{_stack_label(stack)}", stack, ratio, preset, changed)
            variants.append(pv)
            for q in changed:
                p = next(i for i in used if (i.device, i.field) == (q.device, q.field))
                swapped.setdefault((q.device, q.field), []).append(
                    f"{_fmt_ratio(v.ratio)} with {_fmt_value(p.field, p.value)} (paper), "
                    f"{_fmt_ratio(pv.ratio)} with {_fmt_value(q.field, q.value)} (preset: "
                    f"{q.source}){_paren(stack)}")
    hangs = []
    ratios = [v.ratio for _, v in by_stack if v.ratio]
    if len(ratios) > 1 and max(r[0] for r in ratios) - min(r[1] for r in ratios) > \
            ratio.tolerance:
        hangs.append("GPU software stack: " + ", ".join(
            f"{_fmt_ratio(v.ratio)} with {_STACK_NAMES.get(s, s)}" for s, v in by_stack))
    for (dev, field), texts in swapped.items():
        hangs.append(f"{_short(dev)} {field} source: " + "; ".join(texts))
    for (dev, field), texts in implied.items():
        pre = _preset_input(dev, field)
        hangs.append(f"{_short(dev)} {field} not stated by the paper: our preset "
                     f"{_fmt_value(field, pre.value)} ({pre.source}) used; implied by the "
                     f"paper's ratio: {', '.join(texts)}")
    for label, by_hw in ours.items():
        if ratio.device in by_hw and ratio.baseline in by_hw:
            inputs = _row_inputs(by_hw[ratio.device]) + _row_inputs(by_hw[ratio.baseline])
            variants.append(_variant(label, None, ratio, inputs, []))
    return RatioResult(ratio, tuple(variants), _verdict(ratio, variants, a.baseline_stack),
                       tuple(hangs))


def _fmt_ratio(r: Range | None) -> str:
    return "-" if r is None else f"{_fmt(r, 3)}x"


def _fmt_paper(r: Ratio) -> str:
    """The paper's ratio with the digits it prints (tolerance 0.05 -> one decimal)."""
    decimals = max(0, round(-math.log10(2 * r.tolerance))) if r.tolerance > 0 else 2
    return f"{r.paper:.{decimals}f}x"


def _verdict(ratio: Ratio, variants: list[Variant], baseline_stack: str | None) -> str:
    stated = [v for v in variants if not v.label.startswith("our") and v.within]
    only_paper = [v for v in stated if all(i.origin == "paper"
                                           for i in _used(v.inputs, ratio.metric))]
    if not stated:
        return "not reproduced from the stated inputs: see what it hangs on"
    chosen = only_paper or stated
    text = "reproduced from the paper's inputs alone" if only_paper else \
        "reproduced only with our preset " + ", ".join(sorted(
            {fmt_input(i) for v in stated for i in _used(v.inputs, ratio.metric)
             if i.origin != "paper"}))
    text += " (" + "; ".join(v.label for v in chosen) + ")"
    if baseline_stack and all(v.stack not in (None, baseline_stack) for v in chosen):
        text += (f", but not with {_STACK_NAMES.get(baseline_stack, baseline_stack)}, the GPU "
                 "stack the paper names")
    return text


def headline(a: Assumptions, rows: Iterable[Row] = (),
             stack_rows: Mapping[str, Iterable[Row]] | None = None) -> list[RatioResult]:
    """Each of the paper's ratios recomputed from its inputs, per GPU stack and input source.

    ``rows``: the device table (an "our models" variant per ratio); ``stack_rows``: per paper
    stack (``vllm``, ``hf``), GPU rows from the calibrated model run with that stack
    (``model_stacks`` in the file), one "our models" variant per stack instead.
    """
    by_hw = {r.hw: r for r in rows}
    ours = {"our models (device table)": by_hw}
    if stack_rows:
        ours = {f"our models{_stack_label(s)} ({a.model_stacks.get(s, s)})":
                {**by_hw, **{r.hw: r for r in rs}} for s, rs in stack_rows.items()}
    return [_evaluate(a, r, ours) for r in a.ratios]


def headline_cells(res: RatioResult) -> list[list[str]]:
    """Table rows (ratio, paper, inputs, computed, difference, within, implied) of one ratio."""
    out = []
    for k, v in enumerate(res.variants):
        p = res.ratio.paper
        diff = "-" if v.ratio is None else " to ".join(
            dict.fromkeys(f"{x / p - 1:+.1%}" for x in v.ratio))
        out.append([res.ratio.name if k == 0 else "", _fmt_paper(res.ratio) if k == 0 else "",
                    v.label,
                    "; ".join(fmt_input(i) for i in _used(v.inputs, res.ratio.metric)),
                    _fmt_ratio(v.ratio), diff, "yes" if v.within else "no",
                    "; ".join(f"{_short(i.device)} {_fmt_value(i.field, r)}"
                              for i, r in v.implied) or "-"])
    return out


HEADLINE_COLUMNS = ("ratio", "paper", "inputs", "values used (origin)", "computed",
                    "difference", "within rounding", "implied by the paper's ratio")


def headline_markdown(a: Assumptions, results: list[RatioResult]) -> str:
    lines = [f"## {a.title}", "", f"Inputs: `{a.path}` (every number with its source there). "
             "Each ratio is computed from those inputs for each GPU software stack; where the "
             "paper states no number our preset is used (origin `preset`) and the value the "
             "paper's ratio implies is shown. `within rounding`: the computed range meets the "
             "paper's ratio ± half a unit of its last digit.", "",
             "| " + " | ".join(HEADLINE_COLUMNS) + " |", "|" + "---|" * len(HEADLINE_COLUMNS)]
    for res in results:
        lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |"
                  for cells in headline_cells(res)]
    lines += ["", "### What each ratio hangs on", ""]
    for res in results:
        lines.append(f"- **{res.ratio.name}** (paper {_fmt_paper(res.ratio)}): {res.verdict}.")
        lines += [f"  - {h}" for h in res.hangs_on]
    return "\n".join(lines)

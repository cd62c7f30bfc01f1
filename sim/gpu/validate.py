"""Model vs measurement: per-op classes on held-out points, whole-model steps, other devices.

``validate_own()`` fits every measured device on its own data, as ``--hw gpu-h100`` and
``gpu-h200`` simulate, and reports the points its fit did not see: held-out per-op rows and
every whole-model step (never fitted). ``validate(fit_on)`` is the transfer check: it fits on
one device and reports every other device's per-op rows and steps too, with its datasheet
bandwidth, peak, L2 and SMs x clock swapped in (what presets never measured rely on).
Eager steps are reported apart: their time is the host CPU's, so each machine's host time
per torch call is fitted on its own LLaMA-2-7B q = 1 eager steps, and the other eager steps
and prefills of that machine are the held-out check.

Issue 19's classes (:mod:`sim.gpu.curves`), each only where its data exist and otherwise named
in ``notes`` as skipped: quantized GEMMs (int4, int8, fp8) and SDPA without a mask (flash
decoding, causal prefill) on their held-out rows; generate() per token on the models it was not
fitted on (eager step predicted + the per-token host cost fitted on the same machine's LLaMA-2-7B
generate(), as the eager host time per call is); graph-replayed decode steps
at batch 1..64 (never fitted: predicted from traced batch graphs).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sim.gpu.calibrate import (
    Baseline,
    baselines,
    default_calibration,
    fastest_eager,
    fit_host,
    is_host_fit,
    op_class,
    op_rows,
    predict_ops,
)
from sim.gpu.curves import (
    GENERATE_FIT_MODEL,
    generate_overheads,
    is_fit_extra,
    predict_nomask,
    predict_quant,
    quant_order,
)
from sim.gpu.model import chip
from sim.gpu.steps import predict_prefill, predict_step

__all__ = ["TARGET_MAX", "TARGET_MEDIAN", "ClassError", "validate", "validate_all",
           "validate_own"]

Tick = Callable[[], None] | None  # called once per whole-model point predicted (the slow part)

TARGET_MEDIAN, TARGET_MAX = 0.10, 0.25  # the bar on held-out points


@dataclass(frozen=True)
class ClassError:
    device: str
    group: str          # op class, or "step <model> (<mode>)"
    n: int
    median: float       # median |relative error|
    max: float
    worst: str          # the point with the largest error

    @property
    def ok(self) -> bool:
        return self.median <= TARGET_MEDIAN and self.max <= TARGET_MAX


def _summary(device: str, group: str, points: list[tuple[float, str]]) -> ClassError:
    errs = [abs(e) for e, _ in points]
    worst = max(points, key=lambda p: abs(p[0]))
    return ClassError(device, group, len(points), statistics.median(errs), max(errs),
                      f"{worst[1]}: {worst[0]:+.0%}")


def _spec(b: Baseline):
    from sim.spec import load_preset

    s = load_preset(b.preset)
    return s.mem_bytes_per_s, s.peak_ops_per_s("float16"), *chip(s)


def _label(r: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in r["shape"].items() if k not in ("heads", "head_dim"))


def validate(fit_on: str | None = None, steps: bool = True, only: str | None = None,
             others: bool = False, tick: Tick = None) -> dict[str, Any]:
    """Errors per class on held-out data, for every measured device (or ``only`` one, or
    with ``others`` every one but the fitted device: the transfer alone)."""
    c = default_calibration(fit_on, steps)
    out: list[ClassError] = []
    points: list[dict[str, Any]] = []
    notes: list[str] = []
    for b in baselines().values():
        if (only is not None and b.device != only) or (others and b.device == c.device):
            continue
        bw, peak, l2, sm_hz = _spec(b)
        rows = op_rows(b, held_out=True) if b.device == c.device else \
            op_rows(b, True) + op_rows(b, False)
        pred = predict_ops(rows, c, bw, peak, l2, sm_hz)
        groups: dict[str, list[tuple[float, str]]] = {}
        for r, p in zip(rows, pred, strict=True):
            e = p / r["median_s"] - 1
            groups.setdefault(op_class(r), []).append((e, f"{r['op']} {_label(r)}"))
            points.append({"device": b.device, "op": r["op"], "shape": r["shape"],
                           "measured_s": r["median_s"], "model_s": float(p)})
        out += [_summary(b.device, g, v) for g, v in sorted(groups.items())]
        out.append(_summary(b.device, "all per-op", [p for v in groups.values() for p in v]))
        out += _extra_classes(b, c, b.device == c.device, (bw, peak), points, notes)
        if steps:
            out += _steps(b, c, (bw, peak, l2, sm_hz), points, tick, notes)
    return {"fit_on": c.device, "calibration": c, "classes": out, "points": points,
            "notes": notes}


def _extra_classes(b: Baseline, c, own: bool, dev: tuple[float, float],
                   points: list[dict[str, Any]], notes: list[str]) -> list[ClassError]:
    """Quantized GEMMs and no-mask SDPA: held-out rows (every row on another device)."""
    out = []
    x = c.extras
    order = quant_order(list(b.quant))
    for kind, label, rows, predict in (
            *[(k, f"linear {k}", [r for r in b.quant if r["op"] == f"linear_{k}"
                                  and r.get("status") == "ok"], predict_quant)
              for k in ("int4", "int8", "fp8")],
            *[(p, f"attention {p} (no mask)", [r for r in b.nomask if r["path"] == p],
               predict_nomask) for p in ("flash_decode", "causal")]):
        curve = x.curve(kind) if x is not None else None
        if not rows:
            notes.append(f"{b.device}: {label} not measured; class skipped")
            continue
        if curve is None:
            notes.append(f"{b.device}: {label} measured but not fitted on {c.device}; skipped")
            continue
        held = [r for r in rows if not (own and is_fit_extra(r, order))]
        if not held:
            continue
        pred = predict(held, curve, *dev)
        for r, p in zip(held, pred, strict=True):
            points.append({"device": b.device, "op": r["op"], "shape": r["shape"],
                           "measured_s": r["median_s"], "model_s": float(p)})
        out.append(_summary(b.device, label, [(p / r["median_s"] - 1, _label(r))
                                              for r, p in zip(held, pred, strict=True)]))
    return out


def validate_own(steps: bool = True, tick: Tick = None) -> dict[str, Any]:
    """Every measured device fitted on its own data (as ``--hw gpu-h100``/``gpu-h200``
    simulate): its held-out per-op rows and, with ``steps``, its whole-model steps."""
    out: list[ClassError] = []
    points: list[dict[str, Any]] = []
    notes: list[str] = []
    cals = {}
    for device in baselines():
        res = validate(device, steps, only=device, tick=tick)
        out += res["classes"]
        points += res["points"]
        notes += res["notes"]
        cals[device] = res["calibration"]
    return {"fit_on": "own", "calibrations": cals, "classes": out, "points": points,
            "notes": notes}


def validate_all(fit_on: str | None = None, steps: bool = True,
                 progress: Callable[[int, int], None] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`validate_own` and the transfer check ``validate(fit_on, others=True)``, with
    ``progress(done, total)`` over the whole-model points of both (each traces a graph)."""
    fitted = default_calibration(fit_on, steps).device
    total = sum(len(_step_rows(b)) * (1 + (b.device != fitted))
                for b in baselines().values()) if steps else 0
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    own = validate_own(steps, tick)
    return own, validate(fit_on, steps, others=True, tick=tick)


def _step_rows(b: Baseline) -> list[tuple[str, dict[str, Any]]]:
    """The whole-model points of ``b`` that are held out: ("step", row) or ("prefill", row)."""
    eager_steps, eager_prefill = fastest_eager(b)
    # eager time is host-bound: each machine's host time per torch call is fitted on its own
    # LLaMA-2-7B q = 1 eager steps, which are therefore not held out
    rows = [r for r in b.steps if r["mode"] != "eager"] + eager_steps
    return [("step", r) for r in rows if not is_host_fit(r)] + \
        [("prefill", r) for r in eager_prefill] + [("batch", r) for r in b.batch] + \
        [("generate", r) for r in b.generate if not is_fit_extra(r)]


def _steps(b: Baseline, c, dev: tuple[float, ...], points: list[dict[str, Any]],
           tick: Tick = None, notes: list[str] | None = None) -> list[ClassError]:
    groups: dict[str, list[tuple[float, str]]] = {}
    host = fit_host(b)
    if host is not None:
        c = replace(c, host_s_per_call=host)
    # generate()'s host cost is the machine's, like the eager host time: each its own fit
    gen = generate_overheads([r for r in b.generate if is_fit_extra(r)]).get(
        GENERATE_FIT_MODEL)
    if notes is not None:
        if not b.batch:
            notes.append(f"{b.device}: decode steps at batch > 1 not measured; class skipped")
        if gen is None or host is None:
            notes.append(f"{b.device}: generate() " + ("not measured" if not b.generate else
                         f"without {GENERATE_FIT_MODEL} to fit on, or no eager host fit")
                         + "; class skipped")
    for what, r in _step_rows(b):
        if what == "generate" and (gen is None or host is None):
            if tick is not None:
                tick()
            continue
        if what == "generate":
            s = r["eager_step"]
            p = predict_step({"model": r["model"], "mode": "eager",
                              "shape": {"q": 1, "context": s["context"]}}, c, *dev) \
                + gen
            groups.setdefault("generate per token", []).append(
                (p / r["per_token_min_s"] - 1, f"{r['model']} c={s['context']}"))
            points.append({"device": b.device, "op": "generate", "model": r["model"],
                           "shape": r["shape"], "measured_s": r["per_token_min_s"],
                           "model_s": p})
        elif what == "batch":
            p = predict_step(r, c, *dev)
            groups.setdefault("step graph batch", []).append(
                (p / r["median_s"] - 1, f"{r['model']} b={r['shape']['batch']} "
                 f"c={r['shape']['context']}"))
            points.append({"device": b.device, "op": "step graph batch", "model": r["model"],
                           "shape": r["shape"], "measured_s": r["median_s"], "model_s": p})
        elif what == "prefill":
            p = predict_prefill(r, c, *dev)
            groups.setdefault("prefill eager", []).append(
                (p / r["min_s"] - 1, f"{r['model']} prefill {r['shape']['tokens']}"))
            points.append({"device": b.device, "op": "prefill eager", "model": r["model"],
                           "shape": r["shape"], "measured_s": r["min_s"], "model_s": p})
        else:
            p = predict_step(r, c, *dev)
            mode = "graph" if r["mode"] == "cuda_graph" else "eager"
            # eager steps are host-bound: their fastest repeat over every run (fastest_eager)
            measured = r["median_s"] if mode == "graph" else r["min_s"]
            groups.setdefault(f"step {mode}", []).append(
                (p / measured - 1, f"{r['model']} q={r['shape']['q']} c={r['shape']['context']}"))
            points.append({"device": b.device, "op": f"step {mode}", "model": r["model"],
                           "shape": r["shape"], "measured_s": measured, "model_s": p})
        if tick is not None:
            tick()
    by_model: dict[str, list[tuple[float, str]]] = {}
    for e, label in groups.get("step graph", []):  # batch 1; batch > 1 is its own class
        by_model.setdefault(label.split()[0], []).append((e, label))
    out = [_summary(b.device, f"step graph {m}", v) for m, v in by_model.items()]
    return out + [_summary(b.device, g, v) for g, v in groups.items()]

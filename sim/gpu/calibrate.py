"""Fit the GPU kernel model on measured per-op data, and split what is fitted from what is held out.

The data are the JSON files of ``llmcosim gpu-baseline measure`` kept in ``reports/baselines/``
(per-op timings replayed from CUDA graphs, whole-model steps, power). Which points are fitted
is fixed here, before looking at any error, and never per result:

- linear: GEMM shapes sorted by weight size, every other one fitted (the rest held out);
- attention: contexts 128/1024/4096 and prefill 128/2048 fitted; 512/2048 and prefill 512 held
  out (odd key lengths, q = 3 and 5, by the same rule: their own class);
- small ops (norms, add, SiLU x up): rows 1, 128 and 2048 at LLaMA-2-7B's widths (4096, 11008)
  fitted; rows 16 and 512, and TinyLlama's and LLaMA-2-13B's widths, held out;
- the probe files (``*-probe-*.json``: small ops over rows and widths, GEMMs and SDPA at
  q = 1..16) are held out, all but the ends of the norms' width sweeps (896 and 8,192 at 1
  and 512 rows; the fused LayerNorm's 128 and 16,384 at one row), which fit what depends on
  the width (the fused norm's per-load time, the legacy kernels' element rate against HBM
  bytes); a probe row of a shape the per-op file has already is left out (the per-op file's
  row stands for it);
- graph node cost: chains of 70 and 1,400 mixed kernels fitted; 7 and 700 held out;
- eager host time per torch call: LLaMA-2-7B eager decode steps at q = 1 fitted (fastest repeat),
  on each machine for its own eager steps (the time is its CPU's); every other eager step and
  the eager prefills held out, compared by their fastest repeat too;
- whole-model steps (graph replayed): never fitted — predicted from the IR graph's kernels.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from sim.gpu.curves import fit_extras
from sim.gpu.fit import fit_log_error
from sim.gpu.model import (
    HF_RMSNORM_OPS,
    GPUCalibration,
    Kernels,
    chip,
    norm_chain,
    norm_values_per_thread,
    odd_keys,
    small_columns,
)

__all__ = ["PRESET_OF_DEVICE", "Baseline", "baselines", "baselines_dir", "calibrate",
           "default_calibration", "fastest_eager", "fit_host", "is_host_fit", "median_power",
           "op_class", "op_rows", "predict_ops"]

# Measured device name (torch.cuda.get_device_properties) -> preset with its datasheet.
PRESET_OF_DEVICE = {"NVIDIA H200": "gpu-h200", "NVIDIA H100 80GB HBM3": "gpu-h100"}
_FIT_CONTEXTS = {128, 1024, 4096}
_FIT_PREFILL = {128, 2048}
_FIT_SMALL_ROWS = {1, 128, 2048}
_FIT_WIDTHS = {4096, 11008}      # LLaMA-2-7B's hidden and MLP sizes; other widths held out
_SMALL_OPS = ("add", "silu_mul", "rmsnorm", "layernorm", "rmsnorm_hf", "graph_chain")


def _small_kernels(r: dict[str, Any], es: int = 2) -> dict[str, float]:
    """A small-op record as ``Kernels.small_*`` columns, counted as
    :func:`sim.gpu.model.kernels` counts the traced graph's nodes: a norm module is one fused
    norm kernel (``layernorm``; ``rmsnorm``, F.rms_norm, in files before 2026-11-27 05:20 UTC)
    or HF's eight-kernel RMSNorm (``rmsnorm_hf``, :func:`sim.gpu.model.norm_chain`)."""
    rows, hidden = r["shape"]["rows"], r["shape"]["hidden"]
    n = rows * hidden
    if r["op"] == "add":                       # x + x: read x, write the sum
        return {"elem": 1, "bytes": 2 * n * es}
    if r["op"] == "silu_mul":  # silu(x) (read, write), then * x (2 reads, write; SiLU's from L2)
        return {"elem": 2, "bytes": 5 * n * es, "l2_bytes": n * es, "l2_foot": 2 * n * es}
    if r["op"] in ("rmsnorm", "layernorm"):    # one fused kernel; LayerNorm: weight and bias
        moved = (2 * n + (2 * hidden if r["op"] == "layernorm" else 0)) * es
        return {"norm": 1, "norm_bytes": moved, "norm_values": norm_values_per_thread(hidden)}
    if r["op"] == "rmsnorm_hf":
        return norm_chain(rows, hidden, HF_RMSNORM_OPS, es, hidden * es)
    return {"elem": 1}                         # graph_chain: one small kernel per link


@dataclass(frozen=True)
class Baseline:
    """Everything measured on one device (several files merged)."""

    device: str
    files: tuple[str, ...]
    date: str
    ops: tuple[dict[str, Any], ...]          # per-op, CUDA-graph replayed (newest -ops file)
    steps: tuple[dict[str, Any], ...]        # whole-model decode/verify steps
    prefill: tuple[dict[str, Any], ...]      # whole-model eager prefill
    power: dict[str, Any]                    # median over the runs that measured power
    info: dict[str, Any]
    probe: tuple[dict[str, Any], ...] = ()   # probe rows, shapes the per-op file lacks
    # issue 19 (kernels.measure_extra): per-op rows from the newest file that has each section,
    # generate() and batched steps from every file
    quant: tuple[dict[str, Any], ...] = ()
    nomask: tuple[dict[str, Any], ...] = ()
    generate: tuple[dict[str, Any], ...] = ()
    batch: tuple[dict[str, Any], ...] = ()

    @property
    def preset(self) -> str | None:
        return PRESET_OF_DEVICE.get(self.device)

    @property
    def source(self) -> str:
        """Device, date and how many measurement files (``files`` names them)."""
        n = len(self.files)
        return f"{self.device}, measured {self.date} ({n} measurement file{'s' * (n != 1)})"


def median_power(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One device's power runs (each file's ``power`` section) as one: every phase's numbers
    the median over the runs that measured that phase, and ``runs`` their count. One 4 s NVML
    window per phase and run is a noisy estimate (LLaMA-2-7B decode on the H200: 344, 381
    and 388 W in three leases), so no single file stands for the device."""
    phases: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for phase, v in run.items():
            if isinstance(v, dict):
                for k, x in v.items():
                    if isinstance(x, (int, float)):
                        phases.setdefault(phase, {}).setdefault(k, []).append(float(x))
    if not phases:
        return {}
    return {"available": True, "runs": len(runs),
            **{phase: {k: statistics.median(xs) for k, xs in v.items()}
               for phase, v in phases.items()}}


def baselines_dir() -> Path:
    env = os.environ.get("LLMCOSIM_BASELINES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "reports" / "baselines"


@cache
def baselines(directory: str | None = None) -> dict[str, Baseline]:
    """Measured devices by name; per-op timings come from the CUDA-graph files when present."""
    root = Path(directory) if directory else baselines_dir()
    merged: dict[str, dict[str, Any]] = {}
    probes: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path in sorted(root.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("dry_run"):
            continue
        if str(data.get("schema", "")).startswith(_PROBE_SCHEMA):
            probes.setdefault(data["device"]["name"], []).append((path.name, data))
            continue
        if not str(data.get("schema", "")).startswith("llmcosim.gpu-baseline/"):
            continue
        name = data["device"]["name"]
        m = merged.setdefault(name, {"files": [], "ops": [], "steps": [], "prefill": [],
                                     "info": data["device"]})
        m["files"].append(path.name)
        date = data["device"]["date"]
        # a run of other sections only (--only generate, ...) has no ops: it keeps the older
        if data["ops"] and "graph" in str(data.get("method", {}).get("ops", "")) \
                and date >= m.get("ops_date", ""):
            m["ops"], m["ops_date"] = data["ops"], date  # newest run
        for key in ("quant_ops", "attention_nomask"):
            if data.get(key) and date >= m.get(f"{key}_date", ""):
                m[key], m[f"{key}_date"] = data[key], date
        m["generate"] = m.get("generate", []) + data.get("generate", [])
        m["batch"] = m.get("batch", []) + [r for r in data.get("batch_steps", [])
                                           if "median_s" in r]
        m["steps"] += data.get("decode_steps", [])
        m["prefill"] += data.get("model_steps", [])
        if data.get("power", {}).get("available"):
            m.setdefault("power_runs", []).append(data["power"])
    for name, found in probes.items():
        if name in merged:
            merged[name]["files"] += [f for f, _ in found]
            merged[name]["probe"] = _probe_rows(merged[name]["ops"], found)
    return {name: Baseline(name, tuple(m["files"]), m["info"]["date"][:10], tuple(m["ops"]),
                           tuple(m["steps"]), tuple(m["prefill"]),
                           median_power(m.get("power_runs", [])), m["info"],
                           tuple(m.get("probe", ())), tuple(m.get("quant_ops", ())),
                           tuple(m.get("attention_nomask", ())), tuple(m.get("generate", ())),
                           tuple(m.get("batch", ())))
            for name, m in merged.items() if m["ops"]}


_PROBE_SCHEMA = "llmcosim.small-op-probe/"


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["op"], tuple(sorted(r["shape"].items())))


def _probe_rows(ops: list[dict[str, Any]], found: list[tuple[str, dict[str, Any]]]
                ) -> list[dict[str, Any]]:
    """Probe rows (``kernels.probe_small``) of shapes the per-op file lacks, each shape once,
    from the newest probe that has it; each row names its file (``probe``)."""
    seen = {_key(r) for r in ops}
    out = []
    for name, data in sorted(found, key=lambda fd: fd[1]["device"]["date"], reverse=True):
        for r in data["ops"]:
            if _key(r) not in seen:
                seen.add(_key(r))
                out.append({**r, "probe": name})
    return out


# the ends of the probes' width sweeps (small probe: 896..8,192; l2 probe: 128..16,384)
_FIT_PROBE_WIDTHS = {128, 896, 8192, 16384}


def _is_fit(r: dict[str, Any], linear_order: dict[tuple[int, int], int]) -> bool:
    s = r["shape"]
    if "probe" in r:
        return r["op"] in ("layernorm", "rmsnorm_hf") and s["hidden"] in _FIT_PROBE_WIDTHS
    if r["op"] == "linear":
        return linear_order[(s["k"], s["n"])] % 2 == 0
    if r["op"] == "attention":
        return s["context"] in _FIT_CONTEXTS if s["context"] else s["q"] in _FIT_PREFILL
    if r["op"] == "graph_chain":
        return s["kernels"] in (70, 1400)
    return s["rows"] in _FIT_SMALL_ROWS and s["hidden"] in _FIT_WIDTHS


_TENSORS = {"add": 2, "silu_mul": 3, "rmsnorm": 2}  # distinct activation tensors an op touches


def _l2_resident(r: dict[str, Any], l2_bytes: int | None) -> bool:
    """Elementwise rows measured before 2026-11-27 05:20 UTC did not rotate their inputs: when every
    tensor the op touches fits in L2 together, repeated calls run from L2, which the model
    (HBM only) does not describe. Past 8 MB such rows are neither fitted nor validated. Newer
    files rotate the inputs through ``input_copies`` copies, which counts here."""
    if r["op"] not in _TENSORS or not l2_bytes:
        return False
    working_set = (_TENSORS[r["op"]] * r["shape"]["rows"] * r["shape"]["hidden"] * 2
                   * r.get("input_copies", 1))
    return 8e6 < working_set <= l2_bytes


def op_rows(b: Baseline, held_out: bool) -> list[dict[str, Any]]:
    """The per-op records fitted (``held_out=False``) or held out."""
    shapes = sorted({(r["shape"]["k"], r["shape"]["n"]) for r in b.ops if r["op"] == "linear"},
                    key=lambda kn: (kn[0] * kn[1], kn))
    order = {kn: i for i, kn in enumerate(shapes)}
    l2 = b.info.get("l2_bytes")
    return [r for r in b.ops + b.probe
            if _is_fit(r, order) != held_out and not _l2_resident(r, l2)]


def _op_kernels(rows: list[dict[str, Any]]) -> Kernels:
    """Measured ops as the model's kernel arrays: one kernel (or small op) per row, rows
    grouped by class in the order linear, attention, other (see :func:`predict_ops`)."""
    es = 2.0
    lin = [r["shape"] for r in rows if r["op"] == "linear"]
    att = [r["shape"] for r in rows if r["op"] == "attention"]
    small = [_small_kernels(r) for r in rows if r["op"] in _SMALL_OPS]
    a = np.asarray
    return Kernels(
        a([[s["m"], s["k"], s["n"]] for s in lin], dtype=np.float64).reshape(-1, 3),
        np.full(len(lin), es),
        a([s["q"] for s in att], dtype=np.float64), a([s["heads"] for s in att], dtype=float),
        a([2 * s["heads"] * (s["context"] + 2 * s["q"]) * s["head_dim"] * es  # K, V, Q, out
           for s in att], dtype=np.float64),
        a([4.0 * s["heads"] * s["q"] * (s["context"] + s["q"]) * s["head_dim"] for s in att],
          dtype=np.float64),
        a([float(odd_keys(s["q"], s["context"] + s["q"])) for s in att], dtype=np.float64),
        *small_columns(small))


def predict_ops(rows: list[dict[str, Any]], c: GPUCalibration, bw: float,
                peak: float, l2: float = 0.0, sm_hz: float = 0.0) -> np.ndarray:
    """Model seconds of measured op records, in the order of ``rows``."""
    from sim.gpu.model import kernel_times

    t = kernel_times(_op_kernels(rows), c, bw, peak, l2, sm_hz)
    queues = {"linear": iter(t["linear"]), "attention": iter(t["attention"])}
    other = iter(t["other"])
    # a chain link also pays the kernel switch and its share of the graph's launch
    return np.array([float(next(queues.get(r["op"], other)))
                     + (c.graph_node_s + c.graph_launch_s / r["shape"]["kernels"]
                        if r["op"] == "graph_chain" else 0.0) for r in rows])


_GROUPS = {  # parameter names fitted on each op class, with start values
    "linear": (("linear_s", 4e-6), ("linear_bw_eff", 0.8), ("linear_flop_eff", 0.7)),
    "attention_decode": (("attn_decode_s", 8e-6), ("attn_decode_bw_eff", 0.6)),
    "attention_mask": (("attn_mask_s", 8e-6), ("attn_mask_bw_eff", 0.6),
                       ("attn_mask_flop_eff", 0.5), ("attn_mask_cta_bytes_per_s", 2e10)),
    "attention_odd_keys": (("attn_mask_odd_factor", 1.0),),
    "elementwise": (("kernel_s", 1.5e-6), ("elem_bw_eff", 0.7)),
    "norm": (("norm_s", 3e-6), ("norm_bw_eff", 0.6), ("norm_value_s", 5e-7)),
    "reduction": (("reduction_s", 4e-6), ("reduction_bw_eff", 0.5),
                  ("reduction_value_s", 5e-8), ("legacy_elems_per_clk", 1.5)),
    "graph_node": (("graph_node_s", 0.5e-6), ("graph_launch_s", 4e-6)),
}


def op_class(r: dict[str, Any]) -> str:
    if r["op"] == "graph_chain":
        return "graph_node"
    if r["op"] == "attention":
        s = r["shape"]
        if s["q"] == 1:
            return "attention_decode"
        return "attention_odd_keys" if odd_keys(s["q"], s["context"] + s["q"]) \
            else "attention_mask"
    if r["op"] in ("rmsnorm", "layernorm"):
        return "norm"          # one fused kernel
    if r["op"] == "rmsnorm_hf":
        return "reduction"     # its one reduction kernel is what the class fits
    return "elementwise" if r["op"] != "linear" else "linear"


def calibrate(b: Baseline, bw: float, peak: float, *, host: bool = False,
              l2: float = 0.0, sm_hz: float = 0.0) -> GPUCalibration:
    """Fit every op class's parameters on ``b``'s fitted rows (see the module docstring)."""
    start = {name: v for group in _GROUPS.values() for name, v in group}
    params = dict(start)
    rows = op_rows(b, held_out=False)
    for group in ("linear", "attention_decode", "attention_mask", "attention_odd_keys",
                  "elementwise", "norm", "reduction", "graph_node"):
        sel = [r for r in rows if op_class(r) == group]
        if not sel:   # not measured (files before 2026-11-27 06:15 UTC have no odd keys)
            continue
        names = [n for n, _ in _GROUPS[group]]
        measured = np.array([r["median_s"] for r in sel])

        def model(p: np.ndarray, names=names, sel=sel) -> np.ndarray:
            c = _calibration(b, {**params, **dict(zip(names, p, strict=True))})
            return predict_ops(sel, c, bw, peak, l2, sm_hz)

        # efficiencies are fractions of a datasheet peak: at most 1
        fitted = fit_log_error(model, measured, [params[n] for n in names],
                               upper=[1.0 if n.endswith("_eff") else None for n in names])
        params.update(zip(names, (float(x) for x in fitted), strict=True))
    return _calibration(b, {**params, "host_s_per_call": fit_host(b) if host else None})


def _calibration(b: Baseline, params: dict[str, float]) -> GPUCalibration:
    power = b.power or {}
    return GPUCalibration(
        device=b.device, source=b.source, **params,
        decode_power_w=power.get("decode_q1_c512_graph", {}).get("avg_power_w"),
        prefill_power_w=power.get("prefill_512", {}).get("avg_power_w"),
        power_runs=power.get("runs", 0))


def fastest_eager(b: Baseline) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``b``'s eager steps and eager prefills with each point once: of the runs that measured
    it (several files), the one with the fastest repeat. An eager step is host-bound and host
    jitter only ever adds time; it comes in bursts that can cover a whole point's repeats (the
    same TinyLlama step took 16.3 ms at best in one lease of the H200 machine and 27.0 ms in
    another), so the fastest repeat over every run is the estimate of the undisturbed host."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in b.steps:
        if r["mode"] == "eager":
            k = ("step", r["model"], r["shape"]["q"], r["shape"]["context"])
            best[k] = min(best.get(k, r), r, key=lambda x: x["min_s"])
    for r in b.prefill:
        k = ("prefill", r["model"], r["shape"]["tokens"], bool(r.get("use_cache")))
        best[k] = min(best.get(k, r), r, key=lambda x: x["min_s"])
    return ([r for k, r in best.items() if k[0] == "step"],
            [r for k, r in best.items() if k[0] == "prefill"])


def is_host_fit(r: dict[str, Any]) -> bool:
    """Whether a whole-model step record is one the eager host time is fitted on."""
    return r["mode"] == "eager" and r["shape"]["q"] == 1 and r["model"] == "llama2-7b"


def fit_host(b: Baseline) -> float | None:
    """Host seconds per torch call on ``b``'s machine, from the main model's eager q = 1
    steps: each eager step is host-bound (its graph-replayed twin is 3-6x faster), so time /
    torch calls (``models.host_calls``: every call crosses into C++ and the dispatcher, kernel
    or not). The fastest of the repeats is used: host jitter (scheduler, Python's GC) only
    ever adds time (medians spread 26-43 ms for the same step on the H200 machine). The call
    count does not depend on the context, so one graph gives it. The time is the measuring
    machine's CPU and Python, not its GPU's: each machine has its own."""
    from sim.gpu.steps import step_host_calls

    rows = [r for r in fastest_eager(b)[0] if is_host_fit(r)]
    if not rows:
        return None
    calls = step_host_calls({"model": "llama2-7b", "shape": {"q": 1, "context": 128}})
    return statistics.median(r["min_s"] for r in rows) / calls


@cache
def default_calibration(device: str | None = None, host: bool = False) -> GPUCalibration:
    """The calibration fitted on ``device``'s data (default: the H200, else the newest);
    ``host`` also fits the eager host time per torch call (needs the traced LLaMA-2-7B graph)."""
    from sim.spec import load_preset

    data = baselines()
    if not data:
        raise ValueError(f"no GPU baseline measurements in {baselines_dir()}")
    if device is None:
        device = max(data.values(), key=lambda b: (b.device == "NVIDIA H200", b.date)).device
    if device not in data:
        raise ValueError(f"no measurements of {device!r}; measured: {', '.join(data)}")
    b = data[device]
    spec = load_preset(b.preset) if b.preset else None
    if spec is None:
        raise ValueError(f"no preset for measured device {device!r}; add it to "
                         "sim.gpu.calibrate.PRESET_OF_DEVICE")
    l2, sm_hz = chip(spec)
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    c = calibrate(b, bw, peak, host=host, l2=l2, sm_hz=sm_hz)
    extras = fit_extras(b.device, list(b.quant), list(b.nomask), list(b.generate), bw, peak,
                        spec.peak_ops_per_s("int8"))
    return replace(_borrow_odd_keys(c, b, data), extras=extras)


def _borrow_odd_keys(c: GPUCalibration, b: Baseline, data: dict[str, Baseline]
                     ) -> GPUCalibration:
    """The odd-key SDPA factor is PyTorch's path choice, not the GPU's (at q = 3 over 2,048
    keys: 88.9 us on the H200, 88.5 us on the H100, against 56 us for even q; the
    ``verify-probe`` files; fitted on each GPU's own rows: 1.83 and 1.86): a device whose
    fitted rows have no odd-key point takes it from one that has, and says so in its
    source."""
    def fits_odd(x: Baseline) -> bool:
        return any(op_class(r) == "attention_odd_keys" for r in op_rows(x, held_out=False))

    if fits_odd(b):
        return c
    for other in data.values():
        if other.device != b.device and fits_odd(other):
            f = default_calibration(other.device).attn_mask_odd_factor
            return replace(c, attn_mask_odd_factor=f,
                           source=f"{c.source}; odd-key SDPA factor from {other.device}")
    return c

"""Issue 19's measured curves: quantized GEMMs, SDPA without a mask, generate()'s host cost.

Fitted on the sections ``kernels.measure_extra`` writes (``quant_ops``, ``attention_nomask``,
``generate``). A section a device's files lack leaves its curve ``None``; the model then keeps
its earlier behaviour and :func:`curve_notes` says which curve is not measured. Nothing here
has a default value standing in for a measurement.

Curves, with the same shape as the dense ones in :mod:`sim.gpu.model` (``s`` fixed time,
``eta`` fractions of the GPU's datasheet bandwidth and dense fp16 peak; transferred to other
presets through those two numbers):

- quantized GEMM ``(m, k, n)``: ``s + max(bytes / (eta_bw BW), 2 m' k n / (eta_flop P16))``,
  bytes = weight (k n x 0.5 or 1) + input and output activations, ``m'`` the rows the kernel is
  called with: at least the fewest rows it ran with on the measured GPU (``min_rows``; a shape
  it refused is an ``unsupported`` row, and a caller pads up to what it accepts; older
  ``torch._int_mm`` builds refuse 16 rows or fewer on CUDA). ``eta_flop`` may exceed 1 for the
  8-bit kernels (int8/fp8 tensor peaks are twice fp16 on A100/H100/H200 datasheets) and is
  bounded by that ratio;
- SDPA without a mask: one query token (flash decoding) ``s + bytes / (eta_bw BW)``; causal
  prefill ``s + max(bytes / (eta_bw BW), flops / 2 / (eta_flop P16))`` (flash skips the upper
  triangle: half the score FLOPs the IR counts);
- generate(): per token, the time beyond its eager forward step (logits processors, stopping
  criteria, cache and position bookkeeping, argmax, host syncs), measured as the difference
  on the same machine and model; fitted on LLaMA-2-7B, held out on the other models.

Which rows fit is fixed here before any error is seen: quantized shapes sorted by weight size,
every other one fitted; no-mask SDPA at contexts (decode) and lengths (prefill) 128, 1024 and
4096 with all heads holding K/V (MHA) fitted, the rest (256, 512, 2048, GQA) held out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.gpu.fit import fit_log_error

__all__ = ["FIT_NOMASK", "GENERATE_FIT_MODEL", "QUANT_KERNELS", "Extras", "GenerateCost",
           "KernelCurve", "curve_notes", "fit_extras", "generate_overheads", "is_fit_extra",
           "nomask_time", "predict_nomask", "predict_quant", "quant_order", "quant_time"]

QUANT_KERNELS = {"int4": "torch._weight_int4pack_mm", "int8": "torch._int_mm",
                 "fp8": "torch._scaled_mm"}
_WEIGHT = {"int4": 0.5, "int8": 1.0, "fp8": 1.0}           # bytes per weight element
_ACT = {"int4": (2, 2), "int8": (1, 4), "fp8": (1, 2)}      # input, output bytes per element
FIT_NOMASK = {128, 1024, 4096}
GENERATE_FIT_MODEL = "llama2-7b"
_NOMASK_KERNELS = {"flash_decode": "SDPA without a mask at one query token (flash decoding)",
                   "causal": "SDPA with is_causal (flash prefill)"}


@dataclass(frozen=True)
class KernelCurve:
    kind: str           # int4, int8, fp8, flash_decode or causal
    kernel: str         # what ran
    fixed_s: float
    bw_eff: float       # fraction of HBM bandwidth
    flop_eff: float     # fraction of the dense fp16 peak (8-bit kernels: up to 2)
    n_fit: int          # rows fitted
    min_rows: int = 1   # fewest rows (m) the kernel ran with on the measured GPU


@dataclass(frozen=True)
class GenerateCost:
    per_token_s: float      # generate() per token beyond its eager forward step
    power_w: float | None   # board power while generate() runs (None: not measured)
    model: str              # fitted on
    n_fit: int


@dataclass(frozen=True)
class Extras:
    """The issue-19 curves of one device; ``w8`` picks the 8-bit kernel (int8 or fp8)."""

    device: str
    curves: tuple[KernelCurve, ...] = ()
    generate: GenerateCost | None = None
    w8: str = "int8"

    def curve(self, kind: str) -> KernelCurve | None:
        return next((c for c in self.curves if c.kind == kind), None)


def quant_time(c: KernelCurve, m: Any, k: Any, n: Any, bw: float, peak: float) -> np.ndarray:
    """Seconds of the quantized GEMM ``c`` at ``(m, k, n)`` (arrays broadcast)."""
    m = np.maximum(np.asarray(m, dtype=np.float64), c.min_rows)   # padded up to what it takes
    a_in, a_out = _ACT[c.kind]
    nbytes = k * n * _WEIGHT[c.kind] + m * k * a_in + m * n * a_out
    return c.fixed_s + np.maximum(nbytes / (c.bw_eff * bw), 2 * m * k * n / (c.flop_eff * peak))


def nomask_time(c: KernelCurve, nbytes: Any, flops: Any, bw: float, peak: float) -> np.ndarray:
    """Seconds of unmasked SDPA moving ``nbytes`` (K/V, Q, output) and doing ``flops`` (the
    full score matrix's; causal counts half)."""
    f = np.asarray(flops, dtype=np.float64) / (2 if c.kind == "causal" else 1)
    return c.fixed_s + np.maximum(np.asarray(nbytes) / (c.bw_eff * bw), f / (c.flop_eff * peak))


def quant_order(rows: list[dict[str, Any]]) -> dict[tuple[int, int], int]:
    shapes = sorted({(r["shape"]["k"], r["shape"]["n"]) for r in rows},
                    key=lambda kn: (kn[0] * kn[1], kn))
    return {kn: i for i, kn in enumerate(shapes)}


def is_fit_extra(r: dict[str, Any], order: dict[tuple[int, int], int] | None = None) -> bool:
    """Whether an issue-19 per-op row is fitted (else held out); see the module doc."""
    s = r["shape"]
    if r["op"].startswith("linear_"):
        return (order or {}).get((s["k"], s["n"]), 1) % 2 == 0
    if r["op"] == "attention_nomask":
        mha = s["kv_heads"] == s["heads"]
        size = s["context"] if r["path"] == "flash_decode" else s["q"]
        return mha and size in FIT_NOMASK
    return r.get("model") == GENERATE_FIT_MODEL


def _nomask_bytes(r: dict[str, Any]) -> float:
    s = r["shape"]
    return r["kv_bytes"] + 2 * 2 * s["heads"] * s["q"] * s["head_dim"]   # + Q and out, fp16


def predict_quant(rows: list[dict[str, Any]], c: KernelCurve, bw: float, peak: float
                  ) -> np.ndarray:
    s = [r["shape"] for r in rows]
    return quant_time(c, np.array([x["m"] for x in s], dtype=float),
                      np.array([x["k"] for x in s], dtype=float),
                      np.array([x["n"] for x in s], dtype=float), bw, peak)


def predict_nomask(rows: list[dict[str, Any]], c: KernelCurve, bw: float, peak: float
                   ) -> np.ndarray:
    # the records' flops already count causal's half: undo it for nomask_time's convention
    full = [r["flops"] * (2 if r["path"] == "causal" else 1) for r in rows]
    return nomask_time(c, np.array([_nomask_bytes(r) for r in rows]), np.array(full, float),
                       bw, peak)


def _fit(kind: str, kernel: str, rows: list[dict[str, Any]], predict, upper_flop: float,
         bw: float, peak: float, flop: bool = True, min_rows: int = 1) -> KernelCurve:
    measured = np.array([r["median_s"] for r in rows])

    def curve(p: np.ndarray) -> KernelCurve:
        return KernelCurve(kind, kernel, float(p[0]), float(p[1]),
                           float(p[2]) if flop else 1.0, len(rows), min_rows)

    x0, upper = [4e-6, 0.6, 0.5 * upper_flop], [None, 1.0, upper_flop]
    p = fit_log_error(lambda p: predict(rows, curve(p), bw, peak), measured,
                      x0[:2 + flop], upper=upper[:2 + flop])
    return curve(p)


def generate_overheads(records: list[dict[str, Any]]) -> dict[str, float]:
    """Per model, generate()'s per-token time beyond its eager forward step: the fastest
    repeats of each (host jitter only adds time), never below zero."""
    out: dict[str, list[float]] = {}
    for r in records:
        out.setdefault(r["model"], []).append(
            max(0.0, r["per_token_min_s"] - r["eager_step"]["min_s"]))
    return {m: min(v) for m, v in out.items()}


def fit_extras(device: str, quant: list[dict[str, Any]], nomask: list[dict[str, Any]],
               generate: list[dict[str, Any]], bw: float, peak: float,
               int8_peak: float) -> Extras:
    """Every issue-19 curve measured on ``device``, fitted on its fit rows."""
    curves = []
    order = quant_order(quant)
    ratio = max(int8_peak / peak, 1.0) if peak else 1.0
    for kind, kernel in QUANT_KERNELS.items():
        ran = [r for r in quant if r["op"] == f"linear_{kind}" and r.get("status") == "ok"]
        rows = [r for r in ran if is_fit_extra(r, order)]
        if rows:
            curves.append(_fit(kind, kernel, rows, predict_quant,
                               1.0 if kind == "int4" else ratio, bw, peak,
                               min_rows=min(r["shape"]["m"] for r in ran)))
    for path, kernel in _NOMASK_KERNELS.items():
        rows = [r for r in nomask if r.get("path") == path and is_fit_extra(r)]
        if rows:
            curves.append(_fit(path, kernel, rows, predict_nomask, 1.0, bw, peak,
                               flop=path == "causal"))
    gen = None
    fitted = [r for r in generate if is_fit_extra(r)]
    if fitted:
        power = [r["power"]["avg_power_w"] for r in fitted if r["power"].get("available")]
        gen = GenerateCost(generate_overheads(fitted)[GENERATE_FIT_MODEL],
                           statistics.median(power) if power else None,
                           GENERATE_FIT_MODEL, len(fitted))
    return Extras(device, tuple(curves), gen)


def curve_notes(x: Extras | None, device: str, stack: str, wbits: set[int]) -> list[str]:
    """What the run used of the issue-19 curves, and which it needed but were not measured."""
    x = x or Extras(device)
    notes = []
    for bits in sorted(wbits - {0}):
        kind = "int4" if bits == 4 else x.w8 if bits == 8 else None
        c = x.curve(kind) if kind else None
        if c is not None:
            pad = f"; rows padded to {c.min_rows}, the fewest it ran with" \
                if c.min_rows > 1 else ""
            notes.append(f"W{bits} linears timed on {c.kernel}'s curve ({kind}, fitted on "
                         f"{device}, {c.n_fit} points{pad})")
        elif kind:
            notes.append(f"{kind} GEMM curve ({QUANT_KERNELS[kind]}) not measured on {device}: "
                         f"W{bits} linears timed on the fp16 GEMM curve with {bits}-bit weight "
                         "bytes")
        else:
            notes.append(f"W{bits} linears: torch ships no {bits}-bit GEMM for CUDA; timed on "
                         f"the fp16 GEMM curve with {bits}-bit weight bytes")
    if stack == "vllm":
        have = [k for k in _NOMASK_KERNELS if x.curve(k)]
        missing = [k for k in _NOMASK_KERNELS if k not in have]
        if have:
            notes.append(f"attention without a mask ({', '.join(have)}: fitted on {device}); "
                         "verify steps (several tokens over a cache) keep the masked curve")
        if missing:
            notes.append(f"no-mask SDPA ({', '.join(missing)}) not measured on {device}: "
                         "timed on the masked-SDPA curve")
    if stack == "hf-eager":
        g = x.generate
        notes.append(f"generate(): {g.per_token_s * 1e6:,.0f} us per token of host work beyond "
                     f"the forward step (measured, {g.model} on {device})" if g else
                     f"generate() per-token host cost not measured on {device}: hf-eager "
                     "times the forward steps only (no logits processors, stopping criteria, "
                     "argmax or host syncs)")
    return notes

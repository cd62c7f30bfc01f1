"""The calibrated GPU timing model: an op graph becomes GPU kernels, each timed by a fitted curve.

Lowering (graph -> ``Kernels``) is :mod:`sim.gpu.lower`; this module times the kernels.

Kernel time, per class (``s`` a fixed time, ``eta`` a fraction of the datasheet peak; the
values are fitted on per-op measurements by :mod:`sim.gpu.calibrate`):

- linear (GEMV/GEMM): ``s_lin + max(bytes / (eta_bw BW), flops / (eta_flop P))``, bytes =
  weight + input + output;
- attention, one query token: ``s_dec + kv_bytes / (eta_dec BW)``;
- attention, several query tokens (causal/tree mask, prefill): ``s_mask + max(bytes /
  min(eta_mask BW, tiles r_tile), flops / (eta_mask_flop P))``, tiles = heads x ceil(q / 64):
  PyTorch's masked SDPA (a different kernel from the single-query one) gives each 64-row query
  tile of a head one thread block, so a verify step of 2..16 tokens streams the cache with only
  ``heads`` blocks. Measured: the same ~97 us at context 4096 on the H100 and the H200 for
  q = 2..16, although their HBM differs by 1.43x — the rate is per block, not per HBM. Over
  an odd number of keys (context + q; HF sizes the cache to exactly that) PyTorch takes a
  slower path: 89-100 us against 56 us at context 2048 for odd against even q, on both GPUs
  (``verify-probe-*.json``), so the streaming term is ``attn_mask_odd_factor`` times longer;
- everything else: ``s_kernel`` per elementwise kernel, ``s_reduction`` per reduction kernel
  (HF's RMSNorm statistics, softmax) plus ``s_value`` per value one of its threads sums (from
  PyTorch's launch config, :func:`reduce_values_per_thread`), ``s_norm`` per fused norm kernel
  (``aten.layer_norm``) plus ``s_norm_value`` per vector load one of its threads makes
  serially (:func:`norm_values_per_thread`), plus bytes / (eta BW) with each kind's own eta;
  an elementwise kernel PyTorch runs non-vectorised (a widening cast, a broadcast operand:
  :func:`norm_chain`, ``_legacy``) takes the longer of its bytes and its elements at
  ``legacy_elems_per_clk`` per SM and clock (it is bound on the chip, not by HBM).

L2 reuse: a kernel that reads what the kernel just before it wrote (the residual add's sum
read by the next norm, a chain of RoPE kernels, SiLU's output in the measured ``silu(x) * x``)
reads it from L2, not HBM, when the writer's whole footprint (what it reads and writes) fits
in half the L2: the L2 of A100/H100-class GPUs is two partitions, each caching for the SMs of
the GPCs wired to it (NVIDIA A100 and H100 whitepapers), so data all SMs touch is held in both
halves. Measured (``l2-probe-*.json``, ``silu(x) * x``): at width 11,008 the H100 moves it at
3.0 TB/s (counting all five tensor passes as HBM traffic) from 1,024 rows up, where its SiLU
kernel's footprint (43 MiB) passes half the L2, and at 3.5-3.6 TB/s at 384-576 rows
(16-24 MiB), past its 3.35 TB/s HBM. A hit costs nothing in the model; writes count as before.
The rule counts the writer's output only: the product's second read of x (which SiLU read but
did not write) would count under "any tensor the kernel before touched", which fitted the
held-out rows worse (a hit is not free: L2 has its own bandwidth). In a LLaMA MLP, up_proj
runs between SiLU and the product and streams its weights through L2, so the rule grants
nothing there. The float32 chain inside HF's RMSNorm gets no reuse: granting it made its
held-out errors worse (its time rises smoothly with the rows, on both GPUs).

A graph-replayed step (CUDA graphs: vLLM, TensorRT-LLM, ``torch.compile``) costs the sum of its
kernels plus ``s_node`` per kernel: measured on H100/H200, a kernel in a long chain of
*different* kernels costs ~0.4 us more than the same kernel repeated (1.8 vs 1.3 us), the
price of switching kernels inside a replay. An eager step is bound by the host too:
``max(sum of kernels, torch calls x host_s_per_call)``: eager HF is bound by its torch calls
(Python into C++ and the dispatcher, kernel or not; ``models.host_calls`` counts them at trace
time), at a per-call host cost fitted on each measuring machine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from sim.gpu.curves import Extras, nomask_time, quant_time
from sim.gpu.lower import (
    HF_RMSNORM_OPS,
    SMALL_COLS,
    STACKS,
    Kernels,
    expert_kernels,
    kernels,
    norm_chain,
    norm_values_per_thread,
    odd_keys,
    reduce_values_per_thread,
    small_columns,
)

# the lowering names are re-exported: callers import the GPU model from here
__all__ = ["HF_RMSNORM_OPS", "SMALL_COLS", "STACKS", "GPUCalibration", "Kernels", "kernel_times",
           "chip", "expert_kernels", "kernels", "norm_chain", "norm_values_per_thread", "odd_keys",
           "reduce_values_per_thread", "small_columns", "step_time_s", "step_times_s"]


@dataclass(frozen=True)
class GPUCalibration:
    """Fitted kernel-time parameters (seconds, or fractions of the datasheet peaks)."""

    device: str                 # the GPU the per-op data came from
    source: str                 # files and date of that data
    kernel_s: float             # one small elementwise kernel (graph replay)
    reduction_s: float          # one small reduction kernel (norm statistics, softmax)
    reduction_bw_eff: float     # reduction kernels' fraction of HBM bandwidth
    reduction_value_s: float    # per value one reduction thread sums (see reduce_values_per_thread)
    norm_s: float               # one fused norm kernel (aten.layer_norm: OPT's LayerNorm)
    norm_bw_eff: float          # fused norm kernels' fraction of HBM bandwidth
    norm_value_s: float         # per vector load one norm thread makes (norm_values_per_thread)
    legacy_elems_per_clk: float  # non-vectorised elementwise kernels: elements per SM per clock
    elem_bw_eff: float          # elementwise kernels' fraction of HBM bandwidth
    linear_s: float             # fixed time of a GEMV/GEMM kernel
    linear_bw_eff: float        # GEMV: fraction of HBM bandwidth
    linear_flop_eff: float      # GEMM: fraction of dense fp16 tensor peak
    attn_decode_s: float        # SDPA with one query token
    attn_decode_bw_eff: float
    attn_mask_s: float          # SDPA with several query tokens under a mask
    attn_mask_bw_eff: float
    attn_mask_flop_eff: float
    attn_mask_cta_bytes_per_s: float  # one query tile's K/V streaming rate (see module doc)
    graph_node_s: float = 0.0   # extra per kernel in a long graph of different kernels
    graph_launch_s: float = 0.0  # launching one replay
    attn_mask_odd_factor: float = 1.0  # masked SDPA over an odd key length: streaming x this
    host_s_per_call: float | None = None     # eager PyTorch: host time per torch call
    decode_power_w: float | None = None      # measured board power while decoding (median)
    prefill_power_w: float | None = None
    power_runs: int = 0                      # how many runs the medians are over
    extras: Extras | None = None             # issue 19's curves (sim.gpu.curves), if measured

    def params(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), float)}


def chip(spec) -> tuple[float, float]:
    """What the kernel model takes from a GPU preset (``sim.spec.HardwareSpec``) beyond its
    bandwidth and peak: the L2 bytes and the SMs x clock."""
    return spec.l2_bytes, spec.sm_count * spec.clock_hz



def kernel_times(k: Kernels, c: GPUCalibration, bw: float, peak: float, l2: float = 0.0,
                 sm_hz: float = 0.0) -> dict[str, np.ndarray]:
    """Device seconds of every kernel, per class; ``l2``: the GPU's L2 bytes (0: no reuse);
    ``sm_hz``: its SMs x clock (0: legacy elementwise kernels timed by their bytes only)."""
    m, kk, n = (k.lin_mkn[..., i] for i in range(3))  # [..., L]: batched over contexts too
    lin_bytes = (kk * n) * k.lin_bytes + 2.0 * (m * kk + m * n)
    lin = c.linear_s + np.maximum(lin_bytes / (c.linear_bw_eff * bw),
                                  2 * m * kk * n / (c.linear_flop_eff * peak))
    one = k.attn_q <= 1
    attn = np.where(one, c.attn_decode_s + k.attn_bytes / (c.attn_decode_bw_eff * bw),
                    c.attn_mask_s + np.maximum(k.attn_bytes / np.minimum(
                        c.attn_mask_bw_eff * bw,
                        k.attn_heads * np.ceil(k.attn_q / 64) * c.attn_mask_cta_bytes_per_s)
                        * np.where(k.attn_odd > 0, c.attn_mask_odd_factor, 1.0),
                        k.attn_flops / (c.attn_mask_flop_eff * peak)))
    if c.extras is not None:
        lin, attn = _measured_curves(k, c.extras, lin, attn, bw, peak)
    hit = (k.small_l2_foot <= l2 / 2) * 1.0  # the writer's footprint fits one L2 partition
    small = (c.kernel_s * k.small_elem + c.reduction_s * k.small_red
             + c.reduction_value_s * k.small_red_values
             + (k.small_bytes - hit * k.small_l2_bytes) / (c.elem_bw_eff * bw)
             + (k.small_red_bytes - hit * k.small_l2_red_bytes)
             / (c.reduction_bw_eff * bw)
             + c.norm_s * k.small_norm + c.norm_value_s * k.small_norm_values
             + k.small_norm_bytes / (c.norm_bw_eff * bw)
             + np.maximum(k.small_legacy_bytes / (c.elem_bw_eff * bw),
                          k.small_legacy_elems / (c.legacy_elems_per_clk * sm_hz)
                          if sm_hz else 0.0))
    return {"linear": lin, "attention": attn, "other": small}


def _measured_curves(k: Kernels, x: Extras, lin: np.ndarray, attn: np.ndarray, bw: float,
                     peak: float) -> tuple[np.ndarray, np.ndarray]:
    """Quantized linears on their kernel's curve (W4: int4; W8: ``x.w8``) and unmasked SDPA on
    the no-mask curves, where measured (:mod:`sim.gpu.curves`); the rest as given."""
    m, kk, n = (k.lin_mkn[..., i] for i in range(3))
    if k.lin_wbits is not None:
        for kind, bits in (("int4", 4), (x.w8, 8)):
            if (cur := x.curve(kind)) is not None:
                lin = np.where(k.lin_wbits == bits, quant_time(cur, m, kk, n, bw, peak), lin)
    if k.attn_nomask is not None:
        free, one = k.attn_nomask > 0, k.attn_q <= 1
        for kind, where in (("flash_decode", free & one), ("causal", free & ~one)):
            if (cur := x.curve(kind)) is not None:
                attn = np.where(where, nomask_time(cur, k.attn_bytes, k.attn_flops, bw, peak),
                                attn)
    return lin, attn


def step_times_s(k: Kernels, count: int, c: GPUCalibration, bw: float, peak: float,
                 stack: str = "graph", l2: float = 0.0, sm_hz: float = 0.0
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Seconds per step of a batch (``Kernels.lerp_batch``), and the device seconds per class
    per step. ``count``: kernels per step (the same in every one). A replayed step also pays
    ``graph_launch_s`` once and ``graph_node_s`` per kernel (an eager one the latter only)."""
    parts = {name: t.sum(axis=-1)
             for name, t in kernel_times(k, c, bw, peak, l2, sm_hz).items()}
    steps = len(next(iter(parts.values())))
    # switching between different kernels costs the GPU front end graph_node_s in either
    # stack; only a replay pays a launch (eager launches kernel by kernel, from the host)
    if stack != "hf-eager":
        parts["graph nodes"] = np.full(steps, c.graph_launch_s + count * c.graph_node_s)
    else:
        parts["kernel switches"] = np.full(steps, count * c.graph_node_s)
    device = sum(parts.values())
    if stack == "hf-eager":
        if c.host_s_per_call is None:
            raise ValueError(f"the calibration from {c.device} has no eager measurements")
        if not k.host_calls:
            raise ValueError("this graph carries no eager torch-call count "
                             "(models.host_calls); the hf-eager stack needs it")
        host = k.host_calls * c.host_s_per_call
        parts["host (eager launch)"] = np.maximum(host - device, 0.0)
        return np.maximum(device, host), parts
    return device, parts


def step_time_s(k: Kernels, c: GPUCalibration, bw: float, peak: float,
                stack: str = "graph", l2: float = 0.0, sm_hz: float = 0.0
                ) -> tuple[float, dict[str, float]]:
    """Seconds of one forward pass and the device time per kernel class (a batch of one)."""
    times, parts = step_times_s(k.lerp_batch(k, np.zeros(1)), k.count, c, bw, peak, stack,
                                l2, sm_hz)
    return float(times[0]), {name: float(v[0]) for name, v in parts.items()
                             if name != "host (eager launch)" or v[0] > 0}

"""Lowering: an op graph becomes the GPU kernels one forward pass launches (``Kernels``).

What a GPU runs for a HF decoder layer (SDPA attention, static KV cache) is close to one kernel
per IR node, with three exceptions handled here: the eager attention sub-graph (QK matmul,
scale, mask, softmax, cast, PV matmul) is one fused SDPA kernel; a norm module is the
``aten_ops`` it lists (HF's RMSNorm is eight kernels, one a reduction); a KV append writes only
the new rows into a static cache (``stack="graph"`` or ``"vllm"``) but copies the whole cache
with ``cat`` when HF runs eagerly with a dynamic cache (``stack="hf-eager"``); with
grouped-query attention under a mask HF copies K/V out to every query head before SDPA
(``repeat_kv``). Under ``stack="vllm"`` attention at one query token and in prefill runs
without a mask (flash decoding, ``is_causal``) and with native GQA (no copies); a verify step
(several tokens over a cache) keeps its mask.

Mixture-of-experts (``OpKind.EXPERTS``, :func:`expert_kernels`): one grouped GEMM per expert
matrix (gate/up, down), as vLLM's fused MoE kernel runs them: the d distinct experts the
routing reaches (``distinct_experts``, ``models.moe``) each have their weights read once and
the T x k (token, pick) rows split evenly over them, timed with the linear curve as one GEMM of
``T k / d`` rows against the d experts' matrices side by side (same FLOPs and weight bytes).
This is an extrapolation from dense GEMM measurements: no MoE kernel was measured, and a
grouped GEMM's smaller per-expert tiles may run below the dense efficiency. The gating between
them (gather, activation x up, routing weights, sum over k) counts as three elementwise kernels
moving the block's input and output and each GEMM output twice.

The kernels are timed by :mod:`sim.gpu.model`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from models.graph import Graph, Node, OpKind

__all__ = ["HF_RMSNORM_OPS", "SMALL_COLS", "STACKS", "Kernels", "expert_kernels", "kernels",
           "norm_chain", "norm_values_per_thread", "odd_keys", "reduce_values_per_thread",
           "small_columns"]

# graph: HF with a static cache replayed as CUDA graphs, masked SDPA (what kernels.measure_model
# times); vllm: CUDA graphs with SDPA unmasked at one query token and in prefill (flash decoding,
# is_causal), native GQA; hf-eager: HF PyTorch without graphs (host-bound), masked SDPA
STACKS = ("graph", "vllm", "hf-eager")
_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "int8": 1}
_REDUCTIONS = ("mean", "sum", "amax", "max", "var", "norm", "softmax")


@dataclass(frozen=True)
class Kernels:
    """The kernels one forward pass launches, as arrays per class."""

    lin_mkn: np.ndarray        # [L, 3] GEMM shapes
    lin_bytes: np.ndarray      # [L] bytes per element of the operands
    attn_q: np.ndarray         # [A] query tokens
    attn_heads: np.ndarray     # [A] query heads
    attn_bytes: np.ndarray     # [A] K/V + Q + output bytes
    attn_flops: np.ndarray     # [A]
    attn_odd: np.ndarray       # [A] 1 where a masked SDPA's key length is odd (slower path)
    small_bytes: np.ndarray    # [S] bytes each small op's elementwise kernels move
    small_red_bytes: np.ndarray  # [S] bytes its reduction kernels move
    small_elem: np.ndarray     # [S] elementwise kernels it launches
    small_red: np.ndarray      # [S] reduction kernels it launches
    small_norm: np.ndarray     # [S] fused norm kernels it launches (0 or 1)
    small_norm_bytes: np.ndarray  # [S] bytes they move
    small_red_values: np.ndarray  # [S] values per thread of its reduction kernels, summed
    small_norm_values: np.ndarray  # [S] vector loads per thread of its fused norm kernel
    small_l2_bytes: np.ndarray  # [S] elementwise bytes read from what the kernel before wrote
    small_l2_red_bytes: np.ndarray  # [S] the same, read by its reduction kernels
    small_l2_foot: np.ndarray  # [S] footprint of the kernels that wrote them (largest)
    small_legacy_bytes: np.ndarray  # [S] bytes of its non-vectorised elementwise kernels
    small_legacy_elems: np.ndarray  # [S] elements they compute (see legacy_elems_per_clk)
    lin_wbits: np.ndarray | None = None  # [L] stored weight bits (``weight_bits``; 0: dtype)
    attn_nomask: np.ndarray | None = None  # [A] 1: SDPA without a mask (stack "vllm")
    host_calls: int = 0        # torch calls of the pass in eager HF (graph meta; 0: unknown)

    @property
    def count(self) -> int:
        return int(len(self.lin_mkn) + len(self.attn_q) + self.small_elem.sum()
                   + self.small_red.sum() + self.small_norm.sum())

    def lerp_batch(self, other: Kernels, t: np.ndarray) -> Kernels:
        """The kernels at fractions ``t`` between self (0) and other (1), as one Kernels whose
        arrays carry a leading axis over ``t``: sizes are affine in the context, so this is
        exact at every decode position."""
        def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            shape = (len(t),) + (1,) * a.ndim
            return a[None] + (b - a)[None] * t.reshape(shape)

        return Kernels(*[mix(a, b) for a, b in zip(_arrays(self), _arrays(other), strict=True)],
                       host_calls=self.host_calls)



def _arrays(k: Kernels) -> list[np.ndarray]:
    return [getattr(k, f.name) for f in fields(k) if f.name != "host_calls"]


def _attention_groups(g: Graph) -> dict[int, list[int]]:
    """Node indices of each eager attention sub-graph (QK matmul .. PV matmul), by first index."""
    groups: dict[int, list[int]] = {}
    nodes = g.nodes
    i = 0
    while i < len(nodes):
        n = nodes[i]
        if n.kind is OpKind.MATMUL and dict(n.attrs).get("role") == "qk":
            j = i + 1
            while j < len(nodes) and nodes[j].layer == n.layer \
                    and nodes[j].kind not in (OpKind.MATMUL, OpKind.LINEAR):
                j += 1
            pv = j < len(nodes) and nodes[j].kind is OpKind.MATMUL \
                and nodes[j].layer == n.layer and dict(nodes[j].attrs).get("role") != "qk"
            groups[i] = list(range(i, j + 1)) if pv else [i]
            i = j + 1 if pv else i + 1
            continue
        elif n.kind is OpKind.ATTENTION:
            groups[i] = [i]
        i += 1
    return groups


def _last_pow2(n: int) -> int:
    return 1 << (max(int(n), 1).bit_length() - 1)


def reduce_values_per_thread(rows: int, width: int) -> int:
    """Values each thread sums serially when PyTorch's reduction kernel reduces ``rows`` rows of
    ``width`` contiguous elements (``mean(-1)``): the launch config of
    ``ATen/native/cuda/Reduce.cuh`` (``setReduceConfig``, ``ReduceConfig::set_block_dimension``;
    the header ships with torch): 512 threads per block, inputs vectorised by 4 when the row
    has 128 or more, a block ``min(pow2(rows), 16)`` rows high and ``512 / height`` threads
    wide (at most a row's vectors), split across the warps too when a thread would sum at
    least ``min(16 height, 256)`` values. So one row is summed by 512 threads (8 values each
    at width 4,096) but 16 or more rows by one warp each (128 values): the kernel's latency
    grows with the rows up to 16 (measured: HF's RMSNorm 12.5 us at one row, 21.0 us at 16,
    24.2 us at 128 on an H200). Splitting across blocks (rows wider than 131,072) is left out."""
    dim0 = width // 4 if width >= 128 else width
    p0 = _last_pow2(dim0) if dim0 < 512 else 512
    height = min(_last_pow2(rows) if rows < 512 else 512, 512 // min(p0, 32))
    lanes = min(p0, 512 // height)
    per = -(-width // lanes)
    if per >= min(16 * height, 256):
        per = -(-width // (lanes * height))
    return per


_NORM_THREADS, _NORM_VEC = 128, 4


def norm_values_per_thread(width: int) -> int:
    """Vector loads each thread of PyTorch's fused layer-norm kernel makes per pass over a row
    of ``width`` halves: ``vectorized_layer_norm_kernel`` (ATen/native/cuda/layer_norm_kernel.cu,
    not shipped with torch) gives each row one block of ``num_threads()`` threads, four warps
    (128, in ``ATen/native/cuda/thread_constants.h``, which is shipped), each loading
    ``vec_size`` = 4 elements at a time. So one row's time is flat up to width 512 and then grows
    by one step per 512: measured before this term was fitted, on both GPUs (``l2-probe``
    files, one row, widths 128..16,384): 2.7 us at widths 128..512, 3.2 at 640..1,024 (two
    loads), 4.4 at 2,048, 6.4 at 4,096, 10.8 at 8,192, 19.2 at 16,384 (32 loads) — 0.54 us
    per load."""
    return max(1, -(-int(width) // (_NORM_THREADS * _NORM_VEC)))


def _reduced(n: Node) -> tuple[int, int]:
    """(rows, width) a node reduces over its last axis."""
    shape = n.in_shapes[0] if n.in_shapes and n.in_shapes[0] else n.out_shape
    width = int(shape[-1]) if shape else 1
    return max(1, _numel(shape) // max(width, 1)), width


def kernels(g: Graph, stack: str = "graph") -> Kernels:
    """The GPU kernels of one forward pass of ``g`` under ``stack``."""
    if stack not in STACKS:
        raise ValueError(f"unknown GPU software stack {stack!r}; allowed: {', '.join(STACKS)}")
    groups = _attention_groups(g)
    fused = {i for idx in groups.values() for i in idx}
    lin, lin_b, aq, ah, ab, af, odd = [], [], [], [], [], [], []
    wbits, nomask = [], []
    small: list[dict[str, float]] = []  # Kernels.small_* columns (SMALL_COLS)
    prev, prev_foot = "", 0.0  # the last kernel's node, and what it read and wrote
    for i, n in enumerate(g.nodes):
        es = _BYTES.get(n.dtype, 2)
        if i in groups:
            members = [g.nodes[j] for j in groups[i]]
            q = n.in_shapes[0][-2] if n.in_shapes and len(n.in_shapes[0]) >= 2 else 1
            kv = sum(m.kv_read_bytes for m in members)
            rep = _gqa_repeat(n, es)
            # vLLM-class stacks run attention without a mask at one query token (flash
            # decoding) and in prefill (causal, keys = queries); verify steps keep the mask
            free = stack == "vllm" and (q <= 1 or _keys(n) == q)
            if rep > 1 and not free and (stack == "graph" or q > 1):
                # HF runs SDPA's native GQA only without a mask (transformers
                # integrations/sdpa_attention.use_gqa_in_sdpa); with one, repeat_kv copies K
                # and V out to every query head first: two copies, and SDPA reads rep x K/V.
                small += [{"bytes": kv / 2 * (1 + rep), "elem": 1}] * 2
                kv *= rep
            aq.append(q)
            ah.append(n.in_shapes[0][1] if len(n.in_shapes[0]) == 4 else 1)
            ab.append(kv + 2 * es * _numel(n.in_shapes[0]))
            af.append(sum(m.flops for m in members if m.kind in (OpKind.MATMUL,
                                                                 OpKind.ATTENTION)))
            odd.append(float(odd_keys(q, _keys(n))) * (not free))
            nomask.append(float(free))
            prev, prev_foot = members[-1].name, float(ab[-1])
            continue
        if i in fused:
            continue
        if n.kind is OpKind.EXPERTS:
            rows, bpe, row = expert_kernels(n, es)
            lin.extend(rows)
            lin_b.extend(bpe)
            wbits.extend([float(dict(n.attrs).get("weight_bits", 0))] * len(rows))
            small.append(row)
            prev, prev_foot = n.name, float(n.total_bytes)
            continue
        if n.kind is OpKind.LINEAR:
            k = n.in_shapes[0][-1]
            nn = n.out_shape[-1]
            lin.append((max(1, _numel(n.out_shape) // max(nn, 1)), k, nn))
            lin_b.append(n.weight_bytes / max(k * nn, 1) if n.weight_bytes else es)
            wbits.append(float(dict(n.attrs).get("weight_bits", 0)))
            prev, prev_foot = n.name, float(n.total_bytes)
            continue
        row = _small(n, stack, es)
        # what this node reads of the previous kernel's output comes from L2 when it fits
        # (vectorised kernels: the legacy ones are bound by their element rate)
        fed = sum(_numel(sh) * es for src, sh in zip(n.inputs, n.in_shapes, strict=False)
                  if src == prev)
        if fed and not row.get("legacy_bytes") and not row.get("norm"):
            key = "l2_bytes" if row.get("bytes") else "l2_red_bytes"
            row = {**row, key: fed, "l2_foot": prev_foot}
        small.append(row)
        prev, prev_foot = n.name, float(n.total_bytes)
    f = np.asarray
    cols = small_columns(small)
    return Kernels(f(lin, dtype=np.float64).reshape(-1, 3), f(lin_b, dtype=np.float64),
                   f(aq, dtype=np.float64), f(ah, dtype=np.float64),
                   f(ab, dtype=np.float64), f(af, dtype=np.float64), f(odd, dtype=np.float64),
                   *cols, lin_wbits=f(wbits, dtype=np.float64),
                   attn_nomask=f(nomask, dtype=np.float64),
                   host_calls=int(dict(g.meta).get("eager_torch_calls", 0)))


def expert_kernels(n: Node, es: int) -> tuple[list[tuple[float, float, float]], list[float],
                                             dict[str, float]]:
    """An experts node as GEMM rows (m, k, n), their weight bytes per element, and one small-op
    row for its gating kernels (see the module doc)."""
    a = n.attr
    pairs = a["tokens"] * a["top_k"]                     # (token, pick) rows
    d = max(float(a.get("distinct_experts", a["num_experts"])), 1e-9)  # unrouted: all
    gemms = a["expert_gemms"]
    per_elem = a["expert_bytes"] / max(sum(k * m for k, m in gemms), 1)
    rows = [(pairs / d, float(k), float(m) * d) for k, m in gemms]
    moved = n.act_bytes + 2 * pairs * sum(m for _, m in gemms) * es
    return rows, [per_elem] * len(rows), {"bytes": moved, "elem": 3}


SMALL_COLS = ("bytes", "red_bytes", "elem", "red", "norm", "norm_bytes", "red_values",
              "norm_values", "l2_bytes", "l2_red_bytes", "l2_foot", "legacy_bytes",
              "legacy_elems")  # Kernels.small_* in order
# HF's RMSNorm as traced (LlamaRMSNorm.forward: upcast, variance, rsqrt, scale, downcast, weight)
HF_RMSNORM_OPS = ("to.dtype,pow.Tensor_Scalar,mean.dim,add.Tensor,rsqrt.default,mul.Tensor,"
                  "to.dtype,mul.Tensor")
# ATen ops that are not TensorIterator elementwise kernels (copies, fills, index builders)
_NOT_LOOPS = ("cat", "arange", "zeros", "ones", "full", "embedding", "empty", "slice", "view")


def _put(d: dict[str, float], legacy: bool, nbytes: float, elems: float) -> None:
    d["elem"] = d.get("elem", 0) + 1
    if legacy:  # "legacy" counts them (not a Kernels column: they are among "elem")
        d["legacy"] = d.get("legacy", 0) + 1
        d["legacy_bytes"] = d.get("legacy_bytes", 0) + nbytes
        d["legacy_elems"] = d.get("legacy_elems", 0) + elems
    else:
        d["bytes"] = d.get("bytes", 0) + nbytes


def norm_chain(rows: int, width: int, ops: str, es: int, weight_bytes: float
               ) -> dict[str, float]:
    """The kernels of an unfused norm's ATen ops (``aten_ops``), one by one: HF's RMSNorm is
    a widening cast (fp16 -> fp32: PyTorch's unrolled kernel with casts), x^2 (vectorised), the
    row mean (Reduce.cuh), + eps and rsqrt on one value per row, x * rsqrt (a broadcast
    operand: the legacy kernel with an offset calculator), the cast back (vectorised) and
    weight * x (broadcast too once there are two rows or more). Kernel types as
    ``gpu_kernel_impl`` in ATen/native/cuda/CUDALoops.cuh picks them, and as profiled
    (``kernels-probe-*.json``)."""
    n = rows * width
    d: dict[str, float] = {}
    cur, per_row = es, False
    names = [o.split(".")[0] for o in ops.split(",") if o]
    for i, name in enumerate(names):
        if name in _REDUCTIONS:
            d["red"] = d.get("red", 0) + 1
            d["red_bytes"] = d.get("red_bytes", 0) + (n + rows) * cur
            d["red_values"] = d.get("red_values", 0) + reduce_values_per_thread(rows, width)
            per_row = True
        elif name == "to":                              # a cast: widening is the slow kind
            new = 4 if cur < 4 else es
            _put(d, new > cur, n * (cur + new), n)
            cur = new
        elif per_row and name in ("mul", "div", "sub"):  # the row statistic applied to x
            _put(d, True, (2 * n + rows) * cur, n)
            per_row = False
        elif per_row:                                   # on the statistic itself
            _put(d, False, 2 * rows * cur, rows)
        elif name == "mul" and i == len(names) - 1 and weight_bytes:  # weight * x
            _put(d, rows > 1, 2 * n * cur + weight_bytes, n)
        else:
            _put(d, False, 2 * n * cur, n)
    return d


def _legacy(n: Node) -> bool:
    """Whether PyTorch runs an elementwise node with its non-vectorised kernels
    (``gpu_kernel_impl``, CUDALoops.cuh): an operand broadcast against the output (not
    contiguous: the legacy kernel with an offset calculator) or a widening cast (the
    unrolled kernel with casts; fp32 outputs of 16-bit inputs)."""
    out = _numel(n.out_shape)
    bcast = any(1 < _numel(sh) != out for sh in n.in_shapes)
    parts = n.op.split(".")  # aten.<op>.<overload>
    widen = len(parts) > 1 and parts[1] in ("to", "_to_copy") and n.dtype == "float32"
    return bcast or widen


def _small(n: Node, stack: str, es: int) -> dict[str, float]:
    """A non-GEMM, non-attention node as ``Kernels.small_*`` columns (``SMALL_COLS``)."""
    if n.kind is OpKind.KV_APPEND:
        moved = n.act_bytes + n.kv_write_bytes if stack == "hf-eager" else 2 * n.kv_write_bytes
        return {"bytes": moved, "elem": 1}
    if n.kind is OpKind.NORM:
        ops = str(dict(n.attrs).get("aten_ops", ""))
        if ops:
            return norm_chain(*_reduced(n), ops, es, n.weight_bytes)
        # one fused kernel (aten.layer_norm): the node's activations and its weights
        return {"norm": 1, "norm_bytes": n.act_bytes + n.weight_bytes,
                "norm_values": norm_values_per_thread(_reduced(n)[1])}
    moved = n.act_bytes + n.compulsory_bytes
    if n.kind in (OpKind.SOFTMAX, OpKind.REDUCTION):
        # an ATen reduction (mean, sum, amax) runs Reduce.cuh's kernel; softmax has its own
        values = reduce_values_per_thread(*_reduced(n)) if n.kind is OpKind.REDUCTION else 0
        return {"red_bytes": moved, "red": 1, "red_values": values}
    d: dict[str, float] = {}
    loops = n.kind in (OpKind.ELEMENTWISE, OpKind.ACTIVATION, OpKind.ROPE) \
        and not any(x in n.op for x in _NOT_LOOPS)
    _put(d, loops and _legacy(n), moved, _numel(n.out_shape))
    return d


def small_columns(rows: list[dict[str, float]]) -> list[np.ndarray]:
    """``Kernels.small_*`` arrays (``SMALL_COLS`` order) of small-op rows."""
    return [np.asarray([r.get(c, 0.0) for r in rows], dtype=np.float64) for c in SMALL_COLS]


def odd_keys(q: float, keys: float) -> bool:
    """Whether SDPA over ``keys`` keys with ``q`` queries takes PyTorch's slower masked path:
    a mask (q > 1) over an odd key length (see ``attn_mask_odd_factor``)."""
    return q > 1 and int(keys) % 2 == 1


def _keys(n: Node) -> int:
    """Key length of an attention group's first node: the QK matmul's (1, H, d, keys) or
    SDPA's K (1, H, keys, d); 0 when the shapes do not say."""
    if len(n.in_shapes) < 2 or len(n.in_shapes[1]) != 4:
        return 0
    return int(n.in_shapes[1][3] if n.kind is OpKind.MATMUL else n.in_shapes[1][2])


def _gqa_repeat(qk: Node, es: int) -> int:
    """Query heads per KV head of a QK matmul ((B, H, q, d) x (B, H, d, keys)); the cache it
    reads (``kv_read_bytes``, every sequence's) holds only the KV heads."""
    if qk.kind is not OpKind.MATMUL or len(qk.in_shapes) < 2 or len(qk.in_shapes[1]) != 4:
        return 1
    batch, heads, d, keys = qk.in_shapes[1]
    kv_heads = qk.kv_read_bytes / max(batch * keys * d * es, 1)
    return max(1, round(heads / kv_heads)) if kv_heads >= 1 else 1


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1

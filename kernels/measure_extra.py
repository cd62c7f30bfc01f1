"""Issue 19's GPU measurements: generate() end to end, SDPA without masks, quantized GEMMs,
batched decode steps. Sections of :func:`kernels.measure.measure_all` (``--only generate,
attention_nomask,quant_ops,batch_steps``); on the CPU with ``--dry-run`` every path runs with
tiny shapes in seconds.

- ``generate``: HF ``model.generate()`` (greedy, DynamicCache, EOS disabled so every run makes
  the tokens asked for) at a 128-token prompt, timed for two output lengths: the difference per
  extra token is the per-token cost of generate() as a user runs it (logits processors,
  stopping criteria, cache and position bookkeeping, argmax, host syncs) without the prefill.
  Next to it, the eager forward step it calls (q = 1 over the same context), so the part
  generate() adds on top of the forward is measured, not modelled. Board power from NVML's
  energy counter while generate() runs (the main model).
- ``attention_nomask``: SDPA with no mask, as vLLM-class stacks run attention: one query token
  over a cache (flash decoding) and ``is_causal=True`` prefill; MHA (LLaMA-2-7B) and GQA
  (``enable_gqa``, 32 query over 8 KV heads). K/V rotate through copies larger than L2.
- ``quant_ops``: the quantized GEMMs torch ships for CUDA at LLaMA-2-7B's linear shapes,
  decode and prefill row counts: ``torch._weight_int4pack_mm`` (W4, bf16 activations, groups
  of 128), ``torch._int_mm`` (W8A8 int8 -> int32) and ``torch._scaled_mm`` (fp8 e4m3,
  per-tensor scales, bf16 out). A shape or an op the build does not support is recorded as
  ``"status": "unsupported"`` with the error, never dropped (older ``_int_mm`` builds want more
  than 16 rows on CUDA, hence m = 16 and 17; ``_scaled_mm`` wants k and n divisible by 16, its
  meta check, and an sm89+ GPU). On the CPU the int4 op is its CPU twin
  (``_weight_int4pack_mm_for_cpu``) and the record names it.
- ``batch_steps``: graph-replayed decode steps (q = 1) at batch 1..64, LLaMA-2-7B.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from kernels.measure import _DTYPES, _copies, _record, time_fn

__all__ = ["GENERATE_MODELS", "QUANT_KERNELS", "measure_attention_nomask", "measure_batch_steps",
           "measure_generate", "measure_quant", "plan_extra", "schema_problems"]

# LLaMA-2-7B last: it is the one whose power is measured, and the sections after this one reuse
# it (kernels.measure_model keeps the last model built)
GENERATE_MODELS = ("tinyllama-1.1b", "qwen2-0.5b", "opt-6.7b", "llama2-7b")
QUANT_KERNELS = {"int4": "torch._weight_int4pack_mm", "int8": "torch._int_mm",
                 "fp8": "torch._scaled_mm"}
_INT4_GROUP, _INNER_K_TILES = 128, 8  # gpt-fast / torchao int4 weight-only defaults


def plan_extra(dry_run: bool) -> dict[str, Any]:
    """Shapes of the four sections (tiny on a dry run)."""
    if dry_run:
        return {"generate": ("llama-68m",), "prompt": 8, "new": (2, 6), "gen_repeat": 2,
                "heads": 4, "kv_heads": 2, "head_dim": 32, "decode_ctx": (64, 256),
                "prefill": (16, 64), "gqa_ctx": (64,),
                "quant_shapes": ((256, 256), (256, 512)), "quant_ms": (1, 16, 32),
                "batch_model": "llama-68m", "batches": (1, 2, 4), "batch_ctx": (16,),
                "batch_ctx_some": (), "power_s": 0.0}
    return {"generate": GENERATE_MODELS, "prompt": 128, "new": (16, 80), "gen_repeat": 3,
            "heads": 32, "kv_heads": 8, "head_dim": 128,
            "decode_ctx": (128, 256, 512, 1024, 2048, 4096),
            "prefill": (128, 256, 512, 1024, 2048, 4096), "gqa_ctx": (512, 2048),
            # LLaMA-2-7B: q/k/v/o, gate/up, down, lm_head (n, k) as (k, n) GEMM operands
            "quant_shapes": ((4096, 4096), (4096, 11008), (11008, 4096), (4096, 32000)),
            "quant_ms": (1, 16, 17, 32, 64, 128, 512, 2048),
            "batch_model": "llama2-7b", "batches": (1, 2, 4, 8, 16, 32, 64),
            "batch_ctx": (512,), "batch_ctx_some": ((2048, (1, 8, 32)),), "power_s": 4.0}


# -- generate() --------------------------------------------------------------------------------
def _generate_once(model, ids: torch.Tensor, new: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    config = copy.deepcopy(model.generation_config)
    # random weights would emit EOS at random: disable it so every run makes `new` tokens
    config.update(do_sample=False, max_new_tokens=new, eos_token_id=None, pad_token_id=0)
    t0 = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         generation_config=config)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    assert out.shape[1] == ids.shape[1] + new, "generate() stopped early"
    return time.perf_counter() - t0


def _nvml() -> Any:
    """An NVML handle reader, or None (no pynvml, no counter)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1e3
    except Exception:  # noqa: BLE001 - NVML missing or unsupported: power not measured
        return None


def _generate_power(model, ids: torch.Tensor, new: int, device: torch.device,
                    seconds: float) -> dict[str, Any]:
    """Board power (NVML energy counter) over back-to-back generate() calls for ``seconds``."""
    joules = _nvml() if device.type == "cuda" else None
    if joules is None:
        return {"available": False, "reason": "no CUDA device or no NVML energy counter"}
    e0, t0, calls = joules(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or calls == 0:
        _generate_once(model, ids, new, device)
        calls += 1
    dt, e = time.perf_counter() - t0, joules() - e0
    return {"available": True, "calls": calls, "wall_s": dt, "avg_power_w": e / dt,
            "joules_per_token": e / (calls * new), "new_tokens": new,
            "prompt": int(ids.shape[1]), "note": "prefill included (one per call)"}


def measure_generate(device: torch.device, *, dtype: str = "float16", dry_run: bool = False,
                     deadline: float | None = None, **kw: Any) -> list[dict[str, Any]]:
    """generate() per model: time for two output lengths, per-token cost, the eager step it
    calls, and (the last model, the main one) board power."""
    from kernels.measure_model import _eager_step, _quiet, build_model

    p = plan_extra(dry_run)
    n1, n2 = p["new"]
    out: list[dict[str, Any]] = []
    for i, name in enumerate(p["generate"]):
        if deadline is not None and time.monotonic() > deadline:
            break
        model = build_model(name, _DTYPES[dtype], device, layers=2 if dry_run else None)
        ids = torch.randint(0, model.config.vocab_size, (1, p["prompt"]), device=device)
        with _quiet():
            for _ in range(2):  # warm-up: allocator, cuBLAS heuristics, Python caches
                _generate_once(model, ids, n1, device)
            runs = {n: [_generate_once(model, ids, n, device) for _ in range(p["gen_repeat"])]
                    for n in (n1, n2)}
            mid = p["prompt"] + (n1 + n2) // 2   # the context of an average generated token
            step = _eager_step(model, 1, mid, device, _DTYPES[dtype],
                               **{**kw, "warmup": max(kw.get("warmup", 3), 10)})
            last = i == len(p["generate"]) - 1
            power = _generate_power(model, ids, n2, device, p["power_s"]) if last \
                else {"available": False, "reason": "measured on the main (last) model only"}
        per_token = [(b - a) / (n2 - n1) for a, b in zip(sorted(runs[n1]), sorted(runs[n2]),
                                                          strict=True)]
        out.append({"op": "generate", "model": name, "dtype": dtype,
                    "shape": {"prompt": p["prompt"], "new_tokens": [n1, n2],
                              "layers": model.config.num_hidden_layers},
                    "total_s": {str(n): runs[n] for n in (n1, n2)},
                    "per_token_s": statistics.median(per_token),
                    "per_token_min_s": min(per_token),
                    "tokens_per_s": 1.0 / statistics.median(per_token),
                    "eager_step": {"context": mid, "median_s": statistics.median(step),
                                   "min_s": min(step)},
                    "power": power,
                    "method": "per token = (t(n2) - t(n1)) / (n2 - n1), runs paired by rank; "
                              "greedy, DynamicCache, eos disabled"})
    return out


# -- SDPA without a mask -----------------------------------------------------------------------
def measure_attention_nomask(device: torch.device, *, dtype: str = "float16",
                             dry_run: bool = False, l2: int | None = None,
                             **kw: Any) -> list[dict[str, Any]]:
    """Flash decoding (q = 1, no mask) over caches and ``is_causal`` prefill, MHA and GQA."""
    p = plan_extra(dry_run)
    dt = _DTYPES[dtype]
    h, d = p["heads"], p["head_dim"]
    cases = [("flash_decode", 1, c, h) for c in p["decode_ctx"]]
    cases += [("flash_decode", 1, c, p["kv_heads"]) for c in p["gqa_ctx"]]
    cases += [("causal", t, 0, h) for t in p["prefill"]]
    cases += [("causal", t, 0, p["kv_heads"]) for t in p["gqa_ctx"]]
    out = []
    for path, q, c, kvh in cases:
        keys = c + q
        kv_bytes = 2 * kvh * keys * d * dt.itemsize
        qs = torch.randn(1, h, q, d, device=device, dtype=dt)
        kvs = [(torch.randn(1, kvh, keys, d, device=device, dtype=dt),
                torch.randn(1, kvh, keys, d, device=device, dtype=dt))
               for _ in range(_copies(kv_bytes, l2))]
        causal, gqa = path == "causal", kvh != h

        def fn(i: int, qs=qs, kvs=kvs, causal=causal, gqa=gqa) -> torch.Tensor:
            ks, vs = kvs[i % len(kvs)]
            return torch.nn.functional.scaled_dot_product_attention(
                qs, ks, vs, is_causal=causal, enable_gqa=gqa)

        flops = 4 * h * q * keys * d // (2 if causal else 1)  # causal: half the score matrix
        out.append({"op": "attention_nomask", "shape": {"q": q, "context": c, "heads": h,
                                                        "kv_heads": kvh, "head_dim": d},
                    "dtype": dtype, **_timed(fn, device, kw), "path": path, "flops": flops,
                    "kv_bytes": kv_bytes, "kv_copies": len(kvs)})
    return out


# -- quantized GEMMs ---------------------------------------------------------------------------
def _int4_case(m: int, k: int, n: int, device: torch.device, copies: int):
    """x [m, k] bf16 times a [n, k] int4 weight packed for ``_weight_int4pack_mm`` (its CPU twin
    on the CPU), asymmetric groups of ``_INT4_GROUP`` along k: scales and zeros [k/g, n, 2]."""
    x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    group = min(_INT4_GROUP, k)
    sz = torch.rand(k // group, n, 2, device=device, dtype=torch.bfloat16)
    w = torch.randint(0, 16, (n, k), dtype=torch.int32, device=device)
    if device.type == "cuda":
        u8 = (w[:, ::2] << 4 | w[:, 1::2]).to(torch.uint8)          # two nibbles per byte
        packs = [torch._convert_weight_to_int4pack(u8, _INNER_K_TILES) for _ in range(copies)]
        op, name = torch._weight_int4pack_mm, QUANT_KERNELS["int4"]
    else:
        packs = [torch._convert_weight_to_int4pack_for_cpu(w, 2) for _ in range(copies)]
        op, name = torch._weight_int4pack_mm_for_cpu, "torch._weight_int4pack_mm_for_cpu"
    return (lambda i: op(x, packs[i % copies], group, sz)), name, {"group": group}


def _int8_case(m: int, k: int, n: int, device: torch.device, copies: int):
    x = torch.randint(-128, 127, (m, k), dtype=torch.int8, device=device)
    ws = [torch.randint(-128, 127, (n, k), dtype=torch.int8, device=device).t()  # [k, n] col-major
          for _ in range(copies)]
    return (lambda i: torch._int_mm(x, ws[i % copies])), QUANT_KERNELS["int8"], {}


def _fp8_case(m: int, k: int, n: int, device: torch.device, copies: int):
    f8 = torch.float8_e4m3fn
    x = torch.randn(m, k, device=device).to(f8)
    ws = [torch.randn(n, k, device=device).to(f8).t() for _ in range(copies)]  # col-major
    one = torch.tensor(1.0, device=device)
    return (lambda i: torch._scaled_mm(x, ws[i % copies], one, one, out_dtype=torch.bfloat16)), \
        QUANT_KERNELS["fp8"], {"scales": "per-tensor", "out_dtype": "bfloat16"}


_QUANT_CASES: dict[str, tuple[Callable[..., Any], float]] = {  # builder, weight bytes per element
    "int4": (_int4_case, 0.5), "int8": (_int8_case, 1.0), "fp8": (_fp8_case, 1.0)}


def measure_quant(device: torch.device, *, dtype: str = "float16", dry_run: bool = False,
                  l2: int | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Every quantized kernel at every (m, k, n); a failure is an ``unsupported`` record."""
    p = plan_extra(dry_run)
    out = []
    for kind, (build, per_elem) in _QUANT_CASES.items():
        for k, n in p["quant_shapes"]:
            wbytes = int(k * n * per_elem)
            for m in p["quant_ms"]:
                shape = {"m": m, "k": k, "n": n}
                base = {"op": f"linear_{kind}", "shape": shape, "dtype": kind,
                        "weight_bytes": wbytes, "flops": 2 * m * k * n}
                try:
                    fn, name, extra = build(m, k, n, device, _copies(wbytes, l2))
                    fn(0)   # the op's own checks raise here, before any timing
                except (RuntimeError, NotImplementedError, AttributeError, TypeError) as e:
                    out.append({**base, "kernel": QUANT_KERNELS[kind], "status": "unsupported",
                                "error": _short(e)})
                    continue
                out.append({**_timed(fn, device, kw), **base, "kernel": name, **extra})
    return out


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _timed(fn: Callable[[int], Any], device: torch.device, kw: dict[str, Any]
           ) -> dict[str, Any]:
    """Median/min of ``fn`` under ``kw``; if CUDA-graph capture fails, eagerly (queued calls,
    host-bound for small shapes) with ``graph_error`` saying why."""
    try:
        times, extra = time_fn(fn, device, **kw), {}
    except RuntimeError as e:
        if not kw.get("graph"):
            raise
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times, extra = time_fn(fn, device, **{**kw, "graph": False}), {"graph_error": _short(e)}
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": len(times),
            "status": "ok", "cuda_graph": bool(kw.get("graph")) and not extra, **extra}


# -- batched decode ----------------------------------------------------------------------------
def measure_batch_steps(device: torch.device, *, dtype: str = "float16", dry_run: bool = False,
                        deadline: float | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Decode steps (q = 1) at each batch, CUDA-graph replayed (eager on the CPU)."""
    from kernels.measure_model import _graph, _quiet, build_model, static_step

    p = plan_extra(dry_run)
    name = p["batch_model"]
    model = build_model(name, _DTYPES[dtype], device, layers=2 if dry_run else None)
    cases = [(b, c) for c in p["batch_ctx"] for b in p["batches"]]
    cases += [(b, c) for c, bs in p["batch_ctx_some"] for b in bs]
    out: list[dict[str, Any]] = []
    with _quiet():
        for b, c in cases:
            if deadline is not None and time.monotonic() > deadline:
                break
            shape = {"q": 1, "context": c, "batch": b, "layers": model.config.num_hidden_layers}
            try:
                if device.type == "cuda":
                    step, mode = _graph(model, 1, c, device, batch=b), "cuda_graph"
                else:   # no CUDA graphs: the same static-cache step, run eagerly
                    step, mode = static_step(model, 1, c, device, batch=b), "eager_static"
                times = time_fn(lambda _, step=step: step(), device, **kw)
                del step
            except (RuntimeError, torch.OutOfMemoryError) as e:
                if device.type != "cuda":
                    raise
                out.append({"op": "decode_step", "shape": shape, "model": name,
                            "status": "failed", "error": f"{type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]}"})
                torch.cuda.empty_cache()
                continue
            out.append(_record("decode_step", shape, dtype, times, model=name, mode=mode,
                               tokens_per_s=b / statistics.median(times)))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return out


# -- schema ------------------------------------------------------------------------------------
_RECORD_KEYS = {  # section -> keys every record has (unsupported/failed ones: op, shape, error)
    "generate": {"op", "model", "shape", "total_s", "per_token_s", "per_token_min_s",
                 "tokens_per_s", "eager_step", "power"},
    "attention_nomask": {"op", "shape", "path", "median_s", "min_s", "flops", "kv_bytes"},
    "quant_ops": {"op", "shape", "kernel", "status", "weight_bytes", "flops"},
    "batch_steps": {"op", "shape", "model"},
}


def schema_problems(data: dict[str, Any]) -> list[str]:
    """What is missing from a measurement file's issue-19 sections (empty: well formed); the
    provenance (device name, date, torch and, on CUDA, CUDA versions, the command) included."""
    dev = data.get("device", {})
    problems = [f"device.{k} missing" for k in ("name", "date", "torch") if not dev.get(k)]
    if dev.get("device", "").startswith("cuda") and not dev.get("cuda"):
        problems.append("device.cuda missing")
    if not data.get("command"):
        problems.append("command missing")
    for section, keys in _RECORD_KEYS.items():
        for i, r in enumerate(data.get(section, [])):
            bad = r.get("status") in ("unsupported", "failed")
            need = {"op", "shape", "error"} if bad else keys
            if missing := need - set(r):
                problems.append(f"{section}[{i}] lacks {sorted(missing)}")
            elif not bad and section != "generate" and not 0 < r.get("min_s", 0) <= r["median_s"]:
                problems.append(f"{section}[{i}] timings not positive and ordered")
    return problems

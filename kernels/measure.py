"""GPU baseline measurements: per-op latencies and whole-model steps, as one JSON file.

Runs on a CUDA GPU, or on the CPU as a dry run with tiny shapes (``--dry-run``). Depends only
on torch, transformers and the standard library, so it runs on the lent GPU machines where
nothing can be installed: ``PYTHONPATH=. python3 -m kernels.measure --model llama2-7b --out
$OUT/h200.json``. ``llmcosim gpu-baseline measure`` calls the same code.

Method: median of ``repeat`` timings after ``warmup`` runs (CUDA events on GPU), random
weights (no download), weights rotated through copies larger than L2 for small ops so each
timing reads from HBM, CUDA-graph replay for whole-model decode steps (falls back to eager, and
says so, if capture fails). The file is rewritten after every section, and sections past
``budget_s`` are skipped (and listed), so a run cut short still leaves its data.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["SCHEMA", "device_info", "measure_all", "plan", "time_fn"]

SCHEMA = "llmcosim.gpu-baseline/2"  # /2 adds generate, attention_nomask, quant_ops, batch_steps
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _nvidia_smi(query: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host_cpu": platform.processor() or platform.machine(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency of the models
        info["transformers"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, sm_count=p.multi_processor_count,
                    memory_bytes=p.total_memory, cuda=torch.version.cuda,
                    l2_bytes=getattr(p, "L2_cache_size", None),
                    driver=_nvidia_smi("driver_version"),
                    clocks_mhz=_nvidia_smi("clocks.sm,clocks.mem,clocks.max.sm"),
                    power_limit_w=_nvidia_smi("power.limit"))
    else:
        info.update(name=f"CPU ({platform.machine()}, {os.cpu_count()} threads)")
    return info


def time_fn(fn: Callable[[int], Any], device: torch.device, *, warmup: int = 3,
            repeat: int = 10, inner: int = 1, graph: bool = False) -> list[float]:
    """Seconds per call of ``fn(i)`` (i counts calls, for weight rotation).

    Each of the ``repeat`` timings covers ``inner`` back-to-back calls and is divided by
    ``inner``. With ``graph`` (CUDA only) the ``inner`` calls are captured once as a CUDA graph
    and the replays are timed: the device time of the op with no host in the way. Without it,
    a small kernel's time is the host's launch rate (a 32 MB GEMV read 21.6 us on an H200 from
    queued eager calls, its HBM time is ~7 us).
    """
    cuda = device.type == "cuda"
    for i in range(warmup):
        fn(i)
    calls = warmup
    if graph and cuda:
        g = _capture(fn, device, inner)
        body: Callable[[int], Any] = lambda _: g.replay()  # noqa: E731
    else:
        def body(calls: int) -> None:
            for j in range(inner):
                fn(calls + j)
    times = []
    if cuda:
        torch.cuda.synchronize(device)
    for _ in range(repeat):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            body(calls)
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            body(calls)
            elapsed = time.perf_counter() - t0
        calls += inner
        times.append(elapsed / inner)
    return times


def _capture(fn: Callable[[int], Any], device: torch.device, inner: int) -> Any:
    """One CUDA graph of ``fn(0) .. fn(inner - 1)`` (warmed up on a side stream first)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for j in range(inner):
            fn(j)
    torch.cuda.current_stream(device).wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for j in range(inner):
            fn(j)
    return g


def _record(kind: str, shape: dict[str, int], dtype: str, times: list[float],
            **extra: Any) -> dict[str, Any]:
    return {"op": kind, "shape": shape, "dtype": dtype, "median_s": statistics.median(times),
            "min_s": min(times), "repeats": len(times), **extra}


def _copies(nbytes: int, l2_bytes: int | None) -> int:
    """How many weight copies to rotate so the working set exceeds L2 (and stays small)."""
    if not l2_bytes:
        return 1
    return max(1, min(256, -(-3 * l2_bytes // max(nbytes, 1))))


def measure_linear(device: torch.device, dtype: str, ms: list[int], k: int, n: int,
                   l2: int | None, **kw: Any) -> list[dict[str, Any]]:
    dt = _DTYPES[dtype]
    weights = [torch.randn(n, k, device=device, dtype=dt) for _ in range(_copies(2 * n * k, l2))]
    out = []
    for m in ms:
        x = torch.randn(m, k, device=device, dtype=dt)
        times = time_fn(lambda i, x=x: torch.nn.functional.linear(x, weights[i % len(weights)]),
                        device, **kw)
        out.append(_record("linear", {"m": m, "k": k, "n": n}, dtype, times,
                           flops=2 * m * k * n, weight_bytes=n * k * dt.itemsize,
                           weight_copies=len(weights)))
    return out


def measure_attention(device: torch.device, dtype: str, heads: int, head_dim: int,
                      cases: list[tuple[int, int]], l2: int | None = None,
                      **kw: Any) -> list[dict[str, Any]]:
    """SDPA with q query tokens over a cache of c (causal within the q new tokens); the K/V
    caches rotate through copies larger than L2, as a decode step reads them from HBM."""
    dt = _DTYPES[dtype]
    out = []
    for q, c in cases:
        kv_bytes = 2 * heads * (c + q) * head_dim * dt.itemsize
        qs = torch.randn(1, heads, q, head_dim, device=device, dtype=dt)
        kvs = [(torch.randn(1, heads, c + q, head_dim, device=device, dtype=dt),
                torch.randn(1, heads, c + q, head_dim, device=device, dtype=dt))
               for _ in range(_copies(kv_bytes, l2))]
        mask = torch.ones(q, c + q, device=device, dtype=torch.bool).tril(diagonal=c)

        def fn(i: int, qs=qs, kvs=kvs, mask=mask) -> torch.Tensor:
            ks, vs = kvs[i % len(kvs)]
            return torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)

        times = time_fn(fn, device, **kw)
        out.append(_record("attention", {"q": q, "context": c, "heads": heads,
                                         "head_dim": head_dim}, dtype, times,
                           flops=4 * heads * q * (c + q) * head_dim, kv_bytes=kv_bytes,
                           kv_copies=len(kvs)))
    return out


def _small_op(name: str, width: int, device: torch.device, dt: torch.dtype
              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """One of the small ops decoder layers run, as the traced models run it."""
    if name == "rmsnorm_hf":  # HF's RMSNorm module itself (LLaMA, Qwen2, TinyLlama): 8 kernels
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        return LlamaRMSNorm(width).to(device=device, dtype=dt)
    if name == "layernorm":  # OPT's LayerNorm: one fused kernel (aten.layer_norm)
        return torch.nn.LayerNorm(width, device=device, dtype=dt)
    if name == "add":
        return lambda x: x + x
    if name == "silu_mul":
        return lambda x: torch.nn.functional.silu(x) * x
    raise ValueError(f"unknown small op {name!r}")


def measure_elementwise(device: torch.device, dtype: str, cases: list[tuple[str, int, int]],
                        l2: int | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Small ops ``(name, rows, width)``: HF's RMSNorm, OPT's LayerNorm, the residual add and
    SiLU x up, at the widths the models run them; the inputs rotate through copies larger
    than L2 (``input_copies`` in each record), so mid-sized tensors are read from HBM and not
    from L2 (files without ``input_copies`` did not rotate; before 2026-11-27 05:20 UTC the
    norm was ``F.rms_norm``'s fused kernel, named ``rmsnorm``, which no traced model runs)."""
    dt = _DTYPES[dtype]
    out = []
    for name, rows, width in cases:
        xs = [torch.randn(rows, width, device=device, dtype=dt)
              for _ in range(_copies(rows * width * dt.itemsize, l2))]
        op = _small_op(name, width, device, dt)

        def fn(i: int, xs=xs, op=op) -> torch.Tensor:
            return op(xs[i % len(xs)])

        with torch.no_grad():
            times = time_fn(fn, device, **kw)
        out.append(_record(name, {"rows": rows, "hidden": width}, dtype, times,
                           bytes=2 * rows * width * dt.itemsize, input_copies=len(xs)))
    return out


def measure_graph_overhead(device: torch.device, dtype: str, lengths: list[int],
                           **kw: Any) -> list[dict[str, Any]]:
    """Per-kernel time inside CUDA graphs of ``n`` dependent small kernels of mixed types
    (mul, add, SiLU, casts, neg, a row reduction): what each node of a replayed model step
    costs beyond its own work, for graphs as long as a model's (~1,000 kernels)."""
    dt = _DTYPES[dtype]
    x = torch.randn(1, 4096, device=device, dtype=dt)
    steps = [lambda y: y * 1.0001, lambda y: y + x, torch.nn.functional.silu,
             lambda y: y.to(torch.float32), lambda y: y.to(dt), torch.neg,
             lambda y: y - y.mean(-1, keepdim=True)]
    out = []
    for n in lengths:
        def chain(_: int, n: int = n) -> torch.Tensor:
            y = x
            for j in range(n):
                y = steps[j % len(steps)](y)
            return y

        times = time_fn(chain, device, **{**kw, "inner": 1})
        out.append(_record("graph_chain", {"kernels": n, "rows": 1, "hidden": 4096}, dtype,
                           [t / n for t in times], note="seconds per kernel"))
    return out


def plan(dry_run: bool) -> dict[str, Any]:
    """The shapes measured: LLaMA-2-7B/13B, OPT-6.7B, TinyLlama, Qwen2 layers (tiny if dry)."""
    if dry_run:
        return {"ms": [1, 4, 16, 64], "linear": [(256, 512), (512, 256)],
                "heads": 4, "head_dim": 32, "attention": [(1, 64), (4, 64), (1, 256), (16, 0)],
                "small": _small_cases([1, 64], (256, 512), [(128, 384)], [64])}
    ms = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    linear = [(4096, 4096), (4096, 11008), (11008, 4096), (4096, 32000),  # llama2-7b
              (5120, 5120), (5120, 13824), (13824, 5120),                 # llama2-13b
              (4096, 16384), (16384, 4096),                               # opt-6.7b
              (2048, 2048), (2048, 5632), (5632, 2048),                   # tinyllama-1.1b
              (896, 4864), (1024, 1024), (8192, 8192)]                    # qwen2-0.5b, span
    # odd q makes the key length (c + q) odd: PyTorch's masked SDPA then takes a slower path
    attention = [(q, c) for c in (128, 512, 1024, 2048, 4096) for q in (1, 2, 3, 4, 5, 8, 16)]
    attention += [(128, 0), (512, 0), (2048, 0)]
    return {"ms": ms, "linear": linear, "heads": 32, "head_dim": 128, "attention": attention,
            # LLaMA-2-7B widths at every row count; TinyLlama's and LLaMA-2-13B's at 512 rows
            "small": _small_cases([1, 16, 128, 512, 2048], (4096, 11008),
                                  [(2048, 5632), (5120, 13824)], [512])}


def _small_cases(rows: list[int], widths: tuple[int, int], other: list[tuple[int, int]],
                 other_rows: list[int]) -> list[tuple[str, int, int]]:
    """(op, rows, width): norms and the residual add over the hidden size, SiLU x up over the
    MLP's intermediate size, for the main model's ``widths`` and the ``other`` models'."""
    def at(hidden: int, inter: int, rs: list[int]) -> list[tuple[str, int, int]]:
        return [(op, r, inter if op == "silu_mul" else hidden) for r in rs
                for op in ("rmsnorm_hf", "layernorm", "add", "silu_mul")]
    return at(*widths, rows) + [c for w in other for c in at(*w, other_rows)]


def _sections(device: torch.device, dtype: str, dry_run: bool, model: str | None,
              l2: int | None, kw: dict[str, Any],
              deadline: float | None) -> list[tuple[str, Callable[[], Any]]]:
    p = plan(dry_run)
    # per-op: 20 calls per timing, replayed from a CUDA graph (device time, no host gaps)
    okw = {**kw, "inner": 20, "graph": True} if device.type == "cuda" else kw
    sections: list[tuple[str, Callable[[], Any]]] = []
    from kernels import measure_extra as mx

    # issue 19's sections first: the older ones have three runs per device already
    sections += [
        ("generate", lambda: mx.measure_generate(device, dtype=dtype, dry_run=dry_run,
                                                 deadline=deadline, **kw)),
        ("attention_nomask", lambda: mx.measure_attention_nomask(
            device, dtype=dtype, dry_run=dry_run, l2=l2, **okw)),
        ("quant_ops", lambda: mx.measure_quant(device, dtype=dtype, dry_run=dry_run, l2=l2,
                                               **okw)),
        ("batch_steps", lambda: mx.measure_batch_steps(device, dtype=dtype, dry_run=dry_run,
                                                       deadline=deadline, **kw))]
    if model is not None:
        from kernels import measure_model as mm

        sections.append(("decode_steps", lambda: mm.measure_decode_steps(
            device, model, dtype=dtype, dry_run=dry_run, **kw)))
    sections.append(("ops", lambda: [r for k, n in p["linear"] for r in measure_linear(
        device, dtype, p["ms"], k, n, l2, **okw)]))
    sections.append(("ops", lambda: measure_attention(device, dtype, p["heads"], p["head_dim"],
                                                      p["attention"], l2, **okw)))
    sections.append(("ops", lambda: measure_elementwise(device, dtype, p["small"], l2, **okw)))
    sections.append(("ops", lambda: measure_graph_overhead(
        device, dtype, [7, 70, 700] if dry_run else [7, 70, 700, 1400], **okw)))
    if model is not None:
        sections.append(("model_steps", lambda: mm.measure_model_steps(
            device, model, dtype=dtype, dry_run=dry_run, **kw)))
        sections.append(("power", lambda: mm.measure_power(device, model, dtype=dtype,
                                                           dry_run=dry_run)))
        sections.append(("decode_steps", lambda: mm.measure_other_models(
            device, dtype=dtype, dry_run=dry_run, deadline=deadline, **kw)))
    return sections


def measure_all(device: torch.device, *, dtype: str = "float16", dry_run: bool = False,
                model: str | None = None, warmup: int = 3, repeat: int = 10,
                budget_s: float | None = None, save: Path | None = None,
                only: set[str] | None = None, command: str | None = None) -> dict[str, Any]:
    """Every measurement for ``device``; tiny shapes when ``dry_run``.

    Sections run in order of importance; each one is appended to the result (and the result
    written to ``save``) as soon as it finishes. Once ``budget_s`` seconds have passed the
    remaining sections are skipped and named in ``result["skipped"]``.
    """
    t0 = time.monotonic()
    info = device_info(device)
    kw = {"warmup": warmup, "repeat": repeat}
    result: dict[str, Any] = {"schema": SCHEMA, "device": info, "dry_run": dry_run,
                              "command": command,
                              "method": {"statistic": "median", **kw,
                                         "ops": "20 calls per timing, CUDA-graph replay"
                                         if device.type == "cuda" else "one call per timing"},
                              "ops": [],
                              "skipped": [], "errors": [], "section_s": []}
    deadline = None if budget_s is None else t0 + budget_s
    for name, run in _sections(device, dtype, dry_run, model, info.get("l2_bytes"), kw,
                               deadline):
        if only is not None and name not in only:
            continue
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            result["skipped"].append(name)
            continue
        t1 = time.monotonic()
        try:
            rows = run()
        except Exception as e:  # one broken section must not lose the others
            if device.type != "cuda":
                raise
            result["errors"].append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
            rows = []
        if isinstance(rows, dict):
            result[name] = rows
        else:
            result.setdefault(name, []).extend(rows)
        result["section_s"].append([name, round(time.monotonic() - t1, 2)])
        print(f"[{time.monotonic() - t0:7.1f} s] {name}: {len(rows)} records", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if save is not None:
            _write(save, result)
    result["wall_s"] = round(time.monotonic() - t0, 2)
    return result


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    # runs alone on the GPU machines (no repo imports), so not models.argparser.StrictParser
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--model", default=None, help="zoo model for whole-model steps")
    ap.add_argument("--dtype", default="float16", choices=list(_DTYPES))
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes (CPU check)")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip the sections that would start after this many seconds")
    ap.add_argument("--only", default=None,
                    help="comma list of sections: generate, attention_nomask, quant_ops, "
                         "batch_steps, decode_steps, ops, model_steps, power")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") \
        if args.device == "auto" else torch.device(args.device)
    if dev.type == "cpu" and not args.dry_run:
        ap.error("no CUDA device: pass --dry-run for a CPU check with tiny shapes")
    out = Path(args.out)
    # the command that made the file: the prepared script names itself, else this module's
    command = os.environ.get("LLMCOSIM_MEASURE_COMMAND") or " ".join(
        ["python3 -m kernels.measure", *(sys.argv[1:] if argv is None else argv)])
    data = measure_all(dev, dtype=args.dtype, dry_run=args.dry_run, model=args.model,
                       repeat=args.repeat, budget_s=args.budget_s, save=out,
                       only=set(args.only.split(",")) if args.only else None, command=command)
    _write(out, data)
    print(f"wrote {len(data['ops'])} op timings, {len(data.get('decode_steps', []))} decode "
          f"steps for {data['device']['name']} to {out} in {data['wall_s']} s; skipped "
          f"{data['skipped'] or 'nothing'}; errors {data['errors'] or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

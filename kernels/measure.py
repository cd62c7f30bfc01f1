"""GPU baseline measurements: per-op latencies and whole-model decode steps, as one JSON file.

Runs on a CUDA GPU, or on the CPU as a dry run with tiny shapes (``--dry-run``). Depends only
on torch, transformers and the standard library, so it runs on the lent GPU machines where
nothing can be installed: ``PYTHONPATH=. python3 -m kernels.measure --model llama2-7b --out
$OUT/h200.json``. ``llmcosim gpu-baseline measure`` calls the same code.

Method: median of ``repeat`` timings after ``warmup`` runs (CUDA events on GPU), random
weights (no download), weights rotated through copies larger than L2 for small ops so each
timing reads from HBM, CUDA-graph replay for whole-model decode steps (falls back to eager, and
says so, if capture fails).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["SCHEMA", "device_info", "measure_all", "time_fn"]

SCHEMA = "llmcosim.gpu-baseline/1"
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
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, sm_count=p.multi_processor_count,
                    memory_bytes=p.total_memory, cuda=torch.version.cuda,
                    l2_bytes=getattr(p, "L2_cache_size", None),
                    driver=_nvidia_smi("driver_version"),
                    clocks_mhz=_nvidia_smi("clocks.sm,clocks.mem,clocks.max.sm"))
    else:
        info.update(name=f"CPU ({platform.machine()}, {os.cpu_count()} threads)")
    return info


def time_fn(fn: Callable[[int], Any], device: torch.device, *, warmup: int = 3,
            repeat: int = 10) -> list[float]:
    """Seconds per call of ``fn(i)`` (i counts calls, for weight rotation)."""
    for i in range(warmup):
        fn(i)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for i in range(repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(warmup + i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for i in range(repeat):
            t0 = time.perf_counter()
            fn(warmup + i)
            times.append(time.perf_counter() - t0)
    return times


def _record(kind: str, shape: dict[str, int], dtype: str, times: list[float],
            **extra: Any) -> dict[str, Any]:
    return {"op": kind, "shape": shape, "dtype": dtype, "median_s": statistics.median(times),
            "min_s": min(times), "repeats": len(times), **extra}


def _copies(nbytes: int, l2_bytes: int | None) -> int:
    """How many weight copies to rotate so the working set exceeds L2 (and stays small)."""
    if not l2_bytes:
        return 1
    return max(1, min(16, -(-3 * l2_bytes // max(nbytes, 1))))


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
                      cases: list[tuple[int, int]], **kw: Any) -> list[dict[str, Any]]:
    """SDPA with q query tokens over a cache of c (causal within the q new tokens)."""
    dt = _DTYPES[dtype]
    out = []
    for q, c in cases:
        qs = torch.randn(1, heads, q, head_dim, device=device, dtype=dt)
        ks = torch.randn(1, heads, c + q, head_dim, device=device, dtype=dt)
        vs = torch.randn_like(ks)
        mask = torch.ones(q, c + q, device=device, dtype=torch.bool).tril(diagonal=c)
        fn = lambda i, qs=qs, ks=ks, vs=vs, mask=mask: \
            torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)  # noqa: E731
        times = time_fn(fn, device, **kw)
        out.append(_record("attention", {"q": q, "context": c, "heads": heads,
                                         "head_dim": head_dim}, dtype, times,
                           flops=4 * heads * q * (c + q) * head_dim,
                           kv_bytes=2 * heads * (c + q) * head_dim * dt.itemsize))
    return out


def measure_elementwise(device: torch.device, dtype: str, sizes: list[tuple[int, int]],
                        **kw: Any) -> list[dict[str, Any]]:
    dt = _DTYPES[dtype]
    out = []
    for rows, hidden in sizes:
        x = torch.randn(rows, hidden, device=device, dtype=dt)
        w = torch.randn(hidden, device=device, dtype=dt)
        norm = lambda i, x=x, w=w: torch.nn.functional.rms_norm(x, (x.shape[-1],), w)  # noqa: E731
        out.append(_record("rmsnorm", {"rows": rows, "hidden": hidden}, dtype,
                           time_fn(norm, device, **kw), bytes=2 * x.numel() * dt.itemsize))
        add = lambda i, x=x: x + x  # noqa: E731
        out.append(_record("add", {"rows": rows, "hidden": hidden}, dtype,
                           time_fn(add, device, **kw), bytes=2 * x.numel() * dt.itemsize))
    return out


def measure_all(device: torch.device, *, dtype: str = "float16", dry_run: bool = False,
                model: str | None = None, warmup: int = 3, repeat: int = 10) -> dict[str, Any]:
    """Every measurement for ``device``; tiny shapes when ``dry_run``."""
    info = device_info(device)
    kw = {"warmup": warmup, "repeat": repeat}
    l2 = info.get("l2_bytes")
    if dry_run:
        ms, k, n = [1, 4, 16, 64], 256, 512
        heads, hd, attn = 4, 32, [(1, 64), (4, 64), (1, 256), (16, 0)]
        sizes = [(1, 256), (64, 256)]
    else:  # LLaMA-2-7B shapes: hidden 4096, MLP 11008, 32 heads x 128
        ms, k, n = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048], 4096, 11008
        heads, hd = 32, 128
        attn = [(q, c) for c in (128, 512, 2048) for q in (1, 2, 4, 8, 16)] + [(128, 0),
                                                                                (512, 0)]
        sizes = [(1, 4096), (16, 4096), (128, 4096), (2048, 4096)]
    result: dict[str, Any] = {"schema": SCHEMA, "device": info, "dry_run": dry_run,
                              "method": {"statistic": "median", **kw}, "ops": []}
    result["ops"] += measure_linear(device, dtype, ms, k, n, l2, **kw)
    result["ops"] += measure_linear(device, dtype, ms, n, k, l2, **kw)
    result["ops"] += measure_attention(device, dtype, heads, hd, attn, **kw)
    result["ops"] += measure_elementwise(device, dtype, sizes, **kw)
    if model is not None:
        from kernels.measure_model import measure_decode_steps

        result["decode_steps"] = measure_decode_steps(device, model, dtype=dtype,
                                                      dry_run=dry_run, **kw)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--model", default=None, help="zoo model for whole-model decode steps")
    ap.add_argument("--dtype", default="float16", choices=list(_DTYPES))
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes (CPU check)")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") \
        if args.device == "auto" else torch.device(args.device)
    if dev.type == "cpu" and not args.dry_run:
        ap.error("no CUDA device: pass --dry-run for a CPU check with tiny shapes")
    data = measure_all(dev, dtype=args.dtype, dry_run=args.dry_run, model=args.model,
                       repeat=args.repeat)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print(f"wrote {len(data['ops'])} op timings"
          + (f" and {len(data.get('decode_steps', []))} decode steps" if args.model else "")
          + f" for {data['device']['name']} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

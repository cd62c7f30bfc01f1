"""Which kernels one HF decode/verify step launches, and their device times (torch.profiler).

A development probe for the GPU model's lowering (``sim.gpu.model.kernels``): it lists every
kernel of an eager step of a few-layer copy of a zoo model, so the lowering's kernel count per
layer can be checked against what PyTorch really launches. Also times a chain of dependent
small kernels in a CUDA graph (the per-kernel cost inside a replayed step).

    PYTHONPATH=. python3 -m kernels.profile_step --out $OUT/profile.json
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import torch

from kernels.measure import device_info, time_fn
from kernels.measure_model import _eager_step, _quiet, build_model
from models.argparser import StrictParser

__all__ = ["profile_step"]


def profile_step(model_name: str, q: int, context: int, layers: int,
                 device: torch.device) -> dict[str, Any]:
    model = build_model(model_name, torch.float16, device, layers=layers)
    with _quiet():
        _eager_step(model, q, context, device, torch.float16, warmup=2, repeat=2)
        acts = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=acts) as prof:
            _eager_step(model, q, context, device, torch.float16, warmup=0, repeat=1)
    kern = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    names = Counter(e.name[:90] for e in kern)
    per = {}
    for e in kern:
        per.setdefault(e.name[:90], []).append(e.device_time)
    return {"model": model_name, "q": q, "context": context, "layers": layers,
            "kernels": len(kern), "device_us": sum(e.device_time for e in kern),
            "by_name": [{"name": n, "count": c, "us": sum(per[n])} for n, c in
                        names.most_common()]}


def chain(device: torch.device, n: int = 40) -> dict[str, float]:
    x = torch.randn(1, 4096, device=device, dtype=torch.float16)

    def dep(_: int) -> None:
        y = x
        for _ in range(n):
            y = y * 1.0001

    def ind(_: int) -> None:
        for _ in range(n):
            x * 1.0001

    out = {}
    for name, fn in (("dependent", dep), ("independent", ind)):
        t = time_fn(fn, device, warmup=3, repeat=10, inner=1, graph=device.type == "cuda")
        out[name + "_us_per_kernel"] = sorted(t)[len(t) // 2] / n * 1e6
    return out


def main() -> int:
    ap = StrictParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    res: dict[str, Any] = {"device": device_info(dev), "chain": chain(dev), "steps": []}
    for name in ("llama2-7b", "tinyllama-1.1b", "qwen2-0.5b", "opt-6.7b"):
        for q in (1, 16):
            res["steps"].append(profile_step(name, q, 512, args.layers, dev))
            print(name, q, res["steps"][-1]["kernels"], round(res["steps"][-1]["device_us"]),
                  flush=True)
    print(res["chain"])
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How small kernels' times depend on rows and width: a development probe for the GPU model.

The per-op check misses on small kernels (docs/gpu.md, "What the per-op check misses"): HF's
RMSNorm at 16 rows, a fused LayerNorm at another width, SiLU x up where its intermediate fits
in L2. This sweeps those ops over rows and widths with the measurement's own timing (CUDA-graph
replay, inputs rotated past L2), so a model of them can be fitted on some points and checked on
others. The model reads these files as extra per-op rows, held out but for the ends of the
norms' width sweeps (``sim.gpu.calibrate``); ``--what kernels`` writes per-kernel profiles,
which it does not read (they are the evidence for its kernel types).

    PYTHONPATH=. python3 -m kernels.probe_small --out $OUT/small.json
"""

from __future__ import annotations

import json
from typing import Any

import torch

from kernels.measure import device_info, measure_attention, measure_elementwise, measure_linear
from models.argparser import StrictParser

__all__ = ["PROFILE_SCHEMA", "SCHEMA", "cases", "cases_l2", "probe", "probe_kernels", "probe_l2",
           "probe_verify"]

SCHEMA = "llmcosim.small-op-probe/1"
PROFILE_SCHEMA = "llmcosim.small-op-kernels/1"  # per-kernel device times (not read by the model)


def cases(dry_run: bool = False) -> list[tuple[str, int, int]]:
    """(op, rows, width): each norm over rows at width 4096 and over widths at 1 and 512 rows;
    SiLU x up and the add over rows at LLaMA-2-7B's widths."""
    rows = [1, 4, 64] if dry_run else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    widths = [128, 256] if dry_run else [896, 2048, 4096, 5120, 8192]
    out = [(op, r, 4096) for op in ("rmsnorm_hf", "layernorm", "add") for r in rows]
    out += [(op, r, w) for op in ("rmsnorm_hf", "layernorm") for w in widths
            for r in (1, 512 if not dry_run else 4) if w != 4096]
    out += [("silu_mul", r, 256 if dry_run else 11008) for r in rows]
    return out


def cases_l2(dry_run: bool = False) -> list[tuple[str, int, int]]:
    """(op, rows, width) that test two hypotheses of the model, each with a threshold the
    hypothesis predicts before the data are seen:

    - a fused LayerNorm row is one block of 128 threads, 4 halves per load (PyTorch's
      vectorised layer-norm launch, ``num_threads()`` of ``ATen/native/cuda/thread_constants.h``):
      one row's time is flat up to width 512 and then grows by one step per 512;
    - an intermediate that a multi-kernel op writes and its next kernel reads comes from L2
      only while the producing kernel's whole footprint fits in one L2 partition (half the
      L2: 25 MiB on the H100, 30 MiB on the H200): SiLU x up at width 11,008 up to ~595 rows
      on the H100 and ~714 on the H200; HF's RMSNorm (fp32 intermediates) at width 4,096 up to
      ~800 and ~960 rows. (Measured: the first held on both GPUs; SiLU x up showed reuse that
      fades past the threshold, RMSNorm no threshold at all: see ``sim.gpu.model``.)"""
    if dry_run:
        return [("layernorm", 1, w) for w in (128, 640)] + [("silu_mul", r, 256) for r in (4, 8)]
    out = [("layernorm", 1, w) for w in (128, 256, 384, 512, 640, 768, 1024, 1536, 2048, 3072,
                                          4096, 6144, 8192, 12288, 16384)]
    out += [("silu_mul", r, 11008) for r in (256, 384, 448, 512, 576, 640, 704, 768, 832, 896,
                                              1024, 1280, 1536)]
    out += [("rmsnorm_hf", r, 4096) for r in (512, 640, 768, 832, 896, 960, 1024, 1152, 1280,
                                               1536)]
    out += [("add", r, 4096) for r in (512, 1024, 1536, 2048, 3072, 4096)]
    return out


def _timing(device: torch.device) -> tuple[dict[str, Any], int | None]:
    """The measurement's timing (20 calls replayed from a CUDA graph) and the L2 size."""
    if device.type != "cuda":
        return {"warmup": 3, "repeat": 10}, None
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    return {"warmup": 3, "repeat": 10, "inner": 20, "graph": True}, l2


def probe(device: torch.device, dry_run: bool = False) -> dict[str, Any]:
    kw, l2 = _timing(device)
    return {"schema": SCHEMA, "device": device_info(device), "dry_run": dry_run,
            "ops": measure_elementwise(device, "float16", cases(dry_run), l2, **kw)}


def probe_l2(device: torch.device, dry_run: bool = False) -> dict[str, Any]:
    kw, l2 = _timing(device)
    return {"schema": SCHEMA, "device": device_info(device), "dry_run": dry_run,
            "ops": measure_elementwise(device, "float16", cases_l2(dry_run), l2, **kw)}


def probe_kernels(device: torch.device, dry_run: bool = False) -> dict[str, Any]:
    """Every kernel each small op launches, with its device time (torch.profiler, eager
    calls on rotated inputs): which of HF's RMSNorm's eight kernels grow with rows and width."""
    from kernels.measure import _copies, _small_op

    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    l2 = _timing(device)[1]
    rows = [1, 4, 16] if dry_run else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    w = 256 if dry_run else 4096
    cases = [("rmsnorm_hf", r, w) for r in rows] + [("add", r, w) for r in rows]
    cases += [("silu_mul", r, 512 if dry_run else 11008) for r in rows]
    cases += [("rmsnorm_hf", r, x) for r in (1, 512) for x in
              ((128, 512) if dry_run else (896, 2048, 8192))]
    calls = 4 if dry_run else 20
    out = []
    for name, r, width in cases:
        xs = [torch.randn(r, width, device=device, dtype=torch.float16)
              for _ in range(_copies(r * width * 2, l2))]
        op = _small_op(name, width, device, torch.float16)
        with torch.no_grad():
            for i in range(3):
                op(xs[i % len(xs)])
            if device.type == "cuda":
                torch.cuda.synchronize()
            with torch.profiler.profile(activities=acts) as prof:
                for i in range(calls):
                    op(xs[(i + 3) % len(xs)])
                if device.type == "cuda":
                    torch.cuda.synchronize()
        kern = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        per = len(kern) // calls if kern else 0
        slots = [sorted(e.device_time for e in kern[j::per]) for j in range(per)] if per else []
        out.append({"op": name, "shape": {"rows": r, "hidden": width},
                    "kernels": [{"name": kern[j].name[:120], "median_us": t[len(t) // 2]}
                                for j, t in enumerate(slots)]})
    return {"schema": PROFILE_SCHEMA, "device": device_info(device), "dry_run": dry_run,
            "profiles": out}


def probe_verify(device: torch.device, dry_run: bool = False) -> dict[str, Any]:
    """LLaMA-2-7B's GEMMs and SDPA at every query count 1..16 of a verify step (the baseline
    measures 1, 2, 4, 8, 16 only; whole steps at q = 3 missed by -12% before it found the
    slower SDPA path over odd key lengths)."""
    kw, l2 = _timing(device)
    ms = [1, 2, 3] if dry_run else list(range(1, 17))
    shapes = [(256, 512)] if dry_run else [(4096, 4096), (4096, 11008), (11008, 4096)]
    heads, dim, ctx = (4, 32, 64) if dry_run else (32, 128, 2048)
    ops = [r for k, n in shapes for r in measure_linear(device, "float16", ms, k, n, l2, **kw)]
    ops += measure_attention(device, "float16", heads, dim, [(q, ctx) for q in ms], l2, **kw)
    return {"schema": SCHEMA, "device": device_info(device), "dry_run": dry_run, "ops": ops}


def main(argv: list[str] | None = None) -> int:
    ap = StrictParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", choices=("small", "verify", "l2", "kernels"), default="small",
                    help="small kernels over rows and widths, GEMM/SDPA at q = 1..16, or the "
                         "layer-norm launch and L2-reuse thresholds (cases_l2), or each small op's "
                         "kernels (torch.profiler)")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    run = {"small": probe, "verify": probe_verify, "l2": probe_l2,
           "kernels": probe_kernels}[args.what]
    data = run(torch.device("cuda" if cuda else "cpu"), dry_run=not cuda)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    n = len(data.get("ops", data.get("profiles", [])))
    print(f"wrote {n} records for {data['device']['name']} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

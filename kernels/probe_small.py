"""How small kernels' times depend on rows and width: a development probe for the GPU model.

The per-op check misses on small kernels (docs/gpu.md, "What the per-op check misses"): HF's
RMSNorm at 16 rows, a fused LayerNorm at another width, SiLU x up where its intermediate fits
in L2. This sweeps those ops over rows and widths with the measurement's own timing (CUDA-graph
replay, inputs rotated past L2), so a model of them can be fitted on some points and checked on
others. Not read by the model (its schema is not the baseline's).

    PYTHONPATH=. python3 -m kernels.probe_small --out $OUT/small.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from kernels.measure import device_info, measure_attention, measure_elementwise, measure_linear

__all__ = ["SCHEMA", "cases", "probe", "probe_verify"]

SCHEMA = "llmcosim.small-op-probe/1"


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", choices=("small", "verify"), default="small",
                    help="small kernels over rows and widths, or GEMM/SDPA at q = 1..16")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    run = probe if args.what == "small" else probe_verify
    data = run(torch.device("cuda" if cuda else "cpu"), dry_run=not cuda)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print(f"wrote {len(data['ops'])} timings for {data['device']['name']} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

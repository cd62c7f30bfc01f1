"""Wall time and peak memory of `llmcosim trace` runs, each in a fresh process, cache off.

Targets (issue 2): under 10 s and under 2 GiB each on the 2-core development machine.
Usage: python benchmarks/trace_bench.py [--repeat N] [--json out.json]
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from models.argparser import StrictParser

__all__ = ["CASES", "measure"]

CASES = {
    "llama2-7b decode, context 512": ["llama2-7b", "--phase", "decode", "--context", "512"],
    "llama2-7b prefill 2048": ["llama2-7b", "--phase", "prefill", "--tokens", "2048"],
}


def measure(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) of one `llmcosim trace ... --no-cache` process."""
    cmd = [sys.executable, "-m", "llmcosim", "trace", *args, "--no-cache"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: measure the largest first
    # or read it per run; each case here runs in order of growing size.
    return wall, max(peak_kib, before) / 2**20


def main() -> int:
    ap = StrictParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    rows = {}
    for name, case in CASES.items():
        runs = [measure(case) for _ in range(args.repeat)]
        walls = [w for w, _ in runs]
        rows[name] = {"wall_s_median": statistics.median(walls), "wall_s_max": max(walls),
                      "peak_rss_gib": max(m for _, m in runs)}
        print(f"{name:34s} wall {rows[name]['wall_s_median']:6.2f} s (max {max(walls):.2f}) "
              f"peak RSS {rows[name]['peak_rss_gib']:.2f} GiB")
    if args.json:
        meta = {"machine": platform.node(), "cpus": os.cpu_count(),
                "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "cases": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

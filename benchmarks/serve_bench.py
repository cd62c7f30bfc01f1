"""Serving simulation speed: 1,000 ShareGPT-like requests on HADES, FlightLLM U280 and H100.

Run as ``python benchmarks/serve_bench.py`` (LLMCOSIM_CACHE set; the first run traces the
grid graphs). Prints the table build (graphs from the cache + simulator calls) and the
scheduler run separately, per device, at a rate near each device's load. The serving-table
disk cache is off (``LLMCOSIM_SERVING_CACHE=0``), so every table is built.
"""

from __future__ import annotations

import os
import sys
import time

from _timing import timed

from models.zoo import get_model
from sim.serving.device import serve_device
from sim.serving.requests import load_lengths, poisson_requests
from sim.serving.scheduler import SchedulerConfig, simulate_serving
from sim.spec import load_preset

__all__: list[str] = []


def main(n: int = 1000) -> None:
    os.environ["LLMCOSIM_SERVING_CACHE"] = "0"   # time the builds, not a cached table
    entry = get_model("llama2-7b")
    lengths = load_lengths("configs/serving/sharegpt_like.toml")
    slo = {"ttft": 0.5, "tpot": 0.05}
    total = time.perf_counter()
    for hw, rate in (("hades", 2.0), ("flightllm-u280", 0.15), ("gpu-h100", 2.0)):
        reqs = poisson_requests(rate, n, *lengths, seed=0)
        spec = load_preset(hw)
        d = timed(f"{hw}: table + {n} requests at {rate}/s",
                  lambda spec=spec, reqs=reqs: serve_device(spec, entry, reqs,
                                                            SchedulerConfig(), slo))
        cfg = SchedulerConfig(512, d.metrics["max_batch"], d.metrics["kv_budget_tokens"],
                              whole_prompts=d.table.separate)
        timed(f"{hw}: scheduler alone ({d.metrics['iterations']} iterations)",
              lambda d=d, reqs=reqs, cfg=cfg: simulate_serving(d.table, reqs, cfg))
    print(f"{'total':62s} {time.perf_counter() - total:7.3f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

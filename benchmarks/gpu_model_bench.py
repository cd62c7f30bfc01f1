"""Calibrated GPU model speed: fitting on the measured data, and simulating LLaMA-2-7B
[prefill 128, decode 512] on each GPU preset (graph and HF eager), plus the whole
``gpu-baseline validate``. Run ``.venv/bin/python benchmarks/gpu_model_bench.py`` (graphs come
from the trace cache after the first run). Not a test.
"""

from __future__ import annotations

from _timing import timed

from models.cache import get_workload
from sim.gpu.calibrate import default_calibration
from sim.registry import run
from sim.spec import load_preset

__all__ = ["main"]


def main() -> None:
    w = timed("load LLaMA-2-7B workload (cached graphs)",
              lambda: get_workload("llama2-7b", prefill=128, decode=512))
    timed("fit on the H200 data (per-op classes)", lambda: default_calibration())
    timed("fit incl. eager host time (needs the decode graph)",
          lambda: default_calibration(None, True))
    for name in ("gpu-a100", "gpu-h100"):
        spec = load_preset(name)
        for stack in ("graph", "hf-eager"):
            r = timed(f"{name} {stack}: prefill 128 + 512 decode steps",
                      lambda spec=spec, stack=stack: run(spec, w, "calibrated", stack=stack))
            print(f"    {r.decode_tokens_per_s:.1f} tokens/s")
    from sim.gpu.validate import validate

    timed("gpu-baseline validate (fit + every held-out point)", lambda: validate())


if __name__ == "__main__":
    main()

"""FlightLLM simulation speed against issue 17's targets on the 2-core machine: one LLaMA2-7B
decode token on VHK158 under 0.2 s warm, a whole [prefill 128, decode 512] request under 10 s,
``--long``: a 2048-token prefill under 20 s. Reports each stage's wall and CPU time and the
simulated cycles per second; the token is timed both ways (whole program, and the periodic
path ``simulate`` takes: three short programs, extrapolated, ``sim/flightllm/periodic.py``).

Run ``.venv/bin/python benchmarks/flightllm_bench.py [--long]`` (the first run traces the
graphs with torch; later runs load them from the cache). Not a test.
"""

from __future__ import annotations

import sys
import time

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression
from models.cache import get_graph, get_workload
from sim.flightllm.engine_fast import run_fast
from sim.flightllm.simulate import clear_programs, simulate, simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles
from sim.spec import load_preset

__all__ = ["main"]


def _timed(label: str, fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(f"{label:52s} {dt:7.3f} s wall {dc:7.3f} s CPU")  # CPU: robust to shared cores
    return out, dt


def main() -> None:
    spec = load_preset("flightllm-vhk158")
    g, _ = _timed("decode graph ctx 512 (cache or trace)",
                  lambda: get_graph("llama2-7b", "decode", context=512))
    for rep in range(2):  # the first run includes numba's JIT/cache load
        tag = "first" if rep == 0 else "warm"
        cg, t1 = _timed(f"[{tag}] compression", lambda: apply_compression(g))
        prog, t2 = _timed(f"[{tag}] code generation",
                          lambda cg=cg: generate(cg, arch_of(spec)))
        _, t3 = _timed(f"[{tag}] per-instruction timing",
                       lambda prog=prog: fill_cycles(prog, spec))
        (_, fin), t4 = _timed(f"[{tag}] engine (numba)",
                              lambda prog=prog: run_fast(prog, spec.hbm_channels))
        cycles = int(max(f.max() for f in fin))
        total = t1 + t2 + t3 + t4
        print(f"[{tag}] one decode token: {total:.3f} s wall, {prog.total:,} instructions, "
              f"{cycles:,} cycles ({cycles / spec.clock_hz * 1e3:.2f} ms simulated), "
              f"{cycles / total / 1e6:.1f} M simulated cycles/s, engine alone "
              f"{cycles / max(t4, 1e-9) / 1e6:.0f} M cycles/s")
    clear_programs()   # every timing below compiles its programs (no reuse across stages)
    _timed("[warm] one decode token, periodic (what simulate runs)",
           lambda: simulate_graph(spec, apply_compression(g), periodic=True))
    w, _ = _timed("workload [prefill 128, decode 512]",
                  lambda: get_workload("llama2-7b", prefill=128, decode=512))
    clear_programs()
    r, dt = _timed("whole request (prefill + 33 decode buckets)", lambda: simulate(spec, w))
    print(f"request: prefill {r.prefill_ms:.1f} ms, decode {r.decode_ms_per_token:.3f} ms/token, "
          f"{r.extra['decode_buckets']} decode buckets, {dt:.1f} s wall")
    if "--long" in sys.argv:
        w, _ = _timed("workload [prefill 2048, decode 1]",
                      lambda: get_workload("llama2-7b", prefill=2048, decode=1))
        clear_programs()
        r, dt = _timed("prefill 2048 + one decode token", lambda: simulate(spec, w))
        print(f"long prefill: {r.prefill_ms:.1f} ms simulated, {dt:.1f} s wall")


if __name__ == "__main__":
    main()

"""HADES simulation speed: a 512-token speculative decode of LLaMA-2-7B with LLaMA-68M (< 30 s).

Run ``.venv/bin/python benchmarks/hades_bench.py`` (the first run traces the graphs, ~30 s of
torch; later runs load them from the cache). Not a test.
"""

from __future__ import annotations

from _timing import timed

from mapping.acceptance import IIDAcceptance
from mapping.spec_workload import build_speculative_workload
from mapping.speculation import SpecConfig, eagle2_like_tree
from models.workload import Workload
from sim.hades.simulate import simulate_cycle, simulate_speculative, speculative_roofline
from sim.perfetto import TraceWriter
from sim.spec import load_preset

__all__ = ["main"]


def main() -> None:
    hades, a100 = load_preset("hades"), load_preset("gpu-a100")
    chain = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.8))
    tree = SpecConfig(tree=eagle2_like_tree(), acceptance=IIDAcceptance(0.8))
    kw = {"prefill": 128, "decode": 512}
    w = timed("build workload (chain, graphs traced or cached)",
              lambda: build_speculative_workload("llama2-7b", "llama-68m", config=chain, **kw))
    wt = timed("build workload (EAGLE-2-like tree)",
               lambda: build_speculative_workload("llama2-7b", "llama-68m", config=tree, **kw))
    r = timed("hades event: 512-token speculative decode, chain γ=4",
              lambda: simulate_speculative(hades, w))
    timed("hades event: same, with a Perfetto trace",
          lambda: simulate_speculative(hades, w, TraceWriter()))
    timed("hades event: 512-token speculative decode, 60-node tree",
          lambda: simulate_speculative(hades, wt))
    plain = Workload(w.model, w.batch, w.prefill_tokens, w.decode_tokens, w.prefill,
                     w.decode_first, w.decode_last)
    timed("hades event: 512-token decode without speculation",
          lambda: simulate_cycle(hades, plain))
    timed("gpu-a100 roofline schedule, chain γ=4", lambda: speculative_roofline(a100, w))
    print(f"(hades chain: {r.decode_tokens_per_s:.1f} tokens/s, event loop "
          f"{r.extra['sim_wall_s']:.2f} s, {r.extra['rounds']} rounds)")


if __name__ == "__main__":
    main()

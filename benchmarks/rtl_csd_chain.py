"""CSD-Chain RTL benchmark: vectors/s under Icarus and Verilator, cycles per dot product.

Run: ``.venv/bin/python benchmarks/rtl_csd_chain.py [--vectors 2000]``. Vectors/s counts the
simulator process only (cocotb + simulator, after the model is built; stimulus generation and
Verilog conversion excluded), with the idle and backpressure inserters off. Cycles per dot
product: measured II (cycles per pass of K = 64) over the dot products a pass yields, next to
the sim/blocks model at K = 256.
"""

from __future__ import annotations

from fractions import Fraction

from rich.console import Console
from rich.table import Table

from models.argparser import StrictParser
from sim.blocks.csd_chain import csd_chain_timing
from verification.blocks import TIMING_K, BlockConfig
from verification.runner import ensure_built, run_config

__all__ = ["main"]

PATTERNS = {"dense": 16, "8:16": 8, "2:16": 2}


def main() -> None:
    ap = StrictParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=2000)
    ap.add_argument("--chain", type=int, default=16)
    args = ap.parse_args()
    table = Table(title=f"CSD-Chain RTL, chain {args.chain} DSP48s, {args.vectors} vectors")
    for col in ("pattern", "sim", "vectors/s", "cycles", "latency", "II @K=64",
                "cycles/dot @K=64", "model cycles/row @K=256", "result"):
        table.add_column(col, justify="right")
    for pattern, n in PATTERNS.items():
        cfg = BlockConfig.of("csd_chain", chain=args.chain, pattern=pattern)
        for sim in ("icarus", "verilator"):
            ensure_built(cfg, sim)
            res = run_config(cfg, sim=sim, vectors=args.vectors, seed=1, idle=0.0,
                             backpressure=0.0, tag="-bench")
            t = csd_chain_timing(args.chain, n, TIMING_K)
            per_dot = Fraction(res.ii[0], t.dots_per_pass) if res.ii else None
            model = csd_chain_timing(args.chain, n, 256).cycles_per_row
            table.add_row(pattern, sim, f"{args.vectors / res.sim_s:,.0f}", str(res.cycles),
                          str(res.latency), str(res.ii), str(per_dot), str(model),
                          "pass" if res.passed else res.message)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()

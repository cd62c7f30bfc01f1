"""Block adapters: construct each RTL block, generate seeded stimulus with reference outputs.

A transaction is one unit of work (a CSD-Chain pass, a dequant group, a verify request, a
softmax vector). :func:`make_vectors` returns, per input stream, the packed beats of every
transaction, the packed output beats the reference kernel predicts, and the latency/II that
``sim/blocks`` predicts. Stimulus is constrained-random: each transaction picks a mode
(uniform, extreme values, degenerate) so corner cases appear in every few hundred vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from sim.blocks.csd_chain import BLOCK_M, csd_chain_timing, parse_pattern
from sim.blocks.dequant import dequant_timing
from sim.blocks.sfu import softmax_timing
from sim.blocks.verifier import verifier_timing
from verification import gen

__all__ = ["BLOCKS", "BlockConfig", "Vectors", "build_component", "default_configs",
           "make_vectors", "slow_configs"]

BLOCKS = ("csd_chain", "dequant", "verifier", "sfu")
TIMING_K = 64  # CSD-Chain dot-product length used by the timing probe (4 beats)


@dataclass(frozen=True)
class BlockConfig:
    """One block with its construction parameters, e.g. csd_chain chain=16 pattern=2:16."""

    block: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, block: str, **params: Any) -> BlockConfig:
        if block not in BLOCKS:
            raise ValueError(f"block {block!r}: must be one of {', '.join(BLOCKS)}")
        return cls(block, tuple(sorted(params.items())))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def slug(self) -> str:
        parts = [f"{k}{str(v).replace(':', 'of')}" for k, v in self.params]
        return "-".join([self.block, *parts])

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params)


@dataclass
class Vectors:
    """Packed stimulus and expected outputs of one run."""

    inputs: dict[str, list[list[int]]]
    output: str
    expected: list[list[int]]
    expect_latency: int
    expect_ii: int
    anchor: str  # latency measured from the "first" or "last" input beat of a transaction
    meta: dict[str, Any] = field(default_factory=dict)


def build_component(cfg: BlockConfig):
    """The Amaranth component of ``cfg`` (imports rtl lazily)."""
    if cfg.block == "csd_chain":
        from rtl.csd_chain import CsdChain

        return CsdChain(**cfg.kwargs)
    if cfg.block == "dequant":
        from rtl.dequant import Dequant

        return Dequant(**cfg.kwargs)
    if cfg.block == "verifier":
        from rtl.verifier import Verifier

        return Verifier(**cfg.kwargs)
    from rtl.sfu import Softmax

    return Softmax(**cfg.kwargs)


def default_configs(block: str | None = None) -> list[BlockConfig]:
    """The configurations of the default test layer (every CSD pattern, every bit width)."""
    cfgs = [BlockConfig.of("csd_chain", chain=16, pattern=p)
            for p in ("2:16", "4:16", "8:16", "dense")]
    cfgs.append(BlockConfig.of("csd_chain", chain=32, pattern="8:16"))
    cfgs += [BlockConfig.of("dequant", bits=b, lanes=16, group=64) for b in (2, 3, 4, 8)]
    cfgs += [BlockConfig.of("verifier", mode="greedy", gamma=4, token_bits=16),
             BlockConfig.of("verifier", mode="sample", gamma=4, vocab=16)]
    cfgs.append(BlockConfig.of("sfu", n=64, lanes=16))
    return [c for c in cfgs if block is None or c.block == block]


def slow_configs(block: str | None = None) -> list[BlockConfig]:
    """Extra configurations of the slow layer."""
    cfgs = [BlockConfig.of("csd_chain", chain=8, pattern="2:16"),
            BlockConfig.of("dequant", bits=5, lanes=8, group=24),
            BlockConfig.of("verifier", mode="greedy", gamma=8, token_bits=17),
            BlockConfig.of("verifier", mode="sample", gamma=2, vocab=8),
            BlockConfig.of("sfu", n=32, lanes=8)]
    return [c for c in default_configs(block) + cfgs if block is None or c.block == block]


def _params(cfg: BlockConfig) -> SimpleNamespace:
    """The parameters a generator needs, without constructing (and not using) the component."""
    kw = dict(vocab=16, token_bits=16) | cfg.kwargs
    if cfg.block == "csd_chain":
        n = parse_pattern(kw["pattern"])
        kw |= {"n": n, "rows": kw["chain"] // n}
    return SimpleNamespace(**kw)


def make_vectors(cfg: BlockConfig, count: int, seed: int) -> Vectors:
    """``count`` seeded random transactions for ``cfg`` with reference outputs."""
    rng = np.random.default_rng(seed)
    kw = cfg.kwargs
    dut = _params(cfg)
    if cfg.block == "csd_chain":
        n = parse_pattern(kw["pattern"])
        t = csd_chain_timing(kw["chain"], n, TIMING_K)
        ins, exp = gen.csd_chain(dut, rng, count, timing_blocks=TIMING_K // BLOCK_M)
        return Vectors(ins, "y", exp, t.latency_cycles, t.ii_cycles, "last")
    if cfg.block == "dequant":
        t = dequant_timing(kw["bits"], kw["lanes"], kw["group"])
        ins, exp = gen.dequant(dut, rng, count)
        return Vectors(ins, "y", exp, t.latency_cycles, t.ii_cycles * t.beats_per_group, "first")
    if cfg.block == "verifier":
        t = verifier_timing(kw["mode"], kw["gamma"], kw.get("vocab", 16), kw.get("token_bits", 16))
        ins, exp = gen.verifier(dut, rng, count)
        return Vectors(ins, "y", exp, t.latency_cycles, t.ii_cycles, "last")
    t = softmax_timing(kw["n"], kw["lanes"])
    ins, exp = gen.softmax(dut, rng, count)
    return Vectors(ins, "y", exp, t.latency_cycles, t.ii_cycles, "last")

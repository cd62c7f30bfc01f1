"""cocotb suites under Icarus (every default configuration) and Verilator (the CSD-Chain).

Each run: a few hundred seeded constrained-random transactions, idle inserters on every input
stream, a backpressure inserter on the output, every beat compared bit-exactly with the
reference kernel, and latency/II compared exactly with ``sim/blocks``. The seed is in every
failure message; rerun with ``llmcosim rtl verify --block NAME --seed SEED``.
"""

from __future__ import annotations

import pytest

from verification.blocks import BlockConfig, default_configs
from verification.runner import run_config

VECTORS = 300
SEED = 5

# A fresh Verilator build costs ~30 s here, so the default layer builds one; tests/slow has
# one per block.
VERILATOR_CONFIGS = [BlockConfig.of("csd_chain", chain=16, pattern="2:16")]


def _check(res):
    assert res.passed, f"{res.config.slug} under {res.sim}: {res.message}"


@pytest.mark.parametrize("cfg", default_configs(), ids=lambda c: c.slug)
def test_icarus(cfg):
    _check(run_config(cfg, sim="icarus", vectors=VECTORS, seed=SEED))


@pytest.mark.parametrize("cfg", VERILATOR_CONFIGS, ids=lambda c: c.slug)
def test_verilator(cfg):
    _check(run_config(cfg, sim="verilator", vectors=VECTORS, seed=SEED))


def _mutate_expected(vec):
    txn = len(vec.expected) // 2
    vec.expected[txn][0] ^= 1 << 3  # one wrong bit in one reference beat


def _mutate_latency(vec):
    vec.expect_latency += 1


@pytest.mark.parametrize(("mutate", "words"), [(_mutate_expected, "differ from the reference"),
                                               (_mutate_latency, "latency measured")])
def test_harness_catches_a_wrong_reference(mutate, words):
    """The scoreboard and the timing check are not vacuous: a corrupted model must fail."""
    cfg = BlockConfig.of("verifier", mode="greedy", gamma=4, token_bits=16)
    res = run_config(cfg, sim="icarus", vectors=40, seed=SEED, mutate=mutate, tag="-mutant")
    assert not res.passed
    assert words in res.message
    if mutate is _mutate_latency:
        assert "[2] cycles" in res.message and "model 3 cycles" in res.message

"""Fast unit tests of every block in Amaranth's own simulator (no Verilog, no cocotb).

Each configuration gets a shared list of directed corner cases (the first transactions of the
seeded stream are the latency/II probe) plus random ones, run with idle and backpressure
inserters; outputs must equal the reference kernel and timing the ``sim/blocks`` model.
"""

from __future__ import annotations

import pytest

from verification.amaranth_tb import run_amaranth
from verification.blocks import BlockConfig, default_configs, make_vectors

VECTORS = 12
SEED = 20261126


@pytest.mark.parametrize("cfg", default_configs(), ids=lambda c: c.slug)
def test_block_matches_reference_and_timing(cfg: BlockConfig):
    vec = make_vectors(cfg, VECTORS, SEED)
    run = run_amaranth(cfg, vec, seed=SEED)
    for t, (got, want) in enumerate(zip(run.outputs, vec.expected, strict=True)):
        assert got == want, f"seed {SEED}: transaction {t}: got {got}, reference {want}"
    assert run.latency == [vec.expect_latency], (
        f"latency measured {run.latency} cycles, sim/blocks model {vec.expect_latency}")
    assert run.ii == [vec.expect_ii], f"II measured {run.ii} cycles, model {vec.expect_ii}"


BAD = [
    ("csd_chain", {"chain": 0, "pattern": "2:16"}, "chain length 0"),
    ("csd_chain", {"chain": 4, "pattern": "8:16"}, "cannot support"),
    ("csd_chain", {"chain": 16, "pattern": "3:16"}, "N:16"),
    ("csd_chain", {"chain": 16, "pattern": "2:8"}, "N:16"),
    ("csd_chain", {"chain": 7, "pattern": "dense"}, "DSP group"),
    ("dequant", {"bits": 1}, "2..8"),
    ("dequant", {"bits": 9}, "2..8"),
    ("dequant", {"bits": 4, "lanes": 16, "group": 24}, "multiple of lanes"),
    ("verifier", {"mode": "tree"}, "mode"),
    ("verifier", {"mode": "greedy", "gamma": 0}, "gamma"),
    ("verifier", {"mode": "sample", "vocab": 1}, "vocab"),
    ("sfu", {"n": 20, "lanes": 16}, "multiple of lanes"),
    ("sfu", {"n": 64, "lanes": 12}, "power of two"),
]


@pytest.mark.parametrize(("block", "params", "words"), BAD, ids=[f"{b}-{w}" for b, _, w in BAD])
def test_bad_parameters_raise_value_error(block, params, words):
    from verification.blocks import build_component

    with pytest.raises(ValueError, match=words):
        build_component(BlockConfig.of(block, **params))


def test_softmax_table_matches_the_kernel_table():
    from kernels.softmax import exp_table as kernel_table
    from rtl.sfu import exp_table as rtl_table

    assert rtl_table() == kernel_table(device="cpu").tolist()

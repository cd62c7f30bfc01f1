"""10,000 random vectors per block per configuration (Icarus), Verilator for every block, and
one Yosys synthesis whose DSP48E2 count must equal the simulator's assumption."""

from __future__ import annotations

import pytest

from verification.blocks import BlockConfig, slow_configs
from verification.runner import run_config

VECTORS = 10_000
SEED = 11

VERILATOR = [BlockConfig.of("csd_chain", chain=16, pattern=p) for p in ("2:16", "8:16", "dense")]
VERILATOR += [BlockConfig.of("dequant", bits=3, lanes=16, group=64),
              BlockConfig.of("verifier", mode="sample", gamma=4, vocab=16),
              BlockConfig.of("sfu", n=64, lanes=16)]


@pytest.mark.parametrize("cfg", slow_configs(), ids=lambda c: c.slug)
def test_icarus_10k(cfg):
    res = run_config(cfg, sim="icarus", vectors=VECTORS, seed=SEED)
    assert res.passed, f"{cfg.slug}: {res.message}"


@pytest.mark.parametrize("cfg", VERILATOR, ids=lambda c: c.slug)
def test_verilator_10k(cfg):
    res = run_config(cfg, sim="verilator", vectors=VECTORS, seed=SEED + 1)
    assert res.passed, f"{cfg.slug}: {res.message}"


def test_synth_dsp_count_matches_the_model():
    from verification.synth import synthesize

    rep = synthesize(BlockConfig.of("csd_chain", chain=16, pattern="2:16"))
    assert rep.dsp48e2 == rep.model_dsp48, (
        f"Yosys maps {rep.dsp48e2} DSP48E2, the simulator assumes {rep.model_dsp48}")

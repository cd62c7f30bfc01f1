"""sim/blocks timing functions: parameter checks, structure and the figures docs/rtl.md quotes.

The exact cycle agreement with the RTL is asserted by the hdl tests; these check the model on
its own (and that it stays importable without torch, amaranth or cocotb).
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest

from sim.blocks import csd_chain_timing, dequant_timing, softmax_timing, verifier_timing
from sim.blocks.csd_chain import parse_pattern


def test_imports_without_torch_amaranth_cocotb():
    code = ("import sys\nfor m in ('torch', 'amaranth', 'cocotb'): sys.modules[m] = None\n"
            "import sim.blocks, sim.blocks.csd_chain\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(("text", "n"), [("2:16", 2), ("4:16", 4), ("8:16", 8), ("16:16", 16),
                                         ("dense", 16), (8, 8)])
def test_parse_pattern(text, n):
    assert parse_pattern(text) == n


@pytest.mark.parametrize("text", ["3:16", "2:8", "x", "0:16", 5])
def test_parse_pattern_rejects(text):
    with pytest.raises(ValueError, match="N:16|pattern"):
        parse_pattern(text)


@pytest.mark.parametrize(("chain", "n", "words"), [(0, 2, "chain length 0"),
                                                   (6, 4, "cannot support"),
                                                   (5, 16, "DSP group"),
                                                   (512, 16, "1..256")])
def test_csd_rejects_bad_chains(chain, n, words):
    with pytest.raises(ValueError, match=words):
        csd_chain_timing(chain, n, 256)


def test_csd_rows_and_dsps():
    for n in (2, 4, 8, 16):
        t = csd_chain_timing(32, n, 256)
        assert t.rows_per_pass * n == 32  # one reduction-node output per segment of n DSP48s
        assert t.dsp48_count == 32
        assert t.macs_per_cycle == 64  # two packed MACs per DSP48
        assert t.ii_cycles == 256 // 16  # one 16-activation beat per cycle


def test_csd_cycles_per_dot_product_figures():
    """K = 256, 16-DSP chain: a dense row takes 16 cycles, 8:16 8 cycles, 2:16 2 cycles."""
    per_row = {n: csd_chain_timing(16, n, 256).cycles_per_row for n in (2, 8, 16)}
    assert per_row == {2: 2, 8: 8, 16: 16}
    assert csd_chain_timing(16, 2, 256).cycles_per_dot == Fraction(1)


def test_csd_latency_grows_with_segment_depth():
    lat = [csd_chain_timing(16, n, 64).latency_cycles for n in (2, 4, 8, 16)]
    assert lat == sorted(lat) and len(set(lat)) == 4


def test_other_blocks():
    assert dequant_timing(3, 16, 64).beats_per_group == 4
    with pytest.raises(ValueError, match="2..8"):
        dequant_timing(1, 16, 64)
    assert verifier_timing("sample", 4).ii_cycles == 5  # γ+1 position beats per request
    assert verifier_timing("greedy", 4).ii_cycles == 1
    s = softmax_timing(64, 16)
    assert s.beats == 4 and s.ii_cycles > s.latency_cycles > s.beats
    with pytest.raises(ValueError, match="mode"):
        verifier_timing("tree", 4)

"""The recorded Yosys counts replay: re-synthesizing the smallest configuration of
configs/resources/rtl_synth.json gives the same counts (same Yosys and Amaranth versions)."""

from __future__ import annotations

import pytest

from sim.flightllm.resources import load_synth_data
from verification.resource_synth import synth_entry, yosys_version

COUNTS = ("dsp48e2", "lut", "ff", "carry", "bram36", "uram288", "lutram")


def test_smallest_entry_resynthesizes_to_the_recorded_counts():
    data = load_synth_data()
    small = min(data.values(), key=lambda e: e["lut"] + e["ff"])
    if yosys_version() != small["yosys"]:
        pytest.skip(f"recorded with {small['yosys']}, installed {yosys_version()}")
    fresh = synth_entry(small["block"], small["params"], tuple(small["options"]))
    assert fresh["verilog_sha256"] == small["verilog_sha256"], "the block's Verilog changed"
    assert fresh["flow"] == small["flow"]
    assert {k: fresh[k] for k in COUNTS} == {k: small[k] for k in COUNTS}

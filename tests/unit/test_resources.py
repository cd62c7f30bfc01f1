"""FPGA resource model (sim/flightllm/resources.py), its CLI and its sweep columns.

Per-block counts come from the committed configs/resources/rtl_synth.json (no Yosys run here;
tests/hdl/test_resource_synth.py re-synthesizes one entry and compares).
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from sim.flightllm.resources import (
    CSD_PATTERNS,
    bram36_per_bank,
    buffer_banks,
    entry_key,
    estimate,
    load_synth_data,
    uram288_per_bank,
)
from sim.spec import SpecError, load_preset, spec_from_dict, validate
from sweeps import Store, parse_sweep, run_sweep
from sweeps.analysis import load, pareto, where
from sweeps.resources import RESOURCE_METRICS, resource_columns
from tests.unit.test_sweep_run import toy_workload


@pytest.fixture(scope="module")
def u280():
    return load_preset("flightllm-u280")


def test_data_file_has_provenance_for_every_entry():
    data = load_synth_data()
    assert data, "configs/resources/rtl_synth.json is missing"
    for key, e in data.items():
        assert key == entry_key(e["block"], e["params"], e["options"])
        assert e["yosys"].startswith("Yosys") and e["date"] and "synth_xilinx" in e["command"]
        assert e["flow"] in ("abc9", "abc") and e["verilog_sha256"]


def test_u280_totals_against_the_paper(u280):
    rep = estimate(u280)
    csd = rep.by_source["CSD-Chain"]
    # 3 cores x 4096 MACs / 2 MACs per DSP48: the MAC chains alone
    assert csd["dsp"] == 3 * 4096 / 2 == 6144
    assert rep.totals["dsp"] is not None and 6144 <= rep.totals["dsp"] <= u280.dsp_count
    # URAM: the A buffer (3 cores x 8 channels x 16 banks x 2), within the paper's 792
    assert rep.totals["uram288"] == 768 <= u280.reported_uram288_count
    assert rep.totals["bram36"] is not None
    assert rep.totals["bram36"] <= u280.reported_bram36_count
    assert not rep.notes


def test_configurable_chain_costs_the_max_over_patterns(u280):
    data = load_synth_data()
    rep = estimate(u280, data=data)
    chain = next(b for b in rep.blocks if b.block == "csd_chain")
    luts = [data[entry_key("csd_chain", {"chain": 16, "pattern": p})]["lut"]
            for p in CSD_PATTERNS]
    assert chain.per_instance["lut"] == max(luts) and len(set(luts)) > 1


def test_dequant_on_dsp_and_verifier_add_their_counts(u280):
    base = estimate(u280)
    dsp = estimate(u280, dequant_on_dsp=True)
    dq = next(b for b in dsp.blocks if b.block == "dequant")
    assert dsp.totals["dsp"] == base.totals["dsp"] + dq.count * dq.per_instance["dsp"]
    assert dq.per_instance["dsp"] > 0   # Yosys maps the scale multiply to a DSP48E2 per lane
    spec = estimate(u280, speculation=True)
    assert [b.block for b in spec.blocks][-1] == "verifier"
    assert spec.totals["lut"] > base.totals["lut"]


@pytest.mark.parametrize("depth, width, bram", [
    (4096, 256, 29),   # 4K x 9: 29 columns of one
    (512, 128, 2),     # 512 x 72: two side by side
    (4096, 8, 1),      # narrower than 9 bits: still a whole 4K x 9 column
    (1024, 36, 1),
    (1025, 36, 2),     # one row too deep: 2K x 18 x 2
    (32768, 1, 1),
])
def test_bram36_mapping_rule(depth, width, bram):
    assert bram36_per_bank(depth, width) == bram


@pytest.mark.parametrize("depth, width, uram", [
    (4096, 128, 2), (4096, 8, 1), (4096, 72, 1), (8192, 72, 2), (100, 73, 2)])
def test_uram288_mapping_rule(depth, width, uram):
    assert uram288_per_bank(depth, width) == uram


def _preset_dict(**changes):
    import tomllib

    from sim.spec import HW_DIR

    data = tomllib.loads((HW_DIR / "flightllm-u280.toml").read_text())
    return data | changes


@pytest.mark.parametrize("changes, msg", [
    ({"fpga_dsp_count": -1}, "fpga_dsp_count = -1 is out of range"),
    ({"fpga_uram288_count": 700}, "reported_uram288_count = 792 exceeds the device's "
                                  "fpga_uram288_count = 700"),
    ({"fpga_dsp_count": 6000}, "dsp_count = 6345 exceeds"),
])
def test_capacity_validation(changes, msg):
    with pytest.raises(SpecError, match=msg):
        spec_from_dict(_preset_dict(**changes), "u280.toml")


def test_presets_without_capacities_still_load():
    spec = load_preset("flightllm-vhk158")
    assert spec.fpga_dsp_count == 0 and spec.fpga_part == "XCVH1582"
    rep = estimate(spec)
    assert rep.totals["dsp"] == 4 * 4096 / 2 + 4 * 16   # chains + SFU, no verifier


def test_missing_configuration_is_none_with_a_note(u280):
    spec = dataclasses.replace(u280, sfu_elems_per_cycle=32)
    rep = estimate(spec)
    assert rep.totals["lut"] is None and rep.totals["dsp"] is None
    assert rep.by_source["CSD-Chain"]["dsp"] == 6144   # the others are still priced
    assert any("sfu:lanes=32,n=64" in n for n in rep.notes)
    point = SimpleNamespace(weight_bits=None, gamma=None)
    cols, notes = resource_columns(spec, point)
    assert cols["resources_lut"] is None and cols["resources_dsp_util"] is None and notes
    assert resource_columns(load_preset("gpu-h100"), point)[0] == \
        dict.fromkeys(RESOURCE_METRICS)


def test_cli_table_and_json(capsys):
    from llmcosim.cli import main

    assert main(["resources", "--hw", "flightllm-u280", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["resource"]: r for r in out["rows"]}
    assert rows["DSP"]["paper"] == 6345 and rows["URAM288"]["not_modelled"] == 24
    assert rows["BRAM36"]["device"] == 2016 and "HBM controllers" in out["not_modelled"]
    assert main(["resources", "--hw", "gpu-h100"]) == 2
    assert "FlightLLM presets only" in capsys.readouterr().err


def test_sweep_constraint_filters_a_point_over_the_device(tmp_path):
    toy = toy_workload(tmp_path / "toy.workload.json")
    text = f"""
[sweep]
name = "res"
constraints = ["resources_dsp <= fpga_dsp_count"]
[hardware]
preset = "flightllm-u280"
dsp_count = 0
mm_macs_per_cycle = [2048, 4096, 8192]
[workload]
model = "{toy}"
prefill = 16
decode = 8
"""
    s = run_sweep(parse_sweep(text), db=tmp_path / "r.db", workers=1, progress=False,
                  cache=False)
    assert s.counts == {"ok": 2, "filtered": 1}
    with Store(tmp_path / "r.db", readonly=True) as st:
        bad, = st.rows("filtered")
    assert "resources_dsp <= fpga_dsp_count" in bad["error"]   # 12,288 MAC DSPs > 9,024
    df, _ = load(tmp_path / "r.db")
    ok = where(df[df.status == "ok"], "resources_dsp > 6144")
    assert list(ok.mm_macs_per_cycle) == [4096] and 0 < ok.resources_dsp_util.iloc[0] < 1
    assert (df[df.status == "ok"].resources_uram == 768).all()
    # resources are minimised on a Pareto front: the smallest design is never dominated
    front = pareto(df[df.status == "ok"], "tokens_per_s,resources_dsp")
    assert 2048 in list(front.mm_macs_per_cycle)


_KNOBS = {"cores": (2, 3), "mm_macs_per_cycle": (2048, 4096, 8192),
          "mv_macs_per_cycle": (512, 1024, 2048), "weight_channels": (4, 8, 10),
          "a_buffer_bytes": (2 ** 19, 2 ** 20, 2 ** 22),
          "b_buffer_bytes": (2 ** 16, 2 ** 17, 2 ** 19), "global_buffer_bytes": (2 ** 16, 2 ** 17),
          "meta_buffer_bytes": (2 ** 15, 2 ** 16), "fsb_buffer_bytes": (2 ** 11, 2 ** 12)}


@pytest.mark.parametrize("knob", sorted(_KNOBS))
def test_totals_monotone_in_every_size_knob(u280, knob):
    """More of any size knob never needs fewer DSP, LUT, FF, BRAM36 or URAM288. (The SFU
    width is left out: only its 16-lane configuration is synthesized, others price as None.)"""
    big = estimate(dataclasses.replace(u280, **{knob: _KNOBS[knob][-1]})).totals
    assert all(v is not None for v in big.values())
    prev = None
    for v in _KNOBS[knob]:
        t = estimate(dataclasses.replace(u280, **{knob: v})).totals
        if prev is not None:
            for r, x in t.items():
                assert x is None or prev[r] is None or x >= prev[r], (knob, v, r)
        prev = t


def test_simulate_refuses_a_design_over_the_device(u280):
    """A design over the device's URAM is refused before anything runs, naming the resource,
    the need and the limit; the published design passes."""
    from models.errors import UserError
    from sim.flightllm.resources import check_device

    check_device(u280)
    big = dataclasses.replace(u280, a_buffer_bytes=4 * 2 ** 20)
    need = estimate(big).totals["uram288"]
    with pytest.raises(UserError, match=rf"needs {need:,.0f} URAM288 and XCU280 has 960"):
        check_device(big)
    with pytest.raises(UserError, match="DSP"):
        check_device(dataclasses.replace(u280, mm_macs_per_cycle=4 * 4096))


@pytest.mark.parametrize("b_bytes, extra", [(131072, 0), (16384, 4)])
def test_b_bank_is_as_wide_as_an_mv_of_mv_rows_reads(u280, b_bytes, extra):
    """An MV of m rows reads m x 16 B of vectors a cycle from B (the MM 32 B): the bank is
    max(32, 16 m) B wide. At 128 KB the wider, shallower bank costs no BRAM36; at 16 KB it
    takes 4 more per core (a 64 B x 256 bank is two 512-deep primitives wide by 1)."""
    def b_bank(m):
        s = validate(dataclasses.replace(u280, mv_rows=m, b_buffer_bytes=b_bytes))
        return next(b for b in buffer_banks(s) if b.name == "B")
    one, two, four = b_bank(1), b_bank(2), b_bank(4)
    assert (one.width_bits, two.width_bits, four.width_bits) == (256, 256, 512)
    assert four.depth * 64 == b_bytes
    assert four.per_bank - one.per_bank == extra

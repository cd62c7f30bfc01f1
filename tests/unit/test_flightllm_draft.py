"""FlightLLM draft placement knobs (``draft_weights``, ``draft_engine``): TOML loading and
validation, the URAM fit, on-chip weight loads, the separate engine's spec."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from mapping.flightllm.compression import apply_compression
from mapping.flightllm.synthetic import llama_like
from models.errors import UserError
from models.graph import Phase
from sim.flightllm.draft import (
    URAM288_BYTES,
    check_draft_fits,
    draft_engine_spec,
    free_uram288,
    onchip_weight_bytes,
)
from sim.flightllm.simulate import simulate_graph
from sim.spec import HW_DIR, SpecError, load_preset, spec_from_dict, validate

SPEC = load_preset("flightllm-u280")
SMALL = {"layers": 2, "hidden": 256, "heads": 4, "ffn": 512, "vocab": 1024}


def _toml(**over) -> dict:
    data = tomllib.loads((HW_DIR / "flightllm-u280.toml").read_text())
    return {**data, **over}


def test_defaults_are_todays_design():
    """Not naming the knobs gives shared + hbm: the preset is equal to one naming them."""
    named = spec_from_dict(_toml(draft_weights="hbm", draft_engine="shared"))
    assert named == SPEC and SPEC.draft_weights == "hbm" and SPEC.draft_engine == "shared"


@pytest.mark.parametrize("key, value, message", [
    ("draft_weights", "sram", r"draft_weights = 'sram'; allowed: hbm, uram"),
    ("draft_engine", "parallel", r"draft_engine = 'parallel'; allowed: shared, separate"),
    ("draft_macs_per_cycle", 0, r"draft_macs_per_cycle = 0 is out of range"),
    ("draft_weights", 3, r"draft_weights = 3: expected a string"),
])
def test_bad_knobs_are_refused_naming_field_and_allowed(key, value, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(_toml(**{key: value}), "u280.toml")


def test_separate_engine_larger_than_the_cores_is_refused():
    with pytest.raises(SpecError, match="more MV MACs than all the cores"):
        spec_from_dict(_toml(draft_engine="separate", draft_macs_per_cycle=4096))
    spec_from_dict(_toml(draft_engine="separate", draft_macs_per_cycle=3072))


def test_uram_fit_names_draft_bytes_and_free_uram():
    """U280: 960 URAM288 minus the A buffers' 768 (resources.py) leaves 192 free."""
    assert free_uram288(SPEC) == 960 - 768
    small = apply_compression(llama_like(phase=Phase.DECODE, context=64, **SMALL))
    need = check_draft_fits(SPEC, small, "tiny")
    assert need == -(-onchip_weight_bytes(small) // URAM288_BYTES)
    big = apply_compression(llama_like(phase=Phase.DECODE, context=64, layers=2, hidden=768,
                                       heads=12, ffn=3072, vocab=32000))
    with pytest.raises(UserError, match=r"draft big's weights take .* MB = \d+ URAM288.*"
                       r"leaves 192 free"):
        check_draft_fits(SPEC, big, "big")


def test_weights_on_chip_moves_no_weight_byte_and_is_not_slower():
    g = apply_compression(llama_like(phase=Phase.DECODE, context=64, **SMALL))
    hbm, uram = simulate_graph(SPEC, g), simulate_graph(SPEC, g, weights_on_chip=True)
    assert hbm.hbm_bytes - uram.hbm_bytes == onchip_weight_bytes(g)
    assert uram.cycles < hbm.cycles
    # periodic extrapolation keeps the option (three short programs, all on chip)
    deep = apply_compression(llama_like(phase=Phase.DECODE, context=64, **{**SMALL,
                                                                          "layers": 8}))
    assert simulate_graph(SPEC, deep, weights_on_chip=True, periodic=True).cycles == \
        simulate_graph(SPEC, deep, weights_on_chip=True).cycles


def test_separate_engine_uses_the_unowned_channels():
    """U280: 32 pseudo-channels over 3 cores = 10 each, 2 unowned for the draft engine."""
    d = validate(draft_engine_spec(dataclasses.replace(SPEC, draft_engine="separate",
                                                       draft_macs_per_cycle=512)))
    assert (d.cores, d.hbm_channels, d.weight_channels, d.mv_macs_per_cycle) == (1, 2, 2, 512)
    even = dataclasses.replace(SPEC, cores=4, draft_engine="separate")
    with pytest.raises(UserError, match="own all 32 HBM pseudo-channels"):
        draft_engine_spec(even)


def test_resources_count_the_draft_placement():
    """--speculation: a draft held in URAM adds its URAM288s; a separate engine its chains
    and buffers; the defaults (shared, hbm) add only the verifier, as before."""
    from sim.flightllm.resources import estimate

    base = estimate(SPEC, speculation=True).totals
    nbytes = 5_000_000
    uram = estimate(dataclasses.replace(SPEC, draft_weights="uram"), speculation=True,
                    draft_weight_bytes=nbytes)
    assert uram.totals["uram288"] - base["uram288"] == -(-nbytes // URAM288_BYTES) == 136
    assert estimate(dataclasses.replace(SPEC, draft_weights="uram"), speculation=True).notes
    sep = dataclasses.replace(SPEC, draft_engine="separate", draft_macs_per_cycle=512)
    s = estimate(sep, speculation=True).totals
    if base["dsp"] is not None:
        assert s["dsp"] > base["dsp"]
    assert s["uram288"] > base["uram288"]
    # the free URAM a draft may use shrinks by what the draft engine's buffers take
    assert free_uram288(sep) == SPEC.fpga_uram288_count - s["uram288"]
    assert estimate(SPEC).totals == estimate(SPEC, speculation=False,
                                             draft_weight_bytes=nbytes).totals


def _preset_file(tmp_path, **over) -> str:
    text = (HW_DIR / "flightllm-u280.toml").read_text()
    head, _, sources = text.partition("[sources]")
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in over.items())
    path = tmp_path / "u280-draft.toml"
    path.write_text(head + extra + "\n[sources]" + sources)
    return str(path)


def test_cli_refuses_a_bad_knob_naming_the_file_and_values(tmp_path, capsys):
    from llmcosim.cli import main

    path = _preset_file(tmp_path, draft_engine="beside")
    assert main(["simulate", "--hw", path, "--model", "llama2-7b"]) == 2
    err = capsys.readouterr().err
    assert "u280-draft.toml" in err and "draft_engine = 'beside'; allowed: shared, separate" \
        in err
    assert main(["resources", "--draft", "llama-68m"]) == 2
    assert "give --speculation too" in capsys.readouterr().err


def test_cli_resources_count_a_uram_draft(tmp_path, capsys, monkeypatch):
    import json

    import llmcosim.resources as res
    from llmcosim.cli import main

    monkeypatch.setattr(res, "_draft_bytes", lambda spec, draft: 5_000_000)
    path = _preset_file(tmp_path, draft_weights="uram")
    uram = {}
    for hw in ("flightllm-u280", path):
        assert main(["resources", "--hw", hw, "--speculation", "--json"]) == 0
        rows = {r["resource"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
        uram[hw] = rows["URAM288"]["modelled"]
    assert uram[path] - uram["flightllm-u280"] == 136

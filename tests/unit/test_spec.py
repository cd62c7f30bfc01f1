"""Hardware specs: presets load, and every kind of bad input gets one clear message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sim.spec import (
    FlightLLMSpec,
    GPUSpec,
    SpecError,
    list_presets,
    load_preset,
    load_spec,
    validate,
)
from sim.units import parse_quantity

PRESETS = ["gpu-v100s", "gpu-a100", "gpu-h100", "gpu-h200", "flightllm-u280",
           "flightllm-vhk158"]


def test_required_presets_exist_and_load():
    assert set(PRESETS) <= set(list_presets())
    for name in PRESETS:
        spec = load_preset(name)
        assert spec.name == name
        assert spec.peak_ops_per_s("float16") > 0 and spec.mem_bytes_per_s > 0


def test_preset_numbers_match_the_papers():
    u280 = load_preset("flightllm-u280")
    assert isinstance(u280, FlightLLMSpec)
    # shared/papers/flightllm.md: 225 MHz, 3 SLR cores, 460 GB/s, 32 pseudo-channels, 45 W
    assert (u280.clock_hz, u280.cores, u280.hbm_bytes_per_s, u280.hbm_channels) == \
        (225e6, 3, 460e9, 32)
    assert u280.board_power_w == 45
    a100 = load_preset("gpu-a100")
    assert isinstance(a100, GPUSpec)
    assert a100.peak_ops_per_s("float16") == 312e12
    assert a100.peak_ops_per_s("float32") == 19.5e12


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dev.toml"
    p.write_text(text)
    return p


def _gpu_toml(**override: str) -> str:
    base = Path(load_preset.__globals__["HW_DIR"] / "gpu-a100.toml").read_text()
    lines = base.split("[sources]")[0].splitlines()
    out = []
    for line in lines:
        key = line.split("=")[0].strip()
        if key in override:
            if override[key]:
                out.append(f"{key} = {override[key]}")
            continue
        out.append(line)
    out += [f"{k} = {v}" for k, v in override.items() if v and k not in base]
    return "\n".join(out)


@pytest.mark.parametrize(("override", "message"), [
    ({"hbm_gb_per_s": "2000"}, "unknown key 'hbm_gb_per_s'.*did you mean 'hbm_bytes_per_s'"),
    ({"hbm_bytes_per_s": '"2 THz"'}, r"hbm_bytes_per_s = '2 THz': unit 'Hz' is not bytes/s"),
    ({"clock_hz": "-1"}, r"clock_hz = -1 is out of range; allowed \[1e\+08, 5e\+09\] Hz"),
    ({"sm_count": "10.5"}, "sm_count = 10.5: must be a whole number"),
    ({"tdp_w": "true"}, "tdp_w = True: expected a number, got a boolean"),
    ({"clock_hz": ""}, "missing key 'clock_hz'"),
    ({"kind": '"tpu"'}, "'kind' must be one of flightllm, gpu, hades; got 'tpu'"),
])
def test_bad_spec_files_name_file_field_and_range(tmp_path, override, message):
    path = _write(tmp_path, _gpu_toml(**override))
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="malformed TOML"):
        load_spec(_write(tmp_path, "kind = gpu\nname = "))
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "none.toml")
    with pytest.raises(SpecError, match="unknown hardware preset 'gpu-a1'.*gpu-a100"):
        load_preset("gpu-a1")


def test_impossible_combinations_are_refused():
    u280 = load_preset("flightllm-u280")
    with pytest.raises(SpecError, match="needs more than dsp_count"):
        validate(dataclasses.replace(u280, mm_macs_per_cycle=8192))
    with pytest.raises(SpecError, match="differs from hbm_bytes_per_s"):
        validate(dataclasses.replace(u280, hbm_channels=16))
    with pytest.raises(SpecError, match="out of range"):
        validate(dataclasses.replace(u280, hbm_eff_same_channel=1.5))
    assert validate(dataclasses.replace(u280, clock_hz=300e6)).clock_hz == 300e6


@pytest.mark.parametrize(("field", "text", "value"), [
    ("hbm_bytes_per_s", "460 GB/s", 460e9), ("clock_hz", "225 MHz", 225e6),
    ("hbm_bytes", "8 GiB", 8 * 2**30), ("tdp_w", "0.4 kW", 400.0), ("price_usd", 12000, 12000),
    ("fp16_flops_per_s", "312 TFLOP/s", 312e12), ("int8_ops_per_s", "1.2e3 TOPS", 1.2e15),
])
def test_quantities_with_units(field, text, value):
    assert parse_quantity(field, text) == pytest.approx(value)


def test_quantity_errors():
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("clock_hz", "fast")
    with pytest.raises(ValueError, match="unit 'B' is not Hz"):
        parse_quantity("clock_hz", "3 GB")


def test_variant_states_only_what_it_changes(tmp_path):
    """``base = PRESET``: the base's fields and sources, the variant's keys over them."""
    v = tmp_path / "v.toml"
    v.write_text('base = "flightllm-u280"\nname = "u280-v"\nmv_rows = 2\n'
                 '[sources]\nmv_rows = "a variant"\n')
    base, got = load_preset("flightllm-u280"), load_spec(v)
    assert (got.name, got.mv_rows, base.mv_rows) == ("u280-v", 2, 1)
    assert got.hbm_refresh_ns == base.hbm_refresh_ns > 0   # a field the variant never names
    src = dict(got.sources)
    assert src["mv_rows"] == "a variant" and src["clock_hz"] == dict(base.sources)["clock_hz"]
    # a variant of a variant, by path relative to the file
    (tmp_path / "w.toml").write_text('base = "v.toml"\nname = "u280-w"\ncores = 2\n')
    w = load_spec(tmp_path / "w.toml")
    assert (w.mv_rows, w.cores) == (2, 2)


@pytest.mark.parametrize("text, msg", [
    ('base = "no-such-board"\n', "unknown hardware preset"),
    ('base = "x.toml"\nname = "x"\n', "refers back to itself"),
    ("base = 3\n", "expected a preset name"),
])
def test_variant_base_errors(tmp_path, text, msg):
    p = tmp_path / "x.toml"
    p.write_text(text)
    with pytest.raises(SpecError, match=msg):
        load_spec(p)

"""llmcosim compare: device table with sources, a paper's headline ratios from its inputs."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from llmcosim.cli import main
from models.errors import UserError
from models.graph import Phase
from models.workload import Workload
from reports import compare as cmp
from reports import headline as hl
from sim.result import result_from_times
from tests.unit.graphs import decoder_like

PAPER = Path(__file__).resolve().parents[2] / "configs" / "compare" / "flightllm_paper.toml"
DEVICES = list(cmp.DEFAULT_HW)


def _workload() -> Workload:
    pre = dataclasses.replace(decoder_like(context=0), phase=Phase.PREFILL, tokens=8)
    return Workload("toy", 1, 8, 4, pre, decoder_like(context=8), decoder_like(context=11))


def _cache_gpt2(monkeypatch, tmp_path) -> None:
    """Cached synthetic graphs for gpt2 (prefill 8, decode 4): no tracing, no torch."""
    from models.cache import _key, cache_dir
    from models.request import TraceRequest
    from models.zoo import get_model

    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path / "cache"))
    entry = get_model("gpt2")
    w = _workload()
    for g, req in ((w.prefill, TraceRequest.make(entry, "prefill", tokens=8)),
                   (w.decode_first, TraceRequest.make(entry, "decode", context=8)),
                   (w.decode_last, TraceRequest.make(entry, "decode", context=11))):
        path = cache_dir() / f"{_key(entry, req)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        g.to_json(path)


def _paper_copy(tmp_path: Path, edit=lambda s: s) -> str:
    p = tmp_path / "paper.toml"
    p.write_text(edit(PAPER.read_text()))
    return str(p)


def _by_name(results):
    return {r.ratio.name: r for r in results}


def _variant(res, label):
    return next(v for v in res.variants if v.label == label)


# -- the device table -------------------------------------------------------------------------
def test_table_has_every_device_column_and_source(monkeypatch, tmp_path, capsys):
    _cache_gpt2(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["compare", "--model", "gpt2", "--prefill", "8", "--decode", "4", "--no-cycle",
                 "--hw", ",".join(DEVICES), "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["devices"]
    assert [r["hw"] for r in rows] == DEVICES
    for r in rows:
        assert r["source"].startswith("roofline bound") and r["power_source"]
        assert r["price_source"] and r["decode_tokens_per_s"] > 0 and r["prefill_ms"] > 0
        assert r["decode_ms_per_token"] == pytest.approx(1e3 / r["decode_tokens_per_s"])
    by = {r["hw"]: r for r in rows}
    a100 = by["gpu-a100"]
    assert a100["power_w"] == 400 and a100["tokens_per_j"] == pytest.approx(
        a100["decode_tokens_per_s"] / 400)
    assert a100["tokens_per_s_per_usd"] == pytest.approx(a100["decode_tokens_per_s"] / 15000)
    assert by["flightllm-vhk158"]["tokens_per_j"] is None      # board power not published
    assert by["hades"]["tokens_per_j"] and by["hades"]["price_usd"] is None
    md = (out / "compare.md").read_text()
    for col in cmp.COLUMNS:
        assert f" {col} |" in md
    for hw in DEVICES:
        assert f"| {hw} | roofline |" in md
    assert (out / "compare.png").stat().st_size > 1000
    assert json.loads((out / "compare.json").read_text())["devices"] == rows


def test_cli_prints_table_with_sources(monkeypatch, tmp_path, capsys):
    _cache_gpt2(monkeypatch, tmp_path)
    assert main(["compare", "--model", "gpt2", "--prefill", "8", "--decode", "4", "--no-cycle",
                 "--hw", "gpu-v100s,flightllm-u280", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gpu-v100s" in out and "flightllm-u280" in out and "source" in out
    assert "NVIDIA V100S datasheet: 250 W" in out and "(--no-cycle)" in out


def _fake_run(calls):
    """Decode: 4 tokens in 80 ms off GPUs; 40 ms on GPUs (80 ms with the hf-eager stack)."""
    def run(spec, w, fidelity, **options):
        calls.append((spec.name, fidelity, options))
        gpu = 0.08 if options.get("stack") == "hf-eager" else 0.04
        return result_from_times(spec, w, fidelity, 0.01, gpu if spec.kind == "gpu" else 0.08)
    return run


def test_best_fidelity_and_sources(monkeypatch):
    """Cycle for FlightLLM/HADES; the calibrated GPU model once registered, else roofline."""
    calls: list = []
    monkeypatch.setattr(cmp, "run", _fake_run(calls))
    monkeypatch.setattr(cmp, "_load_gpu_model", lambda: None)   # whatever sim/gpu/ does now
    monkeypatch.setattr(cmp, "fidelities", lambda kind=None: ["roofline", "cycle"])
    rows = cmp.compare(["flightllm-u280", "hades", "gpu-a100"], _workload())
    assert [r.fidelity for r in rows] == ["cycle", "cycle", "roofline"]
    assert "FlightLLM cycle-level" in rows[0].source and "HADES" in rows[1].source
    assert rows[2].source.startswith("roofline bound (no calibrated model)")
    with pytest.raises(UserError, match="--gpu-stack needs the calibrated GPU model"):
        cmp.compare(["gpu-a100"], _workload(), gpu_stack="hf-eager")

    monkeypatch.setattr(cmp, "fidelities", lambda kind=None: ["roofline", "calibrated"])
    calls.clear()
    rows = cmp.compare(["gpu-h100"], _workload(), gpu_stack="hf-eager")
    assert calls == [("gpu-h100", "calibrated", {"stack": "hf-eager"})]
    assert rows[0].source.startswith("modelled: calibrated GPU model (sim/gpu/), stack "
                                     "hf-eager")
    assert rows[0].decode_tokens_per_s == pytest.approx(4 / 0.08)   # the fake eager stack


def test_assumptions_power_and_price_replace_the_presets(monkeypatch):
    monkeypatch.setattr(cmp, "run", _fake_run([]))
    monkeypatch.setattr(cmp, "fidelities", lambda kind=None: ["roofline"])
    a = hl.load_assumptions(PAPER)
    rows = cmp.compare(["gpu-v100s", "gpu-a100"], _workload(), overrides=a.overrides(),
                       overrides_from="assumptions X")
    v100, a100 = rows
    assert v100.power_w == 220 and v100.price_usd == 12000 and "assumptions X" in v100.power_source
    assert v100.tokens_per_j == pytest.approx(v100.decode_tokens_per_s / 220)
    assert a100.power_w == 400 and "NVIDIA A100 datasheet" in a100.power_source   # not stated
    with pytest.raises(UserError, match="energy model"):
        cmp.compare(["hades"], _workload(), overrides={"hades": {"power_w": 50.0}})


# -- the headline ratios ----------------------------------------------------------------------
def test_headline_reproduces_the_papers_ratios_within_rounding():
    res = _by_name(hl.headline(hl.load_assumptions(PAPER)))
    raw = tomllib.loads(PAPER.read_text())["devices"]
    u280 = raw["flightllm-u280"]["tokens_per_s"] / raw["flightllm-u280"]["power_w"]
    v100 = raw["gpu-v100s"]
    # U280 vs V100S energy: 6.0x from the paper's numbers with the HF throughput, not vLLM's
    e = res["U280 vs V100S energy efficiency"]
    hf = _variant(e, "paper's inputs, HF")
    assert hf.within and hf.ratio[0] == pytest.approx(u280 / (v100["tokens_per_s"]["hf"] /
                                                               v100["power_w"]))
    assert 5.95 <= hf.ratio[0] <= 6.05
    vllm = _variant(e, "paper's inputs, vLLM")
    assert not vllm.within and vllm.ratio == pytest.approx(
        (u280 * 220 / 89, u280 * 220 / 87))
    assert "not with vLLM" in e.verdict and "GPU software stack" in e.hangs_on[0]
    # VHK158 vs A100 throughput: 1.2x with vLLM 87-89 (a range that meets 1.15..1.25)
    t = _variant(res["VHK158 vs A100 throughput"], "paper's inputs, vLLM")
    assert t.within and t.ratio == pytest.approx((1e3 / 9.810 / 89, 1e3 / 9.810 / 87))
    # cost vs V100S: 1.8x only with our preset U280 price and HF; the paper's ratio implies it
    c = res["U280 vs V100S cost efficiency"]
    chf = _variant(c, "paper's inputs, HF")
    assert chf.within and c.verdict.startswith("reproduced only with our preset u280 $8,000")
    (inp, implied), = chf.implied
    assert (inp.device, inp.field, inp.origin) == ("flightllm-u280", "price_usd", "preset")
    assert implied[0] == pytest.approx(55 * 12000 / (1.8 * 45))
    # A100 power is not stated: computed at our TDP, and the power 4.2x implies is shown
    a = res["U280 vs A100 energy efficiency"]
    av = _variant(a, "paper's inputs, vLLM")
    assert not av.within and av.inputs[4].origin == "preset" and av.inputs[4].value == (400, 400)
    (inp, implied), = av.implied
    assert inp.field == "power_w" and implied == pytest.approx(
        (87 / (u280 / 4.2), 89 / (u280 / 4.2)))
    assert any("not stated by the paper" in h and "implied by the paper's ratio" in h
               for h in a.hangs_on)
    md = hl.headline_markdown(hl.load_assumptions(PAPER), list(res.values()))
    assert "| U280 vs A100 cost efficiency | 1.4x |" in md and "hangs on" in md


def test_energy_ratio_follows_the_u280_power(tmp_path):
    """Ratios come from the inputs: doubling the U280 power halves every energy ratio."""
    base = _by_name(hl.headline(hl.load_assumptions(PAPER)))
    path = _paper_copy(tmp_path, lambda s: s.replace("power_w = 45", "power_w = 90"))
    doubled = _by_name(hl.headline(hl.load_assumptions(path)))
    for name in ("U280 vs V100S energy efficiency", "U280 vs A100 energy efficiency"):
        for label in ("paper's inputs, vLLM", "paper's inputs, HF"):
            r0, r1 = (_variant(x[name], label).ratio for x in (base, doubled))
            assert r1 == pytest.approx((r0[0] / 2, r0[1] / 2))
        # the preset variant keeps our 45 W board power, so it appears now for the A100 too
        assert _variant(doubled[name], "preset power/price, HF").inputs[1].value == (45, 45)
    for name in ("U280 vs V100S cost efficiency", "VHK158 vs A100 throughput"):
        assert [v.ratio for v in base[name].variants] == \
            [v.ratio for v in doubled[name].variants]
    assert not _variant(doubled["U280 vs V100S energy efficiency"], "paper's inputs, HF").within


def test_headline_uses_the_device_table(monkeypatch):
    monkeypatch.setattr(cmp, "run", _fake_run([]))
    monkeypatch.setattr(cmp, "_load_gpu_model", lambda: None)
    monkeypatch.setattr(cmp, "fidelities", lambda kind=None: ["roofline"])
    a = hl.load_assumptions(PAPER)
    rows = cmp.compare(["flightllm-u280", "gpu-v100s"], _workload())
    res = _by_name(hl.headline(a, rows))
    ours = _variant(res["U280 vs V100S energy efficiency"], "our models (device table)")
    assert ours.ratio[0] == pytest.approx(rows[0].tokens_per_j / rows[1].tokens_per_j)
    # one "our models" row per paper stack, from the calibrated model run with that stack
    monkeypatch.setattr(cmp, "fidelities", lambda kind=None: ["roofline", "calibrated"])
    by_stack = {s: cmp.compare(["gpu-v100s"], _workload(), gpu_stack=ours)
                for s, ours in a.model_stacks.items()}
    res = _by_name(hl.headline(a, rows, by_stack))
    e = res["U280 vs V100S energy efficiency"]
    graph, eager = (_variant(e, f"our models, {s}").ratio[0]
                    for s in ("vLLM (graph)", "HF (hf-eager)"))
    assert eager == pytest.approx(2 * graph)          # the eager stack decodes half as fast


def test_headline_only_cli(capsys):
    assert main(["compare", "--assumptions", str(PAPER), "--headline-only", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["devices"] == [] and len(data["headline"]) == 5
    assert all(h["variants"] and h["verdict"] for h in data["headline"])


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["--hw", "gpu-a100,,hades"], "no empty entries"),
    (["--hw", "gpu-a100,gpu-a100"], "lists gpu-a100 more than once"),
    (["--hw", "gpu-x"], "unknown hardware preset 'gpu-x'; presets: flightllm-u280"),
    (["--model", "llama9"], "unknown model 'llama9'; the zoo has"),
    (["--gpu-stack", "tensorrt"], "unknown --gpu-stack 'tensorrt'; allowed: graph, vllm, hf-eager"),
    (["--headline-only"], "--headline-only needs --assumptions"),
    (["--assumptions", "missing.toml"], "assumptions file 'missing.toml' does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace('"gpu-v100s.power_w" = "FlightLLM: V100 ~220 W"\n', ""),
     'no [sources] entry "gpu-v100s.power_w"'),
    (lambda s: s.replace('metric = "tokens_per_s"\n', 'metric = "tokens_per_watt"\n'),
     "unknown metric 'tokens_per_watt'; allowed: tokens_per_s, tokens_per_j"),
    (lambda s: s.replace("[devices.gpu-a100]", "[devices.gpu-a1000]"),
     "devices.gpu-a1000: unknown hardware preset"),
    (lambda s: s.replace("vllm = [87, 89]", "vllm = [89, 87]", 1), "need 0 < low <= high"),
    (lambda s: s.replace("vllm = [87, 89]", "trt = [87, 89]", 1), "declared in [stacks]"),
    (lambda s: s.replace("power_w = 220", "powr_w = 220"), "allowed: tokens_per_s"),
    (lambda s: s.replace('hf = "hf-eager"', 'hf = "eager"'), "values from graph, vllm, hf-eager"),
])
def test_bad_assumptions_file(tmp_path, edit, message):
    with pytest.raises(UserError) as e:
        hl.load_assumptions(_paper_copy(tmp_path, edit))
    assert message in str(e.value)


def test_measured_gpu_power_is_the_one_shown_and_overridable(monkeypatch):
    """A GPU the calibrated model knows from measurement decodes at its measured board power:
    the row shows that power (not the TDP) and its tokens/J; an assumptions file still wins."""
    def run(spec, w, fidelity, **options):
        energy = 350.0 * 0.04      # the calibrated model's decode energy at 350 W measured
        return result_from_times(spec, w, fidelity, 0.01, 0.04, energy_j=energy + 3.5,
                                 decode_energy_j=energy,
                                 extra={"decode_power_w": 350.0, "calibration": "H100, measured"})

    monkeypatch.setattr(cmp, "run", run)
    monkeypatch.setattr(cmp, "fidelities", lambda kind=None: ["roofline", "calibrated"])
    (row,) = cmp.compare(["gpu-h100"], _workload())
    assert row.power_w == 350.0 and "measured board power" in row.power_source
    assert row.tokens_per_j == pytest.approx(row.decode_tokens_per_s / 350.0)
    (row,) = cmp.compare(["gpu-h100"], _workload(), overrides={"gpu-h100": {"power_w": 700.0}},
                         overrides_from="assumptions X")
    assert row.power_w == 700.0 and "assumptions X" in row.power_source
    assert row.tokens_per_j == pytest.approx(row.decode_tokens_per_s / 700.0)

"""CLI: one-line errors with exit code 2, torch-free commands, JSON output contract."""

from __future__ import annotations

import json

import pytest

from llmcosim.cli import main


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "--hw", "gpu-a100", "--model", "llama9"], "unknown model 'llama9'"),
    (["simulate", "--hw", "gpu-x", "--model", "gpt2"], "unknown hardware preset 'gpu-x'"),
    (["trace", "llama2-7b", "--context", "-5"], "--context must be >= 0, got -5"),
    (["trace", "gpt2", "--context", "1024"], "exceeds gpt2's maximum of 1024 positions"),
    (["trace", "gpt2", "--phase", "train"], "unknown phase 'train'"),
    (["trace", "gpt2", "--phase", "decode", "--tokens", "3"], "use --phase verify"),
    (["simulate", "--hw", "gpu-a100", "--model", "gpt2", "--prefill", "1000", "--decode", "100"],
     "exceeds gpt2's maximum of 1024"),
    (["simulate", "--hw", "gpu-a100", "--model", "gpt2", "--fidelity", "cycle"],
     "unknown --fidelity 'cycle'"),
    (["simulate", "--hw", "gpu-a100", "--model", "gpt2", "--weight-bits", "5"],
     "--weight-bits 5 is not supported"),
    (["trace", "missing.json"], "config file 'missing.json' does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_hw_file_is_reported_with_its_path(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = 'gpu'\nname = [")
    assert main(["simulate", "--hw", str(bad), "--model", "gpt2"]) == 2
    assert "malformed TOML" in capsys.readouterr().err


def test_models_and_hw_list(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("llama2-7b", "llama2-13b", "opt-6.7b", "llama-68m", "tinyllama-1.1b",
                 "qwen2-0.5b", "gpt2"):
        assert name in out
    assert main(["hw"]) == 0
    assert "flightllm-u280" in capsys.readouterr().out
    assert main(["hw", "flightllm-u280"]) == 0
    assert "FlightLLM (FPGA'24) Table: 225 MHz" in capsys.readouterr().out


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--model", "gpt2"])
    assert e.value.code == 2


def test_simulate_json_from_cached_graphs(tmp_path, monkeypatch, capsys):
    """A cached graph is all simulate needs: no torch import, same JSON contract."""
    from models.cache import _key, cache_dir
    from models.request import TraceRequest
    from models.zoo import get_model
    from tests.unit.graphs import decoder_like

    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path))
    entry = get_model("gpt2")
    for ctx in (8, 11):
        g = decoder_like(context=ctx)
        req = TraceRequest.make(entry, "decode", context=ctx)
        path = cache_dir() / f"{_key(entry, req)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        g.to_json(path)
    pre = decoder_like(context=0)
    req = TraceRequest.make(entry, "prefill", tokens=8)
    import dataclasses

    from models.graph import Phase
    dataclasses.replace(pre, phase=Phase.PREFILL, tokens=8).to_json(
        cache_dir() / f"{_key(entry, req)}.json")
    assert main(["simulate", "--hw", "gpu-h100", "--model", "gpt2", "--prefill", "8",
                 "--decode", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["hw"], r["model"], r["prefill"], r["decode"], r["fidelity"]) == \
        ("gpu-h100", "gpt2", 8, 4, "roofline")
    assert r["decode_tokens_per_s"] == pytest.approx(1e3 / r["decode_ms_per_token"])
    assert r["total_ms"] == pytest.approx(r["prefill_ms"] + 4 * r["decode_ms_per_token"])

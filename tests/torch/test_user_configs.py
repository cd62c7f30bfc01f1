"""Configs a user brings (issue 21): refused families, one unsupported-architecture message,
names taken from the config, directories as models, Gemma-2 traced without a warning."""

from __future__ import annotations

import json
import logging

import pytest

from llmcosim.cli import main

# Small configs of each family (layer sizes shrunk, the fields their config.json files carry)
_GEMMA2 = {"model_type": "gemma2", "_name_or_path": "google/gemma-2-2b",
           "architectures": ["Gemma2ForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
           "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 64, "vocab_size": 1000, "max_position_embeddings": 1024,
           "sliding_window": 128, "query_pre_attn_scalar": 64,
           "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}
_LLAMA = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
          "vocab_size": 1000, "max_position_embeddings": 512}
_BERT = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256,
         "vocab_size": 1000}
_T5 = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 128,
       "num_layers": 2, "num_heads": 2, "d_ff": 256, "d_kv": 64, "vocab_size": 1000,
       "is_encoder_decoder": True}
# a state-space model: no attention, a conv1d and a selective scan our lowering has no rule
# for, and a cache that is no KV cache -- an architecture that stays unsupported
_MAMBA = {"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
          "state_size": 4, "expand": 2}


def _model_dir(tmp_path, name: str, cfg: dict) -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2  # in-process: an uncaught exception would raise here
    err = capsys.readouterr().err.strip().splitlines()  # transformers may log lines before
    assert err[-1].startswith("error: ")
    return err[-1]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(("cfg", "kind"), [(_BERT, "an encoder (masked-LM) model"),
                                           (_T5, "an encoder-decoder model")])
@pytest.mark.parametrize("command", ["trace", "simulate"])
def test_encoder_and_encoder_decoder_configs_are_refused(tmp_path, capsys, cfg, kind, command):
    d = _model_dir(tmp_path, "m", cfg)
    argv = ["trace", d] if command == "trace" else \
        ["simulate", "--hw", "gpu-a100", "--model", d, "--prefill", "8", "--decode", "2"]
    err = _error(argv, capsys)
    assert err == (f"error: model 'm ({cfg['model_type']})' is {kind}; llmcosim traces "
                   "decoder-only causal LMs (llama, mistral, qwen2, gemma2, opt, gpt2, ...)")


def test_an_unsupported_architecture_fails_alike_in_every_command(tmp_path, capsys):
    d = _model_dir(tmp_path, "ssm", _MAMBA)
    head = "error: model 'ssm (mamba)' is not supported yet ("
    tail = ("); llmcosim traces decoder-only causal LMs whose forward pass exports on the meta "
            "device (no data-dependent control flow) and lowers to the ops in models/lower.py")
    errors = [
        _error(["trace", d, "--context", "8"], capsys),                      # export fails
        _error(["trace", d, "--phase", "prefill", "--tokens", "4"], capsys),  # lowering fails
        _error(["simulate", "--hw", "gpu-a100", "--model", d, "--prefill", "4",
                "--decode", "2"], capsys),
        _error(["compile", "--hw", "flightllm-u280", "--model", d, "--phase", "prefill",
                "--tokens", "4", "--out", str(tmp_path / "p")], capsys),
    ]
    for err in errors:
        assert err.startswith(head) and err.endswith(tail), err
    assert "torch.export failed" in errors[0]
    assert "cannot lower ATen op aten.conv1d" in errors[1]


def test_gemma2_traces_silently_under_its_checkpoint_name(tmp_path, capsys, caplog):
    d = _model_dir(tmp_path, "gemma", _GEMMA2)
    with caplog.at_level(logging.WARNING):
        assert main(["trace", d, "--context", "16"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("google/gemma-2-2b decode: batch 1")
    assert err == "" and not caplog.records, (err, caplog.text)


def test_a_config_file_is_named_by_its_folder_and_type_everywhere(tmp_path, capsys):
    d = _model_dir(tmp_path, "my-model", _LLAMA)
    assert main(["trace", f"{d}/config.json", "--context", "8", "--out",
                 str(tmp_path / "g.json")]) == 0
    assert capsys.readouterr().out.startswith("my-model (llama) decode:")
    assert json.loads((tmp_path / "g.json").read_text())["model"] == "my-model (llama)"
    sim = ["simulate", "--hw", "gpu-a100", "--model", d, "--prefill", "8", "--decode", "2"]
    assert main([*sim, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "my-model (llama)"
    assert main(sim) == 0
    assert "my-model (llama) on gpu-a100" in capsys.readouterr().out


def test_directories_as_models(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv in (["trace", str(tmp_path / "empty")],
                 ["simulate", "--hw", "gpu-a100", "--model", str(tmp_path / "empty")]):
        assert _error(argv, capsys) == (f"error: no config.json in '{tmp_path / 'empty'}' "
                                        "(a model directory holds the Hugging Face config.json)")

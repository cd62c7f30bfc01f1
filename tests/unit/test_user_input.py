"""What a new user hits (issue 21): typos, wrong files, empty files, each one clear line."""

from __future__ import annotations

import json
import sqlite3

import pytest

from llmcosim.cli import build_parser, main
from models.argparser import StrictParser, closest_flag
from models.errors import UserError


def _run(argv: list[str], capsys) -> str:
    """The one-line error of a CLI run that must fail with status 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- 7: no abbreviations, the closest flag named -------------------------------------------
@pytest.mark.parametrize(("argv", "hint"), [
    (["simulate", "--hw", "gpu-a100", "--model", "gpt2", "--prefil", "12"], "--prefill"),
    (["simulate", "--hw", "gpu-a100", "--model", "gpt2", "--prefill=12", "--jsn"], "--json"),
    (["trace", "gpt2", "--contxt", "4"], "--context"),
    (["trace", "gpt2", "--sum"], "--summary"),            # a prefix is no longer accepted
    (["compile", "--hw", "flightllm-u280", "--model", "gpt2", "--cont", "4"], "--context"),
    (["sweep", "show", "x.db", "--paret", "a,b"], "--pareto"),
    (["report", "sweep", "x.db", "--ou", "d"], "--out"),
    (["rtl", "verify", "--blck", "csd_chain"], "--block"),
    (["gpu-baseline", "validate", "--no-step"], "--no-steps"),
    (["compare", "--model", "gpt2", "--hw", "gpu-a100", "--prefil", "8"], "--prefill"),
])
def test_abbreviations_are_errors_naming_the_closest_flag(capsys, argv, hint):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {argv[-2] if argv[-1][0] != '-' else argv[-1]}" in err
    assert f"(did you mean {hint}?)" in err


@pytest.mark.parametrize(("argv", "hint"), [(["simulat"], "simulate"),
                                             (["rtl", "verfy"], "verify"),
                                             (["simulate", "--hw", "gpu-a100", "--model", "gpt2",
                                               "--gpu-stack", "hf-eagr"], "hf-eager")])
def test_a_misspelt_command_or_choice_names_the_closest(capsys, argv, hint):
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert "invalid choice" in err and err.rstrip().endswith(f"(did you mean {hint}?)")


def test_every_parser_of_the_cli_is_strict():
    """Every parser and subparser, however deep, refuses abbreviations."""
    seen, todo = 0, [build_parser()]
    while todo:
        p = todo.pop()
        assert isinstance(p, StrictParser) and p.allow_abbrev is False, p.prog
        seen += 1
        for a in p._actions:
            if a.choices and isinstance(a.choices, dict):
                todo.extend(a.choices.values())
    assert seen > 15


def test_closest_flag():
    flags = ["--prefill", "--decode", "--prefix-cache", "-h"]
    assert closest_flag("--prefil", flags) == "--prefill"
    assert closest_flag("--decod=5", flags) == "--decode"
    assert closest_flag("--zzzzzz", flags) is None


# -- 5: sweep show / export / report on a file that is no results database -----------------
@pytest.mark.parametrize("command", [["sweep", "show"], ["report", "sweep"]])
@pytest.mark.parametrize(("content", "message"), [
    ("readme", "is not a sweep results database"),
    ("", "is not a sweep results database (an SQLite file with tables 'meta' and 'points'"),
    ("other-sqlite", "it has tables other"),
    (None, "does not exist"),
    ("dir", "is a directory"),
])
def test_sweep_readers_refuse_what_is_not_a_results_db(tmp_path, capsys, command, content,
                                                       message):
    path = tmp_path / "r.db"
    if content == "dir":
        path.mkdir()
    elif content == "other-sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE other (x)")
    elif content is not None:
        path.write_text(content)
    err = _run([*command, str(path)], capsys)
    assert message in err and str(path) in err


def test_sweep_export_of_a_text_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    err = _run(["sweep", "export", str(tmp_path / "notes.txt"), str(tmp_path / "o.csv")], capsys)
    assert "is not a sweep results database" in err
    assert not (tmp_path / "o.csv").exists()


# -- 6 and 2: models named by path or directory, and what they are called ------------------
def test_unknown_model_hint_names_what_exists(capsys):
    err = _run(["simulate", "--hw", "gpu-a100", "--model", "llama9"], capsys)
    assert "--config" not in err
    assert "(or give a Hugging Face config.json path, or a directory holding one, as the " \
           "model)" in err
    assert "unknown model ''" in _run(["simulate", "--hw", "gpu-a100", "--model", ""], capsys)


def test_a_directory_is_a_model_and_names_come_from_the_config(tmp_path):
    from models.zoo import get_model

    d = tmp_path / "my-model"
    d.mkdir()
    cfg = {"model_type": "llama", "hidden_size": 64}
    (d / "config.json").write_text(json.dumps(cfg))
    assert get_model(str(d)).name == "my-model (llama)"
    assert get_model(str(d / "config.json")).name == "my-model (llama)"
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    assert get_model(str(tmp_path / "other.json")).name == "other (llama)"
    (d / "config.json").write_text(json.dumps({**cfg, "_name_or_path": "meta-llama/Llama-3"}))
    e = get_model(str(d))
    assert e.name == "meta-llama/Llama-3" and "_name_or_path" not in e.config
    (d / "config.json").write_text(json.dumps({**cfg, "_name_or_path": "/home/me/ckpt/v2/"}))
    assert get_model(str(d)).name == "v2"
    with pytest.raises(UserError, match=r"^no config.json in '.*empty'"):
        (tmp_path / "empty").mkdir()
        get_model(str(tmp_path / "empty"))


# -- 3: empty inputs say what was expected --------------------------------------------------
@pytest.mark.parametrize(("name", "argv", "message"), [
    ("e.toml", ["simulate", "--hw", "flightllm-u280", "--model", "llama2-7b", "--prefill", "8",
                "--decode", "2", "--sparsity", "{f}"],
     "--sparsity file '{f}' is empty: expected compression settings"),
    ("e.toml", ["compile", "--hw", "flightllm-u280", "--model", "llama2-7b", "--sparsity", "{f}",
                "--out", "{d}/prog"], "--sparsity file '{f}' is empty: expected"),
    ("e.bin", ["disasm", "{f}"], "program '{f}' is empty: expected 32-bit FlightLLM "
                                 "instructions (compile writes core<i>.bin under --out)"),
    ("e.toml", ["trace", "llama-68m", "--phase", "verify", "--tree", "{f}"],
     "--tree: tree file '{f}' is empty: expected parents = [-1, 0, 0, 1, ...]"),
    ("e.jsonl", ["simulate", "--hw", "hades", "--model", "llama2-7b", "--acceptance", "{f}"],
     "--acceptance file '{f}' is empty: expected one JSON object per round and line"),
    ("e.toml", ["sweep", "{f}"], "sweep file '{f}' is empty: expected [hardware] preset"),
    ("e.toml", ["hw", "{f}"], "hardware file '{f}' is empty: expected kind = "),
    ("e.toml", ["compare", "--assumptions", "{f}", "--out", "{d}/c"],
     "assumptions file '{f}' is empty: expected"),
    ("config.json", ["simulate", "--hw", "gpu-a100", "--model", "{f}"],
     "config file '{f}' is empty: expected a Hugging Face config.json with model_type"),
])
@pytest.mark.parametrize("content", ["", "# only a comment\n\n"])
def test_empty_inputs_say_what_was_expected(tmp_path, capsys, name, argv, message, content):
    f = tmp_path / name
    f.write_text(content if not name.endswith((".bin", ".json")) else "")
    argv = [a.format(f=f, d=tmp_path) for a in argv]
    err = _run(argv, capsys)
    assert message.format(f=f) in err
    assert not (tmp_path / "prog").exists() and not (tmp_path / "c").exists()


# -- 9: compare --assumptions keeps its own files --------------------------------------------
def test_compare_with_assumptions_does_not_overwrite_a_plain_compare(monkeypatch, tmp_path):
    from tests.unit.test_compare import PAPER, _cache_gpt2

    _cache_gpt2(monkeypatch, tmp_path)
    base = ["compare", "--model", "gpt2", "--prefill", "8", "--decode", "4", "--no-cycle",
            "--hw", "gpu-v100s,flightllm-u280", "--json"]
    assert main([*base, "--out", str(tmp_path / "r")]) == 0
    plain = (tmp_path / "r" / "compare.json").read_text()
    assert main([*base, "--assumptions", str(PAPER), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "compare.json").read_text() == plain       # untouched
    assert "headline" not in json.loads(plain)
    assert "headline" in json.loads((tmp_path / "r" / "headline.json").read_text())
    assert (tmp_path / "r" / "headline.md").is_file()
    # --out NAME.md: where the user says
    assert main([*base, "--assumptions", str(PAPER), "--out", str(tmp_path / "x" / "v2.md")]) == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["v2.json", "v2.md", "v2.png"]


# -- 11: demo for any model: a draft with the target's vocabulary, or no spec rows ---------
def test_demo_draft_shares_the_vocabulary_or_is_none():
    from models.zoo import ZOO
    from reports.demo import demo_draft

    assert demo_draft(ZOO["llama2-7b"]) == "llama-68m"
    assert demo_draft(ZOO["opt-6.7b"]) is None        # vocab 50272: no OPT draft in the zoo
    assert demo_draft(ZOO["llama-68m"]) is None       # nothing smaller drafts for the draft
    for e in ZOO.values():
        d = demo_draft(e)
        assert d is None or ZOO[d].config["vocab_size"] == e.config["vocab_size"]


@pytest.mark.parametrize("content", ["", "{}", "\n"])
def test_an_empty_workload_file_says_what_was_expected(tmp_path, content):
    from sweeps.workloads import load_workload_file

    f = tmp_path / "w.workload.json"
    f.write_text(content)
    with pytest.raises(UserError, match=r"workload file '.*w.workload.json' is empty: expected "
                                        r"a JSON object of format 'llmcosim-workload-1'"):
        load_workload_file(f)
    f.write_text("[1, 2]")
    with pytest.raises(UserError, match="not a workload file"):
        load_workload_file(f)


def test_a_sweep_whose_points_fail_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('[sweep]\nname = "t"\nfidelity = "roofline"\n'
                                     '[hardware]\npreset = ["gpu-a100", "hades"]\n'
                                     '[workload]\nmodel = "no-such-model"\nprefill = 8\n'
                                     'decode = 4\n')
    assert main(["sweep", "s.toml", "--workers", "1", "--quiet"]) == 1   # every point failed
    err = capsys.readouterr().err
    assert "failed (2 points): unknown model 'no-such-model'" in err
    assert "error: every point of t failed" in err

"""Every command of the README's usage block ("## Using it") runs as shown (issue 21).

The block is parsed, not copied: a line added to the README is tested here. Each command runs
in-process through ``llmcosim.cli.main`` in one scratch directory (``configs/`` linked in, as
in a checkout), in README order, so files an earlier line writes (``prog/core0.bin``,
``results/u280_bits.db``) are there for the lines that read them. Sizes shrink where a flag
allows (``_SMALL``): the commands, models and presets are the README's.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from llmcosim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]

# Workload flags and the small values that keep every command to seconds on the meta device
# and the cycle-level simulators (the README's are 128..1024 tokens).
_SMALL = {"--prefill": "16", "--decode": "8", "--context": "16", "--tokens": "4"}
# Lines that are not run, and why.
_SKIP = {
    "source": "shell setup",
    "llmcosim gpu-baseline measure": "needs a CUDA GPU",
    "python -m reports.flightllm": "rewrites the committed reports/flightllm.md (~2 min); "
                                   "`make report` runs it",
    "llmcosim sweep configs/sweeps/u280_codesign.toml": "the whole co-design grid at cycle "
        "level (~10 min on 2 workers); tests/unit/test_codesign_report.py runs a small sweep "
        "through the same report and tests/unit/test_sweep_spec.py parses this file",
    "python -m reports.codesign": "reads that sweep's DB (runs it when missing) and rewrites "
                                  "the committed reports/codesign.md",
}
# Lines run only in the slow layer (`make test-slow`), and why: each costs more than the rest of
# the block together from a cold cache (timed on this 2-core machine).
_SLOW = {
    "llmcosim rtl verify": "fresh Verilator builds of every CSD-Chain configuration, ~150 s",
    "llmcosim gpu-baseline validate": "traces LLaMA-2-7B at every measured step size, ~45 s",
}
# The README's placeholder for "any decoder-only HF config.json": a small LLaMA-style one.
_PLACEHOLDER_CONFIG = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
                       "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "vocab_size": 1000,
                       "max_position_embeddings": 2048}


def readme_commands(text: str) -> list[str]:
    """The commands of the ```sh block under "## Using it", continuation lines joined."""
    section = text.split("\n## Using it", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _argv(command: str) -> list[str]:
    """The command's arguments after ``llmcosim``, comments dropped, sizes made small."""
    words = shlex.split(command, comments=True)[1:]
    argv, i = [], 0
    while i < len(words):
        w = words[i]
        flag = w.split("=", 1)[0]
        if flag in _SMALL:
            argv.append(f"{flag}={_SMALL[flag]}")
            i += 1 if "=" in w else 2
            continue
        argv.append(w)
        i += 1
    # the defaults are the README's sizes too: shrink them where the command takes the flag
    sub = _subparser(argv)
    for flag in ("--prefill", "--decode"):
        if sub is not None and flag in sub._option_string_actions \
                and not any(a.startswith(flag + "=") for a in argv):
            argv.append(f"{flag}={_SMALL[flag]}")
    return argv


def _subparser(argv: list[str]):
    """The parser of the (sub)command ``argv`` names, or None."""
    parser = build_parser()
    for word in argv:
        choices = next((a.choices for a in parser._actions
                        if isinstance(a.choices, dict)), None)
        if not choices or word not in choices:
            break
        parser = choices[word]
    return parser


COMMANDS = readme_commands((ROOT / "README.md").read_text())


def _param(command: str):
    slow = any(command.startswith(start) for start in _SLOW)
    return pytest.param(command, marks=[pytest.mark.slow] if slow else [],
                        id=" ".join(shlex.split(command, comments=True)[1:]) or command)


def test_the_readme_block_is_found():
    assert len(COMMANDS) > 20 and all(c.split()[0] in ("llmcosim", "python", "source")
                                      for c in COMMANDS), COMMANDS


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One directory for the whole block, with configs/ as in a checkout, and its own cache."""
    d = tmp_path_factory.mktemp("readme")
    (d / "configs").symlink_to(ROOT / "configs")
    cfg = d / "path" / "to" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps(_PLACEHOLDER_CONFIG))
    return d


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_readme_command_runs(command, scratch, monkeypatch, capsys):
    skip = next((why for start, why in _SKIP.items() if command.startswith(start)), None)
    if skip:
        pytest.skip(skip)
    assert command.startswith("llmcosim "), f"README command not run by this test: {command}"
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("LLMCOSIM_CACHE", str(scratch / "cache"))
    argv = _argv(command)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse: a flag the README shows does not exist
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 0, (f"README command failed (exit {rc}): {command}\n  ran: llmcosim "
                     f"{shlex.join(argv)}\n  stderr: {err[-2000:]}")

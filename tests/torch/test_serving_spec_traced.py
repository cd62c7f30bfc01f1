"""Speculative serving on traced graphs: an iteration against the whole traced passes, and
``llmcosim serve --draft`` end to end (sim/serving/speculative.py)."""

from __future__ import annotations

import json

import pytest

from llmcosim.cli import main
from mapping.acceptance import IIDAcceptance
from models.cache import get_graph
from models.workload import Workload
from sim.registry import run
from sim.serving.passes import build_table, default_sources
from sim.serving.speculative import SpecServing, verify_table
from sim.spec import load_preset

MODEL = DRAFT = "llama-68m"   # small: every grid trace takes well under a second
GAMMA = 3


def _whole(spec, g, batch: int, context: int, fidelity: str) -> float:
    res = run(spec, Workload(MODEL, batch, context, 1, None, g, g), fidelity)
    return res.decode_ms_per_token / 1e3


@pytest.mark.parametrize("preset, fidelity", [("hades", "cycle"), ("gpu-h100", "calibrated")])
@pytest.mark.parametrize("batch, context", [(2, 90), (8, 150)])
def test_iteration_equals_the_traced_verify_and_draft_passes(preset, fidelity, batch, context):
    spec = load_preset(preset)
    kw = {"max_tokens": 48, "max_batch": 8, "max_context": 200}
    target = build_table(spec, fidelity, *default_sources(MODEL), **kw)
    vgraph = lambda b, c: get_graph(MODEL, "verify", tokens=GAMMA + 1, context=c, batch=b)  # noqa: E731
    s = SpecServing(GAMMA, IIDAcceptance(0.8), DRAFT,
                    build_table(spec, fidelity, *default_sources(DRAFT), **kw),
                    verify_table(target, spec, fidelity, vgraph, GAMMA))
    got, _ = s.iteration(batch, float(batch * context), [])
    want = _whole(spec, vgraph(batch, context), batch, context, fidelity)
    for j in range(GAMMA):
        g = get_graph(DRAFT, "decode", context=context + j, batch=batch)
        want += _whole(spec, g, batch, context + j, fidelity)
    assert got == pytest.approx(want, rel=0.02)


def test_serve_with_a_draft_end_to_end(capsys, tmp_path):
    args = ["serve", "--hw", "hades", "--model", MODEL, "--rate", "4/s", "--num-requests",
            "30", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--draft", DRAFT, "--gamma", "3", "--alpha", "0.9"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["setup"]["speculation"] == "spec γ3 α0.9 llama-68m"
    dev = spec["devices"][0]
    assert dev["speculation"]["gamma"] == 3 and dev["speculation"]["mean_accepted"] > 2
    assert dev["storage"].endswith("spec γ3 α0.9 llama-68m") and dev["notes"]
    assert "speculation" not in plain["devices"][0] and plain["setup"]["speculation"] is None
    assert main([*args, "--gamma", "3", "--adaptive-gamma"]) == 0
    adaptive = json.loads(capsys.readouterr().out)["devices"][0]
    assert adaptive["speculation"]["adaptive"] is True
    assert 0 <= adaptive["speculation"]["mean_gamma"] <= 3
    assert "γ≤3 adaptive" in adaptive["storage"]


def test_serve_speculation_errors_name_the_flag(capsys):
    base = ["serve", "--hw", "hades", "--model", "llama2-7b", "--rate", "1/s",
            "--num-requests", "5"]
    assert main([*base, "--draft", "gpt2"]) == 2
    assert "share a tokenizer" in capsys.readouterr().err
    assert main([*base, "--gamma", "0"]) == 2
    assert "--gamma 0" in capsys.readouterr().err
    assert main([*base, "--alpha", "x"]) == 2
    assert "--alpha 'x'" in capsys.readouterr().err

"""Serving simulation (sim/serving): Little's law, light-load TTFT, determinism, bad inputs.

Graphs are synthetic (torch-free): a two-layer decoder whose linear, KV-append and attention
costs follow the shapes of a real pass, so the roofline gives a table like a real model's.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from models.errors import UserError
from models.graph import Phase
from models.workload import Workload
from models.zoo import get_model
from sim.registry import run
from sim.serving.device import default_fidelity, serve_device
from sim.serving.metrics import parse_slo
from sim.serving.passes import _split, build_table
from sim.serving.requests import (
    LengthDist,
    Request,
    check_lengths,
    load_lengths,
    load_trace,
    parse_rate,
    poisson_requests,
)
from sim.serving.scheduler import SchedulerConfig
from sim.spec import load_preset
from tests.unit.serving_graphs import SOURCES, toy_pass

SPEC = load_preset("hades")
ENTRY = get_model("llama2-7b")  # names the model; its graphs here are the toy ones
SHORT = (LengthDist("lognormal", 60, 0.6, min=4, max=400),
         LengthDist("lognormal", 40, 0.6, min=2, max=200))


BASE = SchedulerConfig(token_budget=256, max_batch=16)


def _serve(reqs, cfg=BASE, slo=None):
    return serve_device(SPEC, ENTRY, reqs, cfg, slo or {"ttft": 0.5, "tpot": 0.05},
                        "roofline", SOURCES)


def _capacity_rate() -> float:
    """Requests/s one device sustains at full batch: a rough scale for the test rates."""
    reqs = poisson_requests(1e6, 50, *SHORT, seed=1)
    d = _serve(reqs)
    return d.metrics["throughput_req_per_s"]


def test_littles_law_under_load():
    rate = 0.8 * _capacity_rate()
    d = _serve(poisson_requests(rate, 400, *SHORT, seed=3))
    ll = d.metrics["littles_law"]
    assert d.metrics["queue_s"]["p99"] > 0          # a real queue formed
    assert ll["L"] > 1.0
    assert ll["L"] == pytest.approx(ll["lambda_W"], rel=0.02)


def test_light_load_ttft_is_the_prompt_prefill_time():
    """Arrivals 1,000 s apart find the device idle: no alignment wait, TTFT is the prefill.

    A prompt within the token budget runs in one iteration whose time equals the simulator's
    prefill of that prompt (grid prompts: no interpolation); a longer one runs in
    ceil(P / budget) chunks, the last over the cache the earlier ones filled.
    """
    budget = 256
    prompts = [1, 3, 48, 96, 256, 600]
    reqs = [Request(i, 1000.0 * i, p, 5) for i, p in enumerate(prompts)]
    d = _serve(reqs, SchedulerConfig(token_budget=budget, max_batch=16))
    for rec in d.run.records:
        p = rec.req.prompt_tokens
        ttft = rec.first_token_s - rec.req.arrival_s
        assert rec.admitted_s == rec.req.arrival_s          # zero queueing
        if p <= budget:
            g = toy_pass(1, p, 0, Phase.PREFILL)
            direct = run(SPEC, Workload("toy", 1, p, 0, g, None, None), "roofline").prefill_ms
            assert ttft == pytest.approx(direct / 1e3, rel=1e-9)
        else:
            chunks = [(budget, 0), (budget, budget), (p - 2 * budget, 2 * budget)]
            want = sum(d.table.iteration(0, 0.0, [c])[0] for c in chunks)
            assert ttft == pytest.approx(want, rel=1e-12)


def test_decode_iteration_matches_the_simulator_at_grid_points():
    table = build_table(SPEC, "roofline", *SOURCES, max_tokens=64, max_batch=8,
                        max_context=400)
    for b in (1, 4, 8):
        c = table.contexts[-1]
        g = toy_pass(b, 1, c, Phase.DECODE)
        res = run(SPEC, Workload("toy", b, c, 1, None, g, g), "roofline")
        got, _ = table.iteration(b, float(b * c), [])
        assert got == pytest.approx(res.decode_ms_per_token / 1e3, rel=1e-9)


def test_deterministic_for_a_seed():
    a = _serve(poisson_requests(5.0, 120, *SHORT, seed=7)).metrics
    b = _serve(poisson_requests(5.0, 120, *SHORT, seed=7)).metrics
    c = _serve(poisson_requests(5.0, 120, *SHORT, seed=8)).metrics
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["ttft_s"] != c["ttft_s"]


def test_kv_admission_never_overcommits():
    reqs = poisson_requests(1e3, 60, *SHORT, seed=2)
    cfg = SchedulerConfig(token_budget=256, max_batch=16, kv_budget_tokens=700)
    d = _serve(reqs, cfg)
    assert d.run.kv_reserved.max() <= 700
    assert np.all(d.run.kv_used <= d.run.kv_reserved)
    assert d.run.iter_batch.max() <= 16
    assert d.metrics["kv_peak_fraction"] <= 1.0
    with pytest.raises(UserError, match="KV-cache budget is 50 tokens"):
        _serve(reqs, SchedulerConfig(token_budget=256, max_batch=16, kv_budget_tokens=50))


@pytest.mark.parametrize("text, want", [("2/s", 2.0), ("120/min", 2.0), ("0.5", 0.5),
                                        ("7200/h", 2.0)])
def test_rate_forms(text, want):
    assert parse_rate(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["0", "-1/s", "0/min", "fast", "2/day", "nan"])
def test_bad_rate(text):
    with pytest.raises(UserError, match="--rate"):
        parse_rate(text)


def test_slo_parsing_and_unknown_key():
    assert parse_slo("ttft=500ms,tpot=50ms") == pytest.approx({"ttft": 0.5, "tpot": 0.05})
    assert parse_slo("ttft=2s") == {"ttft": 2.0}
    with pytest.raises(UserError, match="unknown SLO key 'latency'"):
        parse_slo("ttft=500ms,latency=1s")
    with pytest.raises(UserError, match="expected a time"):
        parse_slo("tpot=fast")


def test_lengths_beyond_the_model_are_an_error():
    reqs = [Request(0, 0.0, 100, 10), Request(1, 1.0, 4000, 200)]
    with pytest.raises(UserError, match="request 1: prompt 4000 \\+ output 200 .* 4096"):
        check_lengths(reqs, "llama2-7b", 4096)


def test_trace_with_a_garbage_line_names_it(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"arrival_s": 0.0, "prompt_tokens": 10, "output_tokens": 5}\n'
                 '{"arrival_s": 0.5, "prompt_tokens": 12, "output_tokens": 3}\n'
                 'not json at all\n')
    with pytest.raises(UserError, match=r"t\.jsonl:3: expected"):
        load_trace(p)
    p.write_text('{"arrival_s": 1.0, "prompt_tokens": 0, "output_tokens": 5}\n')
    with pytest.raises(UserError, match=r":1: expected"):
        load_trace(p)


def test_trace_is_sorted_by_arrival(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"arrival_s": 2.0, "prompt_tokens": 10, "output_tokens": 5}\n\n'
                 '{"arrival_s": 0.5, "prompt_tokens": 12, "output_tokens": 3}\n')
    reqs = load_trace(p)
    assert [r.arrival_s for r in reqs] == [0.5, 2.0]
    assert [r.rid for r in reqs] == [0, 1]


def test_sharegpt_like_config_loads_and_samples():
    prompt, output = load_lengths("configs/serving/sharegpt_like.toml")
    reqs = poisson_requests(2.0, 2000, prompt, output, seed=0)
    p = np.array([r.prompt_tokens for r in reqs])
    o = np.array([r.output_tokens for r in reqs])
    assert p.min() >= 4 and p.max() <= 1024 and o.min() >= 4 and o.max() <= 1024
    # the vLLM paper's Fig. 11a ShareGPT means (the medians are solved for them, see the file)
    assert p.mean() == pytest.approx(161.31, rel=0.05) and o.mean() == pytest.approx(337.99,
                                                                                    rel=0.05)
    gaps = np.diff([r.arrival_s for r in reqs])
    assert np.mean(gaps) == pytest.approx(0.5, rel=0.1)


def test_sharegpt_sarathi_histogram_reproduces_the_trace_statistics():
    """The bins are the 5 % quantiles of Sarathi-Serve's ShareGPT trace; sampled they must give
    the statistics computed from that file (see its header): median, P90 and mean within 3 %."""
    import tomllib

    path = "configs/serving/sharegpt_sarathi.toml"
    prompt, output = load_lengths(path)
    rng = np.random.default_rng(0)
    p, o = prompt.sample(rng, 40_000), output.sample(rng, 40_000)
    for x, (median, p90, mean) in ((p, (1730, 5696, 2340)), (o, (415, 834, 439))):
        assert np.median(x) == pytest.approx(median, rel=0.03)
        assert np.percentile(x, 90) == pytest.approx(p90, rel=0.03)
        assert x.mean() == pytest.approx(mean, rel=0.03)
    assert p.max() <= 8141 and o.max() <= 1024 and p.min() >= 1
    with open(path, "rb") as f:
        src = tomllib.load(f)["source"]
    assert src["commit"] == "72339db5b120614033b317880ad3a05a5e4c9415"


def test_cli_bad_inputs_exit_2(capsys):
    from llmcosim.cli import main

    assert main(["serve", "--rate", "0/s"]) == 2
    assert "--rate" in capsys.readouterr().err
    assert main(["serve", "--rate", "1/s", "--slo", "p99=1s"]) == 2
    assert "unknown SLO key" in capsys.readouterr().err


def test_far_below_capacity_poisson_ttft_is_the_prefill():
    """Poisson at ~1/1000 of capacity: every arrival finds the device idle (checked), so each
    TTFT is the prefill of its prompt in one iteration (prompts <= the token budget)."""
    rate = _capacity_rate() / 1000
    reqs = poisson_requests(rate, 60, *SHORT, seed=11)
    d = _serve(reqs, SchedulerConfig(token_budget=512, max_batch=16))
    for rec in d.run.records:
        assert rec.admitted_s == rec.req.arrival_s
        ttft = rec.first_token_s - rec.req.arrival_s
        assert ttft == pytest.approx(d.table.prefill_s(rec.req.prompt_tokens), rel=1e-9)


def test_arrival_during_an_iteration_waits_at_most_that_iteration():
    """The one-iteration alignment: a request arriving while another decodes starts at the
    end of the running iteration, never later."""
    first = Request(0, 0.0, 64, 50)
    probe = _serve([first])
    t_first = probe.run.records[0].first_token_s
    step = float(probe.run.iter_s[1])              # a decode iteration of the first request
    arrival = t_first + 0.4 * step                 # mid-way through that iteration
    d = _serve([first, Request(1, arrival, 32, 5)])
    rec = d.run.records[1]
    wait = rec.admitted_s - arrival
    assert wait == pytest.approx(0.6 * step, rel=1e-6)
    ends = d.run.iter_start + d.run.iter_s
    assert rec.admitted_s in set(ends.tolist())    # admitted exactly at an iteration end


def test_cycle_level_hades_shares_dense_ops_and_decode_grows_with_the_context():
    """HADES's cycle-level simulator splits each pass by op kind, so serving at --fidelity
    cycle (its default) builds a shared-dense table like the roofline's, not whole passes;
    its decode attention costs more at longer contexts (without the split every op would
    count as dense, blind to the context, and ``build_table`` refuses that), and a decode
    iteration equals the simulator's own decode pass."""
    assert default_fidelity("hades") == "cycle"
    d = serve_device(SPEC, ENTRY, [Request(0, 0.0, 100, 3900)], BASE, {"ttft": 1.0},
                     None, SOURCES)
    assert not d.table.separate and d.fidelity == "cycle"
    for row in d.table.dec_attn_s:   # the toy's 4 KB of KV per token outgrow its 4 MB weights
        assert all(a <= b for a, b in zip(row[:-1], row[1:], strict=True))
        assert row[-1] > 1.5 * row[0]
    table = build_table(SPEC, "cycle", *SOURCES, max_tokens=16, max_batch=2, max_context=64)
    g = SOURCES[1](2, 64)
    whole = run(SPEC, Workload(g.model, 2, 64, 1, None, g, g), "cycle")
    got, _ = table.iteration(2, 128.0, [])
    assert got * 1e3 == pytest.approx(whole.decode_ms_per_token, rel=0.01)
    blind = dataclasses.replace(whole, breakdown_ms={})
    with pytest.raises(UserError, match="no per-op split"):
        _split(blind, "decode")

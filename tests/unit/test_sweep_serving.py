"""Sweeps with a [serving] table (sweeps/serving.py): parsing, hashing, columns, analysis.

Simulation uses the toy graphs of test_serving (monkeypatched graph sources; no torch).
"""

from __future__ import annotations

import pytest

import sim.serving.device as device
from models.errors import UserError
from sweeps import parse_sweep, run_sweep
from sweeps.analysis import load, pareto, where
from tests.unit.serving_graphs import SOURCES

BASE = """
[sweep]
name = "serve_toy"
[hardware]
preset = "hades"
[workload]
model = "llama2-7b"
batch = [4, 16]
"""
SERVING = BASE + """
[serving]
rate = ["1/s", 1000000]
num_requests = 40
token_budget = 128
"""


def test_serving_table_makes_points_with_defaults():
    pts = parse_sweep(SERVING).points()
    assert len(pts) == 4
    assert sorted({p.rate for p in pts}) == [1.0, 1e6]
    p = pts[0]
    assert p.serving and p.requests == "configs/serving/sharegpt_like.toml"
    assert (p.num_requests, p.requests_seed, p.token_budget) == (40, 0, 128)
    assert p.slo == "ttft=500ms,tpot=50ms" and p.requests_digest
    assert len({q.key for q in pts}) == 4


def test_points_without_serving_keep_their_hashes():
    plain = parse_sweep(BASE).points()
    assert not any(p.serving for p in plain)
    # the serving inputs are left out of the hash while unset (as gamma, sparsity, ...)
    assert plain[0].key == parse_sweep(BASE.replace('name = "serve_toy"',
                                                    'name = "x"')).points()[0].key
    assert plain[0].key != parse_sweep(SERVING).points()[0].key


@pytest.mark.parametrize("line, msg", [
    ("rate = 0", "serving.rate = .*must be > 0"),
    ('rate = "2/s"\nslo = "p99=1s"', "unknown SLO key 'p99'"),
    ('rate = "2/s"\nrequests = "nope.toml"', "serving.requests: .*'nope.toml' does not exist"),
    ('rate = "2/s"\ntoken_budget = 0', "serving.token_budget = 0: expected a whole number >= 1"),
    ("speed = 3", "unknown key serving.speed"),
])
def test_bad_serving_values(line, msg):
    with pytest.raises(UserError, match=msg):
        parse_sweep(BASE + "[serving]\n" + line + "\n").points()


def test_serving_sweep_records_metrics_and_filters(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "default_sources", lambda entry: SOURCES)
    spec = parse_sweep(SERVING)
    db = tmp_path / "s.db"
    run_sweep(spec, db=db, workers=1, cache=False, progress=False)
    df, _ = load(db)
    assert list(df.status) == ["ok"] * 4
    assert df.goodput.notna().all() and (df.ttft_p99_ms > 0).all()
    assert df.decode_tokens_per_s.isna().all()      # a serving row has no single-pass result
    fast = df[df.rate == 1e6]
    # a burst: 16 running at once serve the burst faster than 4
    b4, b16 = (fast[fast.batch == b].serve_req_per_s.item() for b in (4, 16))
    assert b16 > b4
    assert len(where(df, "ttft_p99_ms < 1e9 and rate < 2")) == 2
    front = pareto(df, "goodput,-energy_per_request_j")
    assert 1 <= len(front) <= 4


def test_constraints_on_serving_metrics_filter_after_simulating(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "default_sources", lambda entry: SOURCES)
    free = parse_sweep(SERVING)
    run_sweep(free, db=tmp_path / "a.db", workers=1, cache=False, progress=False)
    ref, _ = load(tmp_path / "a.db")
    cut = float(ref.ttft_p99_ms.median())
    text = SERVING.replace('name = "serve_toy"',
                           f'name = "serve_toy"\nconstraints = ["ttft_p99_ms <= {cut!r}"]')
    run_sweep(parse_sweep(text), db=tmp_path / "b.db", workers=1, cache=False, progress=False)
    df, _ = load(tmp_path / "b.db")
    kept = df[df.status == "ok"]
    gone = df[df.status == "filtered"]
    assert len(kept) == (ref.ttft_p99_ms <= cut).sum() and len(gone) >= 1
    assert (gone.ttft_p99_ms > cut).all()            # metrics kept on filtered rows
    assert gone.error.str.contains("after simulating").all()


def test_serving_constraints_name_only_serving_metrics():
    with pytest.raises(UserError, match="may name only them"):
        parse_sweep(SERVING.replace('name = "serve_toy"',
                                    'name = "serve_toy"\nconstraints = ["goodput > batch"]'))
    with pytest.raises(UserError, match="unknown name 'goodput'"):
        parse_sweep(BASE.replace('name = "serve_toy"',
                                 'name = "serve_toy"\nconstraints = ["goodput > 1"]'))


def test_serving_points_with_speculation_serve_speculatively(tmp_path, monkeypatch):
    """[serving] + [speculation]: each point serves with the drafts (a gamma axis and alpha);
    before, the speculation table was silently ignored on serving points."""
    from models.graph import Phase
    from tests.unit.serving_graphs import toy_pass

    monkeypatch.setattr(device, "default_sources", lambda entry: SOURCES)
    monkeypatch.setattr(device, "verify_source",
                        lambda entry, rows: lambda b, c: toy_pass(b, rows, c, Phase.VERIFY))
    # (Speculation.graph_sources looks verify_source up at call time)
    text = BASE.replace("batch = [4, 16]", "batch = 4") + """
[speculation]
gamma = [2, 4]
alpha = "1.0"
[serving]
rate = "1/s"
num_requests = 20
token_budget = 128
"""
    db = tmp_path / "spec.db"
    run_sweep(parse_sweep(text), db=db, workers=1, cache=False, progress=False)
    df, _ = load(db)
    assert list(df.status) == ["ok", "ok"]
    import json

    for gamma in (2, 4):
        summary = json.loads(df[df.gamma == gamma].result.item())["extra"]["serving"]
        assert summary["speculation"]["gamma"] == gamma
        assert summary["speculation"]["mean_accepted"] == pytest.approx(gamma, rel=0.05)
    with pytest.raises(UserError, match="speculation.tree with .serving.: .*chains only"):
        parse_sweep(text.replace("gamma = [2, 4]", 'tree = "-1,0"'))
    # adaptive: the draft length chosen per iteration, a column and a summary entry
    adaptive = text.replace('alpha = "1.0"', 'alpha = "1.0"\nadaptive = [false, true]')
    db = tmp_path / "adaptive.db"
    run_sweep(parse_sweep(adaptive), db=db, workers=1, cache=False, progress=False)
    df, _ = load(db)
    # false is stored as unset (NULL): such points hash as in a sweep without the key
    assert len(df) == 4 and sorted(df.adaptive.fillna(0).tolist()) == [0, 0, 1, 1]
    for _, row in df[df.adaptive == 1].iterrows():
        s = json.loads(row.result)["extra"]["serving"]["speculation"]
        assert s["adaptive"] is True and 0 < s["mean_gamma"] <= row.gamma
    with pytest.raises(UserError, match="speculation.adaptive .* needs a .serving. table"):
        parse_sweep(BASE + "[speculation]\nadaptive = true\n")
    with pytest.raises(UserError, match="speculation.adaptive = 'yes': expected true or false"):
        parse_sweep(adaptive.replace("[false, true]", '"yes"'))

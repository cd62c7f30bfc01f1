"""Speculation (gamma, alpha, tree, draft, HADES draft engine) and FlightLLM compression
(sparsity config, keep fraction) as sweep axes; older results DBs and hashes stay valid.

Torch-free: speculative workloads are synthetic graphs (``tests.unit.hades_graphs``) put in
place of the traced ones; the FlightLLM points run on a ``*.workload.json`` toy decoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from models.errors import UserError
from sweeps import Store, parse_sweep, run_sweep
from sweeps.analysis import best, load
from sweeps.spec import Point
from tests.unit.hades_graphs import spec_workload
from tests.unit.test_sweep_run import toy_workload

TREE = Path(__file__).resolve().parents[2] / "configs/trees/binary_7.toml"

SPEC = f"""
[sweep]
fidelity = "{{fidelity}}"
[hardware]
preset = "{{preset}}"
{{hw}}
[workload]
model = "llama2-7b"
prefill = 64
decode = 64
[speculation]
gamma = [1, 4]
alpha = {{{{ min = 0.6, max = 0.9, steps = 2 }}}}
tree = ["chain", "{TREE}"]
"""


def hades_spec(preset: str = "hades", fidelity: str = "cycle",
               hw: str = 'draft_engine = ["separate", "shared"]') -> str:
    return SPEC.format(preset=preset, fidelity=fidelity, hw=hw)


def test_speculation_axes_expand_and_tree_points_drop_gamma():
    s = parse_sweep(hades_spec())
    pts = s.points()
    # (2 gammas + 1 tree) x 2 alphas x 2 draft engines: gamma is meaningless for a tree
    assert len(pts) == 12
    assert sorted(s.axis_names) == ["alpha", "draft_engine", "gamma", "tree"]
    assert {p.alpha for p in pts} == {"0.6", "0.9"}   # canonical text, no 0.6000000001
    tree_pts = [p for p in pts if p.tree is not None]
    assert len(tree_pts) == 4 and all(p.gamma is None for p in tree_pts)
    assert all(p.tree_parents == (-1, -1, 0, 0, 1, 1, 2) for p in tree_pts)
    assert {dict(p.overrides)["draft_engine"] for p in pts} == {"separate", "shared"}
    assert all(p.speculative for p in pts)
    # per-position acceptance is text; the same value written two ways is one point
    a = parse_sweep(hades_spec().replace("alpha = { min = 0.6, max = 0.9, steps = 2 }",
                                         'alpha = ["0.9, 0.8", "0.9,0.80"]'))
    assert {p.alpha for p in a.points()} == {"0.9,0.8"}


def test_constraints_read_speculation_inputs_and_string_fields():
    from sweeps.runner import plan

    rules = 'constraints = ["gamma <= 2", \'draft_engine == "separate"\']'
    s = parse_sweep(hades_spec().replace("[sweep]\n", f"[sweep]\n{rules}\n"))
    run, settled = plan(s, s.points())
    # gamma 4 or the shared engine break a rule; tree points (gamma unset) only the engine's
    assert len(run) == 4 and len(settled) == 8
    assert {(p.gamma, dict(p.overrides)["draft_engine"]) for p in run} == {
        (1, "separate"), (None, "separate")}


def test_string_fields_are_checked():
    with pytest.raises(UserError, match="hardware.draft_engine = 3: expected a string"):
        parse_sweep(hades_spec(hw="draft_engine = [3]"))
    with pytest.raises(UserError, match="a range needs a numeric input"):
        parse_sweep(hades_spec(hw="draft_engine = { min = 1, max = 2, steps = 2 }"))


def test_points_without_new_inputs_keep_their_hashes():
    p = Point("gpu-a100", "llama2-7b", 128, 512, 1, "float16", 4, None, "roofline",
              (("clock_hz", 1e9),))
    old = {k: v for k, v in dataclasses.asdict(p).items()
           if k in ("hw", "model", "prefill", "decode", "batch", "dtype", "weight_bits",
                    "kv_bits", "fidelity", "overrides", "model_digest", "derived")}
    blob = json.dumps(old, sort_keys=True, default=str)
    assert p.key == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert dataclasses.replace(p, gamma=4).key != p.key


def test_an_older_results_db_gets_the_new_columns(tmp_path):
    db = tmp_path / "old.db"
    Store(db).close()
    with sqlite3.connect(db) as c:
        for col in ("gamma", "alpha", "speedup", "mean_accepted"):
            c.execute(f"ALTER TABLE points DROP COLUMN {col}")
    with Store(db) as s:
        cols = {r[1] for r in s.db.execute("PRAGMA table_info(points)")}
    assert {"gamma", "alpha", "speedup", "mean_accepted"} <= cols


@pytest.fixture
def synthetic_speculation(monkeypatch):
    """Traced graphs replaced by synthetic target/draft graphs (no torch, no trace cache)."""
    import sweeps.worker as worker

    def load(point):
        assert point.speculative and point.draft is None
        return spec_workload(worker._spec_config(point), prefill=point.prefill,
                             decode=point.decode, target_layers=4)

    monkeypatch.setattr(worker, "_load", load)
    # FlightLLM trees trace passes of other token counts (draft levels, verify groups): the
    # same synthetic graphs at those counts
    import sim.flightllm.speculate as fs
    from tests.unit.hades_graphs import decoder

    def fallback(w, use_cache=True):
        def fb(phase, tokens, context, draft):
            dims = {"hidden": 256, "layers": 2, "model": "draft"} if draft else \
                {"hidden": 2048, "layers": 4, "model": "target"}
            return decoder(**dims, context=context, tokens=tokens, phase=phase)
        return fb
    monkeypatch.setattr(fs, "default_fallback", fallback)
    worker._WORKLOADS.clear()
    yield
    worker._WORKLOADS.clear()


def test_speculation_sweep_on_hades_and_a_gpu_stores_speculation_metrics(
        tmp_path, synthetic_speculation):
    s = run_sweep(parse_sweep(hades_spec()), db=tmp_path / "h.db", workers=1, progress=False,
                  cache=False)
    assert s.counts == {"ok": 12}
    df, meta = load(tmp_path / "h.db")
    assert df.alpha.dtype.kind == "f"   # i.i.d. acceptance becomes a number for plots
    assert df.speedup.notna().all() and df.mean_accepted.notna().all()
    chain = df[df.gamma.notna() & (df.draft_engine == "separate")].set_index(["gamma", "alpha"])
    # more drafts and a higher acceptance accept more tokens per round
    assert chain.loc[(4, 0.9), "mean_accepted"] > chain.loc[(4, 0.6), "mean_accepted"]
    assert chain.loc[(4, 0.9), "mean_accepted"] > chain.loc[(1, 0.9), "mean_accepted"]
    assert (df.decode_tokens_per_s / df.baseline_tokens_per_s - df.speedup).abs().max() < 1e-9
    assert best(df, "speedup").speedup.item() == df.speedup.max()   # maximised by name
    from reports.sweep import write_sweep_report

    write_sweep_report(tmp_path / "h.db", tmp_path / "rep")
    assert (tmp_path / "rep" / "speculation.png").stat().st_size > 1000
    assert "## Speculation" in (tmp_path / "rep" / "index.md").read_text()
    g = run_sweep(parse_sweep(hades_spec("gpu-a100", "roofline", "")), db=tmp_path / "g.db",
                  workers=1, progress=False, cache=False)
    assert g.counts == {"ok": 6}
    gdf, _ = load(tmp_path / "g.db")
    assert (gdf.fidelity == "roofline").all() and gdf.speedup.notna().all()
    c = run_sweep(parse_sweep(hades_spec("gpu-a100", "calibrated", "")), db=tmp_path / "c.db",
                  workers=1, progress=False, cache=False)
    # the calibrated GPU model runs chain speculation; token trees fail with the reason
    assert c.counts == {"ok": 4, "failed": 2}
    cdf, _ = load(tmp_path / "c.db")
    chain = ["gamma", "alpha"]
    ok = cdf[cdf.status == "ok"].set_index(chain).decode_tokens_per_s
    roof = gdf[gdf.gamma.notna()].set_index(chain).decode_tokens_per_s
    assert (ok < roof.loc[ok.index]).all()  # never faster than its roofline
    assert cdf[cdf.status == "failed"].error.str.contains("chain speculation on GPUs").all()
    # FlightLLM runs chain and tree speculation at cycle level
    f = run_sweep(parse_sweep(hades_spec("flightllm-u280", "cycle", "")), db=tmp_path / "f.db",
                  workers=1, progress=False, cache=False)
    assert f.counts == {"ok": 6}
    fdf, _ = load(tmp_path / "f.db")
    assert (fdf.fidelity == "cycle").all() and fdf.speedup.notna().all()


SPARSE = """
name = "toy_sparse"
description = "every linear sparse"
weight_bits = 4
[attention]
prefill = "causal"
[[linear]]
match = ["proj"]
keep = 0.5
"""


def sparsity_spec(model: Path, cfg: Path, dense: Path, fidelity: str) -> str:
    return f"""
[sweep]
fidelity = "{fidelity}"
[hardware]
preset = "flightllm-u280"
[workload]
model = "{model}"
prefill = 16
decode = 8
[compression]
sparsity = ["{cfg}", "{dense}", "none"]
keep = [0.25, 1.0, "none"]
weight_bits = [4, 8]
"""


@pytest.mark.parametrize("fidelity", ["roofline", "cycle"])
def test_sparsity_and_keep_axes_on_flightllm(tmp_path, fidelity):
    model = toy_workload(tmp_path / "toy.workload.json")
    cfg = tmp_path / "sparse.toml"
    cfg.write_text(SPARSE)
    dense = Path(__file__).resolve().parents[2] / "configs/sparsity/dense_int8.toml"
    spec = parse_sweep(sparsity_spec(model, cfg, dense, fidelity))
    s = run_sweep(spec, db=tmp_path / "s.db", workers=1, progress=False, cache=False)
    # keep without a sparsity config is the same point as keep = "none": 3 x 3 x 2 - 4
    assert s.total == 14
    df, _ = load(tmp_path / "s.db")
    failed = df[df.status == "failed"]
    rules = failed.error.str.contains("no \\[\\[linear\\]\\] rules")
    assert rules.sum() == 4   # dense_int8 has no [[linear]] rules for keep
    # sparsity "none" at cycle fidelity: the simulator's default, whose LLaMA-2-7B masks do
    # not cover the toy, so its prefill attention is dense causal (unmatched = "causal")
    assert s.counts == {"ok": 10, "failed": 4}
    ok = df[df.status == "ok"]

    def tps(cfg: str, keep: float | None, bits: int) -> float:
        name = ok.sparsity.map(lambda v: Path(v).stem if isinstance(v, str) else "none")
        k = ok.keep.isna() if keep is None else ok.keep == keep
        row = ok[(name == cfg) & k & (ok.weight_bits == bits)]
        assert len(row) == 1
        return float(row.decode_tokens_per_s.iloc[0])

    for bits in (4, 8):   # keep = 1: the config's linears dense = dense_int8 with those bits
        assert tps("sparse", 1.0, bits) == pytest.approx(tps("dense_int8", None, bits))
        assert tps("sparse", 0.25, bits) != tps("sparse", 1.0, bits)   # keep is applied
    keeps = (0.25, None, 1.0)   # None: the config's own keep (0.5)
    if fidelity == "cycle":
        return   # the toy's 256-wide linears are not memory-bound on the cycle model
    for bits in (4, 8):   # fewer weights kept: faster decode (memory-bound)
        assert tps("sparse", 0.25, bits) > tps("sparse", None, bits)
        assert tps("sparse", 0.25, bits) > tps("sparse", 1.0, bits)
    # at 8 bits half the weights + a 4-bit index per kept weight save bytes (at 4 bits not)
    assert tps("sparse", None, 8) > tps("sparse", 1.0, 8)
    for keep in keeps:   # fewer bits: faster
        assert tps("sparse", keep, 4) > tps("sparse", keep, 8)


def test_keep_replaces_only_sparse_rules():
    """The artifact setup's bias-only rule (q/k/v/o_proj) keeps its linears dense when a sweep
    sets keep: keep replaces the rules that set a kept fraction or pattern."""
    from sweeps.worker import _compression_config

    path = str(Path(__file__).resolve().parents[2] / "configs/sparsity/flightllm_qk70.toml")
    cfg = _compression_config(path, "", 0.25, None, None)
    sparse = [r for r in cfg.rules if r.keep is not None]
    assert [r.match for r in sparse] == [("q_proj", "k_proj")] and sparse[0].keep == 0.25
    assert [r.bias for r in cfg.rules if r.keep is None] == [True]

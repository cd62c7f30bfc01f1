"""The co-design sweep spec (configs/sweeps/u280_codesign.toml) and its report builder
(reports/codesign.py) on a small sweep of synthetic graphs (no torch)."""

from __future__ import annotations

import pytest

from sweeps import parse_sweep, run_sweep
from sweeps.analysis import load, pareto
from sweeps.resources import RESOURCE_METRICS
from sweeps.spec import INPUTS, load_sweep
from sweeps.worker import env_of, resolve_spec
from tests.unit.test_sweep_run import D, P, toy_workload


@pytest.fixture(scope="module")


def codesign():
    from reports.codesign import SPEC

    return load_sweep(SPEC)


def test_spec_parses_and_its_rules_name_real_columns(codesign):
    known = set(INPUTS) | set(codesign.field_types) | set(RESOURCE_METRICS)
    for c in codesign.constraints:
        assert c.names <= known, c.text
    named = set().union(*(c.names for c in codesign.constraints))
    assert {"resources_dsp", "resources_uram", "resources_bram"} <= named
    assert not named & {"resources_lut", "resources_lut_util"}   # see the file's comment
    assert {"cores", "mm_macs_per_cycle", "weight_channels", "weight_bits", "keep",
            "gamma"} <= set(codesign.axis_names)


def _point(sw, **want):
    for p in sw.points():
        ov = dict(p.overrides)
        if all(ov.get(k, getattr(p, k, None)) == v for k, v in want.items()):
            return p
    raise AssertionError(f"no point {want}")


def _broken(sw, p) -> list[str]:
    env = env_of(p, resolve_spec(p))
    return [c.text for c in sw.constraints if c.holds(env) is False]


def test_published_design_is_a_point_and_passes(codesign):
    p = _point(codesign, cores=3, mm_macs_per_cycle=4096, weight_channels=8, weight_bits=4,
               keep=0.7, gamma=None)
    assert not p.speculative and _broken(codesign, p) == []


def test_the_resource_rules_bite(codesign):
    """More A-buffer slices than the URAMs hold, and more MPE than the DSPs, are filtered."""
    uram = _point(codesign, cores=2, weight_channels=16)
    assert _broken(codesign, uram) == ["resources_uram <= fpga_uram288_count"]
    dsp = _point(codesign, cores=3, mm_macs_per_cycle=8192, weight_channels=8)
    assert _broken(codesign, dsp) == ["resources_dsp <= fpga_dsp_count"]


def test_draft_placement_rules(codesign):
    """A separate engine on 2 cores (no HBM channel left) is filtered by its rule, not a crash
    of the resource columns; URAM draft weights only at INT2."""
    sep = _point(codesign, cores=2, draft_engine="separate", gamma=3)
    assert _broken(codesign, sep) == ['draft_engine == "shared" or hbm_channels % cores > 0']
    uram = _point(codesign, cores=3, mm_macs_per_cycle=4096, weight_channels=8,
                  draft_weights="uram", weight_bits=4, gamma=3)
    assert _broken(codesign, uram) == ['draft_weights == "hbm" or weight_bits == 2']


def test_tree_points_count_the_verifier():
    from sweeps.resources import resource_columns

    sw = parse_sweep("""
[hardware]
preset = "flightllm-u280"
[speculation]
tree = ["chain", "-1,0,0"]
gamma = ["none"]
""")
    plain, tree = sorted(sw.points(), key=lambda p: p.speculative)
    lut = [resource_columns(resolve_spec(p), p)[0]["resources_lut"] for p in (plain, tree)]
    assert lut[1] > lut[0]   # the verifier's LUTs


def test_gamma_none_is_a_plain_decode_point():
    sw = parse_sweep("""
[hardware]
preset = "flightllm-u280"
[speculation]
alpha = 0.8
gamma = ["none", 2]
""")
    pts = sw.points()
    assert [p.speculative for p in pts] == [False, True]
    assert pts[0].alpha is None and pts[0].draft is None and pts[1].gamma == 2
    # a tree ignores gamma, "none" included: one tree point, still speculative
    trees = parse_sweep("""
[hardware]
preset = "flightllm-u280"
[speculation]
gamma = ["none", 2]
tree = ["chain", "-1,0,0"]
""").points()
    assert {(p.speculative, p.gamma, p.tree) for p in trees} == {
        (False, None, None), (True, None, "-1,0,0"), (True, 2, None)} and len(trees) == 3


def test_report_builds_the_pareto_table_and_plots(tmp_path):
    from reports.codesign import PARETO, build_report, row_of

    toy = toy_workload(tmp_path / "toy.workload.json")
    db = tmp_path / "cd.db"
    run_sweep(parse_sweep(f"""
[sweep]
name = "cd"
fidelity = "cycle"
constraints = ["resources_uram <= fpga_uram288_count"]
[hardware]
preset = "flightllm-u280"
cores = [2, 3]
weight_channels = [8, 16]
[workload]
model = "{toy}"
prefill = {P}
decode = {D}
"""), db=db, workers=1, progress=False, cache=False)
    df, meta = load(db)
    ok = df[df.status == "ok"]
    assert len(ok) == 2 and (df.status == "filtered").sum() == 2
    ref = row_of("published", ok[(ok.cores == 3)].iloc[0].to_dict())
    out = build_report(df, meta, tmp_path / "codesign.md", ref=ref, gpus=[],
                       caps={"resources_dsp": 9024, "resources_uram": 960})
    md = out.read_text()
    front = pareto(ok, PARETO)
    assert f"## Pareto front ({len(front)} designs" in md
    table = md.split("## Pareto front", 1)[1]
    assert table.count("\n| ") == len(front) + 1        # header + one row per design
    fastest = ok.decode_tokens_per_s.max()
    assert f"{fastest:.1f} tokens/s" in md and "**Target" in md
    for k in ("tradeoff", "resources", "split"):
        assert (tmp_path / f"codesign_{k}.png").stat().st_size > 1000


def test_row_of_reads_the_split_of_a_speculative_result():
    from reports.codesign import row_of

    r = {"decode_tokens_per_s": 80.0, "tokens_per_j": 1.5, "decode": 100,
         "breakdown_ms": {"decode": {"draft": 50.0, "verify": 1200.0, "rollback": 0.0}},
         "extra": {"verify_busy": {"LD": 0.4, "MV": 0.9}}}
    row = row_of("x", r)
    assert row["split_ms_per_token"] == {"draft": 0.5, "verify": 12.0}
    assert row["busy"]["MV"] == 0.9


def test_speculation_of_tells_trees_from_plain_points():
    import pandas as pd

    from reports.codesign import speculation_of

    df = pd.DataFrame({"gamma": [None, 3.0, None], "tree": [None, None, "trees/b7.toml"]})
    assert list(speculation_of(df)) == ["none", "γ = 3", "tree"]


def test_wall_time_from_the_rows():
    import pandas as pd

    from reports.codesign import _wall

    df = pd.DataFrame({"status": ["ok", "ok", "filtered", "ok"],
                       "finished_at": [100.0, 100.0, None, 160.0], "wall_s": [3.0, 7.0, None, 5.0]})
    assert _wall(df) == 70.0   # the first chunk started 10 s before it finished
    assert _wall(df[df.status == "filtered"]) is None

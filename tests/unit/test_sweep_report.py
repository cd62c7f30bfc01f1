"""The sweep report: Markdown/HTML with the Pareto designs, best rows and plots."""

from __future__ import annotations

from sweeps import parse_sweep, run_sweep
from sweeps.analysis import load, pareto
from tests.unit.test_sweep_run import spec_text, toy_workload


def test_report_lists_the_frontier_and_writes_plots(tmp_path):
    toy = toy_workload(tmp_path / "toy.workload.json")
    db = tmp_path / "r.db"
    run_sweep(parse_sweep(spec_text(toy)), db=db, workers=1, progress=False, cache=False)
    from reports.sweep import write_sweep_report

    page = write_sweep_report(db, tmp_path / "out", pareto="tokens_per_s,-total_ms")
    md = (tmp_path / "out" / "index.md").read_text()
    df, _ = load(db)
    front = pareto(df[df.status == "ok"], "tokens_per_s,-total_ms")
    assert f"({len(front)} designs)" in md
    assert "| 30 | constraint 'cores * mm_macs_per_cycle <= 12690' does not hold |" in md
    for png in ("pareto.png", "roofline.png", "axis_cores.png", "axis_weight_bits.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
    assert '<img src="pareto.png"' in page.read_text()

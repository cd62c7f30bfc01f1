"""The demo report: every section present, the progress total equal to the steps taken."""

from __future__ import annotations

from reports.demo import SERVE_HW, write_demo


def test_demo_writes_every_section(tmp_path):
    ticks: list[tuple[int, int]] = []
    path = write_demo(tmp_path, model="llama-68m", prefill=16, decode=8,
                      echo=lambda _: None, progress=lambda d, t: ticks.append((d, t)))
    md = path.read_text()
    for section in ("| hardware | model / fidelity |", "## Each device at its best fidelity",
                    "## Serving: Poisson 1/s"):
        assert section in md
    serving = md.split("## Serving")[1]
    assert all(f"| {hw} |" in serving for hw in SERVE_HW)
    assert (tmp_path / "demo_compare.md").exists() and (tmp_path / "demo_breakdown.png").exists()
    assert ticks[-1][0] == ticks[-1][1] == len(ticks)   # the bar ends full, one tick a step

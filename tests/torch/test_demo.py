"""The demo report: every section present, the progress total equal to the steps taken."""

from __future__ import annotations

from reports.demo import SERVE_HW, write_demo


def test_demo_writes_every_section(tmp_path, monkeypatch):
    # the zoo has no smaller draft for llama-68m; it drafts for itself (same vocabulary), so
    # the speculative rows run on the small model
    monkeypatch.setattr("reports.demo.demo_draft", lambda entry: "llama-68m")
    ticks: list[tuple[int, int]] = []
    path = write_demo(tmp_path, model="llama-68m", prefill=16, decode=8,
                      echo=lambda _: None, progress=lambda d, t: ticks.append((d, t)))
    md = path.read_text()
    for section in ("| hardware | model / fidelity |", "## Each device at its best fidelity",
                    "## Serving: Poisson 1/s"):
        assert section in md
    serving = md.split("## Serving")[1]
    assert all(f"| {hw} |" in serving for hw in SERVE_HW)
    assert "| hades | cycle (FP16, spec γ4 α0.8 llama-68m) |" in serving   # HADES speculating
    assert (tmp_path / "demo_compare.md").exists() and (tmp_path / "demo_breakdown.png").exists()
    assert ticks[-1][0] == ticks[-1][1] == len(ticks)   # the bar ends full, one tick a step


def test_demo_codesign_row_runs_cycle_level_and_beats_the_published_design():
    """The demo's FlightLLM speculative rows (published U280 and the co-designed variant) run
    the cycle-level speculation schedule; the variant's 4-row MVs make its verify cheaper, so
    at the same draft and acceptance it decodes faster than the published design."""
    from reports.demo import CODESIGN_GAMMA, CODESIGN_HW, _speculative

    pub = _speculative("flightllm-u280", "tinyllama-1.1b", "llama-68m", 16, 24)
    co = _speculative(str(CODESIGN_HW), "tinyllama-1.1b", "llama-68m", 16, 24,
                      gamma=CODESIGN_GAMMA)
    assert pub.fidelity == co.fidelity == "cycle"
    assert co.hw == "flightllm-u280-codesign"
    assert co.decode_tokens_per_s > 1.5 * pub.decode_tokens_per_s

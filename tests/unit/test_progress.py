"""The progress helper: a live bar only on a terminal, one summary line otherwise, silent
under --json; and the simulators' callbacks that feed it."""

from __future__ import annotations

import io
import re

from llmcosim.progress import TaskProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _work(bar: TaskProgress, n: int = 3) -> None:
    for i in range(n + 1):
        bar(i, n)


def test_not_a_terminal_prints_only_the_final_line():
    err = io.StringIO()
    with TaskProgress("flightllm-u280 cycle", "programs", verb="simulated", stream=err) as bar:
        _work(bar)
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"flightllm-u280 cycle: simulated 3 programs in \d+\.\d s", lines[0])
    assert "\x1b" not in err.getvalue()      # no escape codes, no bar redraws


def test_disabled_under_json_prints_nothing():
    err = _Terminal()
    with TaskProgress("compare", "devices", enabled=False, stream=err) as bar:
        _work(bar)
    assert err.getvalue() == ""


def test_terminal_shows_a_live_bar_then_the_summary():
    err = _Terminal()
    with TaskProgress("rtl verify", "configurations", verb="verified", stream=err) as bar:
        assert bar.live
        _work(bar, 2)
    text = err.getvalue()
    assert "\x1b" in text                     # the bar was drawn (and erased: transient)
    assert text.rstrip().splitlines()[-1].endswith(" s")
    assert "rtl verify: verified 2 configurations in" in text


def test_work_that_never_reports_prints_nothing():
    err = io.StringIO()
    with TaskProgress("gpu-h100 roofline", "programs", stream=err):
        pass
    assert err.getvalue() == ""


def test_opaque_step_and_unfinished_count_say_so():
    err = io.StringIO()
    with TaskProgress("rtl synth csd_chain", "Yosys synth_xilinx", opaque=True, stream=err):
        pass
    assert re.fullmatch(r"rtl synth csd_chain: Yosys synth_xilinx in \d+\.\d s\n",
                        err.getvalue())
    err = io.StringIO()
    with TaskProgress("demo", "steps", stream=err) as bar:
        bar(2, 5)
    assert "demo: 2/5 steps in" in err.getvalue()


def test_an_error_leaves_no_summary():
    err = io.StringIO()
    try:
        with TaskProgress("demo", "steps", stream=err) as bar:
            bar(1, 3)
            raise ValueError("boom")
    except ValueError:
        pass
    assert err.getvalue() == ""


def test_compare_reports_each_device():
    from reports.compare import compare
    from tests.unit.test_compare import _workload

    calls: list[tuple[int, int]] = []
    compare(["gpu-a100", "hades"], _workload(), cycle=False,
            progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]


def test_cli_compare_json_is_silent_on_stderr(tmp_path, monkeypatch, capsys):
    from llmcosim.cli import main
    from tests.unit.test_compare import _cache_gpt2

    _cache_gpt2(monkeypatch, tmp_path)
    base = ["compare", "--model", "gpt2", "--prefill", "8", "--decode", "4",
            "--hw", "gpu-a100,hades", "--no-cycle", "--out", str(tmp_path / "out")]
    assert main([*base, "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(base) == 0
    err = capsys.readouterr().err.splitlines()  # pytest's stderr is no terminal: one line
    assert len(err) == 1 and err[0].startswith("compare gpt2: simulated 2 devices in ")


def test_flightllm_cycle_simulate_counts_programs(monkeypatch, capsys):
    """One tick per program simulated: the prefill and each decode bucket (contexts 20..43,
    bucket 16: two programs); --json keeps stderr clean."""
    from llmcosim.cli import main
    from tests.unit import test_flightllm_cli as fl

    fl.small_workload.__wrapped__(monkeypatch)
    argv = ["simulate", "--hw", "flightllm-vhk158", "--model", "llama2-7b", "--prefill", "20",
            "--decode", "24", "--sparsity", fl.CFG_FILE]
    assert main([*argv, "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert re.search(r"^flightllm-vhk158 cycle: simulated 3 programs in \d+\.\d s$", err, re.M)


def test_gpu_validate_ticks_once_per_whole_model_point(monkeypatch):
    """validate_all's total is the number of whole-model points both checks predict (the
    per-step predictor is stubbed: the count, not the accuracy, is under test here)."""
    import sim.gpu.validate as gv

    monkeypatch.setattr(gv, "predict_step", lambda r, c, *dev: 1.0)
    monkeypatch.setattr(gv, "predict_prefill", lambda r, c, *dev: 1.0)
    calls: list[tuple[int, int]] = []
    own, res = gv.validate_all(steps=True, progress=lambda d, t: calls.append((d, t)))
    whole = [p for p in own["points"] + res["points"]
             if p["op"].startswith(("step", "prefill"))]
    assert calls == [(i, len(whole)) for i in range(1, len(whole) + 1)]
    assert len(whole) > 0

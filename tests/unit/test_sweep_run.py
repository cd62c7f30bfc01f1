"""Running sweeps: local/Ray backends, SQLite rows, failures, resume after kill -9, analysis.

Workloads are synthetic graphs saved as ``*.workload.json`` (no torch). The kill test runs
the sweep in a subprocess through a slowed-down copy of the roofline registered as a test
fidelity, kills its whole process group with SIGKILL mid-run, resumes, and compares with an
uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.graph import Phase
from models.workload import Workload
from sweeps import Store, parse_sweep, run_sweep
from sweeps.analysis import load, pareto, pareto_mask, sensitivity, where
from sweeps.workloads import save_workload_file
from tests.unit.graphs import decoder_like

METRICS = ["prefill_ms", "decode_ms_per_token", "decode_tokens_per_s", "total_ms", "energy_j",
           "tokens_per_j", "fits_memory", "memory_bytes"]
P, D = 16, 8


def toy_workload(path: Path, layers: int = 4) -> Path:
    w = Workload("toy", 1, P, D, decoder_like(layers, 256, 0, Phase.PREFILL),
                 decoder_like(layers, 256, P), decoder_like(layers, 256, P + D - 1))
    return save_workload_file(w, path)


def spec_text(model: Path, extra: str = "", fidelity: str = "roofline") -> str:
    return f"""
[sweep]
name = "toy"
fidelity = "{fidelity}"
constraints = ["cores * mm_macs_per_cycle <= 12690"]
{extra}
[hardware]
preset = "flightllm-u280"
dsp_count = 0
hbm_channels = [8, 16, 32]
clock_hz = {{ min = "100 MHz", max = "300 MHz", steps = 5 }}
cores = [1, 2, 3, 4]
[hardware.derived]
hbm_bytes_per_s = "hbm_channels * hbm_channel_bytes_per_s"
[workload]
model = "{model}"
prefill = {P}
decode = {D}
[compression]
weight_bits = [4, "none"]
"""


def table(db: Path) -> dict[str, tuple]:
    with Store(db, readonly=True) as s:
        return {r["hash"]: (r["status"], r["error"], *(r[m] for m in METRICS))
                for r in s.rows()}


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return toy_workload(tmp_path / "toy.workload.json")


def test_local_sweep_records_every_point_failures_and_filters(tmp_path, toy):
    # An impossible spec (cross-channel efficiency above same-channel) fails with its message.
    text = spec_text(toy).replace("dsp_count = 0", "dsp_count = 0\nhbm_eff_cross_channel = 0.9")
    spec = parse_sweep(text)
    s = run_sweep(spec, db=tmp_path / "r.db", workers=2, progress=False, cache=False)
    rows = table(tmp_path / "r.db")
    assert s.total == len(rows) == 3 * 5 * 4 * 2
    statuses = {r[0] for r in rows.values()}
    assert statuses == {"failed"}   # eff_cross 0.9 > eff_same 0.7: every spec is impossible
    assert all("hbm_eff_cross_channel must not exceed" in r[1] for r in rows.values())

    s = run_sweep(parse_sweep(spec_text(toy)), db=tmp_path / "ok.db", workers=2,
                  progress=False, cache=False)
    rows = table(tmp_path / "ok.db")
    assert s.counts == {"ok": 90, "filtered": 30}
    assert all("cores * mm_macs_per_cycle" in r[1] for r in rows.values() if r[0] == "filtered")
    ok = [r for r in rows.values() if r[0] == "ok"]
    assert all(r[4] > 0 for r in ok)  # decode tokens/s


def test_a_point_that_raises_is_recorded_and_the_rest_run(tmp_path, toy):
    text = spec_text(toy).replace(f'model = "{toy}"',
                                  f'model = ["{toy}", "{tmp_path}/missing.workload.json"]')
    s = run_sweep(parse_sweep(text), db=tmp_path / "r.db", workers=2, progress=False,
                  cache=False)
    assert s.counts == {"ok": 90, "failed": 90, "filtered": 60}
    with Store(tmp_path / "r.db", readonly=True) as st:
        failed = st.rows("failed")
    assert all("missing.workload.json' does not exist" in r["error"] for r in failed)


def test_results_independent_of_workers_chunks_and_cache(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path / "cache"))
    spec = parse_sweep(spec_text(toy))
    run_sweep(spec, db=tmp_path / "a.db", workers=1, chunk=7, progress=False, cache=False)
    run_sweep(spec, db=tmp_path / "b.db", workers=2, chunk=1, progress=False, cache=True)
    s = run_sweep(spec, db=tmp_path / "c.db", workers=2, progress=False, cache=True)
    assert table(tmp_path / "a.db") == table(tmp_path / "b.db") == table(tmp_path / "c.db")
    with Store(tmp_path / "c.db", readonly=True) as st:
        assert all(r["cached"] == 1 for r in st.rows("ok"))  # all programs from b
    assert s.ran == 90


def test_resume_skips_finished_points_and_refuses_to_overwrite(tmp_path, toy):
    spec = parse_sweep(spec_text(toy))
    run_sweep(spec, db=tmp_path / "r.db", workers=1, progress=False, cache=False)
    with pytest.raises(Exception, match="--resume"):
        run_sweep(spec, db=tmp_path / "r.db", workers=1, progress=False)
    s = run_sweep(spec, db=tmp_path / "r.db", workers=1, resume=True, progress=False)
    assert (s.skipped, s.ran) == (120, 0)


_KILL_SCRIPT = """
import sys, time
from sim import registry
from sim.roofline import simulate
def sleepy(spec, w):
    time.sleep(0.02)
    return simulate(spec, w)
registry.register("test-sleepy", sleepy)
from sweeps import parse_sweep, run_sweep
spec = parse_sweep(open(sys.argv[1]).read())
run_sweep(spec, db=sys.argv[2], workers=2, chunk=1, progress=False, cache=False,
          resume=len(sys.argv) > 3)
"""


def test_kill_minus_9_mid_sweep_then_resume_matches_uninterrupted(tmp_path, toy):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(spec_text(toy, fidelity="test-sleepy"))
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, str(script), str(spec_file), str(db)], env=env,
                            start_new_session=True)
    done = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and done < 20:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as c:
                    done = c.execute("SELECT COUNT(*) FROM points WHERE status = 'ok'"
                                     ).fetchone()[0]
            except sqlite3.OperationalError:
                pass  # schema not created yet
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, as `kill -9` would
    proc.wait()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ok = c.execute("SELECT COUNT(*) FROM points WHERE status = 'ok'").fetchone()[0]
    assert 20 <= ok < 90, "the kill must land mid-sweep"
    r = subprocess.run([sys.executable, str(script), str(spec_file), str(db), "resume"],
                       env=env, timeout=120)
    assert r.returncode == 0
    ref = tmp_path / "ref.db"
    subprocess.run([sys.executable, str(script), str(spec_file), str(ref)], env=env,
                   timeout=120, check=True)
    resumed, reference = table(db), table(ref)
    assert len(resumed) == 120 and resumed == reference
    with sqlite3.connect(db) as c:   # exactly once: no hash twice, every idx distinct
        assert c.execute("SELECT COUNT(DISTINCT hash), COUNT(DISTINCT idx), COUNT(*) "
                         "FROM points").fetchone() == (120, 120, 120)


def test_pareto_sensitivity_and_where(tmp_path, toy):
    vals = np.array([[1, 5], [2, 4], [2, 2], [0, 6], [3, 1], [1, 1]], dtype=float)
    assert pareto_mask(vals).tolist() == [True, True, False, True, True, False]
    run_sweep(parse_sweep(spec_text(toy)), db=tmp_path / "r.db", workers=1, progress=False,
              cache=False)
    df, meta = load(tmp_path / "r.db")
    assert sorted(meta["axes"]) == ["clock_hz", "cores", "hbm_channels", "weight_bits"]
    ok = df[df.status == "ok"]
    front = pareto(ok, "tokens_per_s,-total_ms")
    for _, r in ok.iterrows():   # nothing on the frontier is beaten in both metrics
        beats = ((front.decode_tokens_per_s >= r.decode_tokens_per_s)
                 & (front.total_ms <= r.total_ms))
        assert beats.any()
    assert front.decode_tokens_per_s.max() == ok.decode_tokens_per_s.max()
    sens = sensitivity(ok, meta["axes"], "tokens_per_s")
    assert sens["hbm_channels"] > 1.5 > sens["cores"] >= 1.0  # decode is bandwidth-bound
    sub = where(ok, "hbm_channels == 8 and cores < 3")
    assert len(sub) == 20 and set(sub.cores) == {1, 2}

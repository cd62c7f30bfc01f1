"""Real models: a sweep point equals the single-point entry points it replaces.

* speculation: the sweep reuses the traced draft/verify graphs across points; each row must
  equal ``sim.hades.speculate.speculate`` for the same inputs (HADES cycle, A100 roofline);
* FlightLLM compression: ``sparsity`` = the default config gives the registry's cycle result,
  and ``keep`` changes it.

Needs the trace cache (or torch) for LLaMA-2-7B and llama-68m; ~1 minute on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.zoo import get_model
from sim.hades.speculate import speculate
from sim.spec import load_preset
from sweeps import parse_sweep, run_sweep
from sweeps.analysis import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset, fidelity", [("hades", "cycle"), ("gpu-a100", "roofline")])
def test_speculation_points_equal_speculate(tmp_path, preset, fidelity):
    hw = 'draft_engine = ["shared"]' if preset == "hades" else ""
    text = f"""
[sweep]
fidelity = "{fidelity}"
[hardware]
preset = "{preset}"
{hw}
[workload]
model = "llama2-7b"
prefill = 64
decode = 32
[speculation]
gamma = [2, 4]
alpha = [0.7, "0.9,0.8,0.7"]
tree = ["chain", "{ROOT}/configs/trees/binary_7.toml"]
"""
    s = run_sweep(parse_sweep(text), db=tmp_path / "s.db", workers=2, progress=False,
                  cache=False)
    assert s.counts == {"ok": 6}   # (2 gammas + 1 tree) x 2 alphas
    df, _ = load(tmp_path / "s.db")
    spec = load_preset(preset)
    if preset == "hades":
        import dataclasses

        spec = dataclasses.replace(spec, draft_engine="shared")
    target = get_model("llama2-7b")
    for r in df.to_dict("records"):
        tree = None
        if isinstance(r["tree"], str):
            tree = (-1, -1, 0, 0, 1, 1, 2)
        gamma = None if r["gamma"] != r["gamma"] else int(r["gamma"])
        ref = speculate(spec, target, draft=None, gamma=gamma, alpha=str(r["alpha"]),
                        acceptance=None, tree=tree, prefill=64, decode=32, fidelity=fidelity)
        assert r["decode_tokens_per_s"] == pytest.approx(ref.decode_tokens_per_s, rel=1e-12)
        assert r["total_ms"] == pytest.approx(ref.total_ms, rel=1e-12)
        assert r["speedup"] == pytest.approx(ref.extra["speedup"], rel=1e-12)
        assert r["mean_accepted"] == pytest.approx(ref.extra["mean_accepted"], rel=1e-12)


def test_flightllm_sparsity_default_equals_registry_cycle(tmp_path):
    text = f"""
[sweep]
fidelity = "cycle"
[hardware]
preset = "flightllm-u280"
[workload]
model = "llama2-7b"
prefill = 32
decode = 4
[compression]
sparsity = ["{ROOT}/configs/sparsity/flightllm_qk70.toml", "none"]
keep = ["none", 0.25]
"""
    s = run_sweep(parse_sweep(text), db=tmp_path / "s.db", workers=2, progress=False,
                  cache=False)
    assert s.counts == {"ok": 3}   # keep without a sparsity file is dropped: 3 points
    df, _ = load(tmp_path / "s.db")
    default = df[df.sparsity.notna() & df.keep.isna()].decode_tokens_per_s.item()
    none = df[df.sparsity.isna()].decode_tokens_per_s.item()
    sparse = df[df.keep == 0.25].decode_tokens_per_s.item()
    assert default == pytest.approx(none, rel=1e-12)   # "none" = the simulator's default
    assert sparse > default   # q/k_proj at 4:16 instead of 70%: fewer weight bytes

"""HADES on real traced graphs (LLaMA-68M: small, traces in ~1 s) and the torch verify kernel."""

from __future__ import annotations

import numpy as np
import pytest

from mapping.acceptance import IIDAcceptance
from mapping.spec_workload import build_speculative_workload
from mapping.speculation import SpecConfig
from models.cache import get_graph
from models.graph import interpolate
from sim.hades.affine import AffineGraph
from sim.hades.simulate import simulate_speculative, speculative_roofline
from sim.hades.units import pass_cost
from sim.hades.verifier import verify_greedy
from sim.roofline import graph_bound_s
from sim.spec import load_preset

HADES = load_preset("hades")


def test_affine_costs_of_traced_verify_passes_are_exact():
    g0 = get_graph("llama-68m", "verify", tokens=5, context=32)
    g1 = get_graph("llama-68m", "verify", tokens=5, context=96)
    ag = AffineGraph.from_graphs(g0, g1)
    mid = interpolate(g0, g1, 64)
    for spec in (HADES, load_preset("gpu-a100")):
        assert ag.roofline_s(spec, 64) == pytest.approx(graph_bound_s(spec, mid), rel=1e-12)
    assert pass_cost(HADES, ag, 64).time_s >= graph_bound_s(HADES, mid)


@pytest.mark.parametrize("tree", [None, (-1, -1, 0, 0, 1, 2)])
def test_end_to_end_on_traced_graphs(tree):
    cfg = SpecConfig(gamma=3, tree=tree, acceptance=IIDAcceptance(0.7))
    w = build_speculative_workload("llama-68m", "llama-68m", prefill=32, decode=48, config=cfg)
    assert w.verify_first.tokens == cfg.verify_tokens
    r = simulate_speculative(HADES, w)
    assert r.decode == 48 and r.decode_tokens_per_s > 0
    assert r.extra["split_ms"]["verify"] >= r.extra["verify_bound_ms"]
    g = speculative_roofline(load_preset("gpu-a100"), w)
    assert g.extra["rounds"] == r.extra["rounds"]          # the same seeded rounds


def test_numpy_greedy_verifier_matches_the_torch_kernel():
    torch = pytest.importorskip("torch")
    from kernels.verify import verify_greedy as kernel_greedy

    rng = np.random.default_rng(5)
    for gamma in (1, 4, 8):
        draft = rng.integers(0, 3, size=(64, gamma))
        target = rng.integers(0, 3, size=(64, gamma + 1))
        a, t = verify_greedy(draft, target)
        ka, kt = kernel_greedy(torch.from_numpy(draft), torch.from_numpy(target), device="cpu")
        assert (a == ka.numpy()).all() and (t == kt.numpy()).all()

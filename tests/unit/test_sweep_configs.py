"""Every shipped sweep file (configs/sweeps/*.toml) parses and makes points, so the examples the
docs point to never rot; the speculative serving sweep makes serving points that speculate."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps import load_sweep

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "configs/sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_sweep_file_parses_and_makes_points(path):
    points = load_sweep(path).points()
    assert points and len({p.key for p in points}) == len(points)


def test_serve_spec_points_serve_speculatively_within_the_token_budget():
    points = load_sweep(ROOT / "configs/sweeps/serve_spec.toml").points()
    spec = [p for p in points if p.speculative]
    # 2 devices x 2 rates x (plain + 4 gammas x 2 alphas x fixed/adaptive)
    assert len(points) == 2 * 2 * (1 + 4 * 2 * 2) and len(spec) == 2 * 2 * 16
    assert all(p.serving for p in points) and all(p.tree_parents is None for p in spec)
    assert all(p.batch * (p.gamma + 1) <= p.token_budget for p in spec)
    assert sum(bool(p.adaptive) for p in spec) == len(spec) // 2

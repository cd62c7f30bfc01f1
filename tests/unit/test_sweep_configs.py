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
    assert len(points) == 2 * 4 * 2 * 2
    assert all(p.serving and p.speculative and p.tree_parents is None for p in points)
    assert all(p.batch * (p.gamma + 1) <= p.token_budget for p in points)

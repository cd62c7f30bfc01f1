"""The published A100/V100S figures: every number cites a source, and a bad file is refused."""

from __future__ import annotations

import pytest

from models.errors import UserError
from reports.gpu_published import METRICS, PUBLISHED, load_published


def test_every_published_point_cites_a_source_with_a_url():
    data = load_published()
    assert data["points"] and all(p["metric"] in METRICS for p in data["points"])
    for sid, s in data["sources"].items():
        assert s["url"].startswith("https://") and s["cite"] and s["device"], sid
    for p in data["points"]:
        assert p["value"] > 0 and p["stack"] in ("graph", "hf-eager") and p["case"]
        assert p["hw"].startswith("gpu-") and p["decode"] >= 1 and p["prefill"] >= 1


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('source = "lmdeploy-a100"', 'source = "nowhere"', 1), "nowhere"),
    (lambda s: s.replace('metric = "total_ms"', 'metric = "joules"', 1), "allowed"),
])
def test_a_point_with_an_unknown_source_or_metric_is_refused(tmp_path, edit, message):
    bad = tmp_path / "p.toml"
    bad.write_text(edit(PUBLISHED.read_text()))
    with pytest.raises(UserError, match=message):
        load_published(bad)

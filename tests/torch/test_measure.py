"""GPU-baseline measurement code, run on the CPU with tiny shapes (schema, sanity, order)."""

from __future__ import annotations

import json

import pytest
import torch

from kernels.measure import SCHEMA, measure_all
from llmcosim.cli import main


@pytest.fixture(scope="module")
def data():
    return measure_all(torch.device("cpu"), dtype="float32", dry_run=True, model="llama-68m",
                       warmup=1, repeat=5)


def _median(data, op, **shape):
    rows = [r for r in data["ops"] + data.get("decode_steps", [])
            if r["op"] == op and all(r["shape"].get(k) == v for k, v in shape.items())]
    assert len(rows) == 1, (op, shape)
    return rows[0]["median_s"]


def test_schema_and_provenance(data):
    assert data["schema"] == SCHEMA and data["dry_run"] is True
    for key in ("name", "torch", "date", "device"):
        assert data["device"][key]
    json.loads(json.dumps(data))  # serialisable as is
    assert {r["op"] for r in data["ops"]} == {"linear", "attention", "rmsnorm", "add"}
    assert len(data["decode_steps"]) == 6
    assert all(r["mode"] == "eager" for r in data["decode_steps"])  # no CUDA graphs on CPU


def test_every_timing_is_positive(data):
    for r in data["ops"] + data["decode_steps"]:
        assert 0 < r["min_s"] <= r["median_s"] and r["repeats"] == 5


def test_more_work_is_not_faster_beyond_noise(data):
    # 64x the FLOPs, 4x the KV, 4x the query tokens: at most 20% faster counts as noise.
    assert _median(data, "linear", m=64, k=256, n=512) >= 0.8 * _median(data, "linear", m=1,
                                                                         k=256, n=512)
    assert _median(data, "attention", q=1, context=256) >= 0.8 * _median(data, "attention", q=1,
                                                                          context=64)
    assert _median(data, "decode_step", q=4, context=48) >= 0.8 * _median(data, "decode_step",
                                                                           q=1, context=48)


def test_cli_needs_cuda_or_dry_run(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["gpu-baseline", "measure", "--model", "llama-68m"]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err
    assert main(["gpu-baseline", "measure", "--model", "nope", "--dry-run"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err

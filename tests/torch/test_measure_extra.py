"""Issue 19's measurement sections (generate, SDPA without masks, quantized GEMMs, batched
decode), run on the CPU with tiny shapes through the prepared script itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.measure import SCHEMA
from kernels.measure_extra import QUANT_KERNELS, measure_quant, plan_extra, schema_problems

_SECTIONS = "generate,attention_nomask,quant_ops,batch_steps"
_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """``bash benchmarks/gpu_baseline.sh OUT 60 --dry-run`` for the new sections only."""
    out = tmp_path_factory.mktemp("gpu")
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", "benchmarks/gpu_baseline.sh", str(out), "60", "--dry-run",
                    "--dtype", "float32", "--repeat", "2", "--only", _SECTIONS],
                   cwd=_ROOT, env=env, check=True, capture_output=True, timeout=240)
    assert "schema: ok" in (out / "log.txt").read_text()   # the script's own check
    return json.loads((out / "gpu.json").read_text())


def test_script_dry_run_writes_every_section_with_provenance(dry):
    assert dry["schema"] == SCHEMA and dry["dry_run"] is True
    assert schema_problems(dry) == []
    assert dry["command"].startswith("bash benchmarks/gpu_baseline.sh") and "--dry-run" in \
        dry["command"]
    assert not dry["skipped"] and not dry["errors"]
    p = plan_extra(dry_run=True)
    assert [r["model"] for r in dry["generate"]] == list(p["generate"])
    assert len(dry["quant_ops"]) == 3 * len(p["quant_shapes"]) * len(p["quant_ms"])
    assert {r["path"] for r in dry["attention_nomask"]} == {"flash_decode", "causal"}
    assert [r["shape"]["batch"] for r in dry["batch_steps"]] == list(p["batches"])


def test_generate_record_separates_the_per_token_cost(dry):
    g = dry["generate"][0]
    n1, n2 = g["shape"]["new_tokens"]
    assert len(g["total_s"][str(n1)]) == len(g["total_s"][str(n2)]) == 2
    assert g["tokens_per_s"] == pytest.approx(1 / g["per_token_s"])
    assert g["per_token_min_s"] <= g["per_token_s"]
    # a CPU dry run's few ms are at the mercy of the machine's load: the per-token cost must
    # be positive whenever the two lengths' timings do not overlap
    if min(g["total_s"][str(n2)]) > max(g["total_s"][str(n1)]):
        assert g["per_token_s"] > 0
    assert g["eager_step"]["context"] == g["shape"]["prompt"] + (n1 + n2) // 2
    assert g["power"]["available"] is False   # no NVML on the CPU: said, not invented


def test_quant_records_name_their_kernel(dry):
    """On the CPU every op runs (int4 through its CPU twin, and the record says so)."""
    kinds = {r["op"]: r["kernel"] for r in dry["quant_ops"]}
    assert kinds == {"linear_int4": "torch._weight_int4pack_mm_for_cpu",
                     "linear_int8": QUANT_KERNELS["int8"], "linear_fp8": QUANT_KERNELS["fp8"]}
    assert all(r["status"] == "ok" for r in dry["quant_ops"])
    w4 = next(r for r in dry["quant_ops"] if r["op"] == "linear_int4")
    assert w4["weight_bytes"] == w4["shape"]["k"] * w4["shape"]["n"] // 2


def test_a_missing_op_is_recorded_unsupported(monkeypatch):
    def refuse(*_a, **_k):
        raise RuntimeError("_scaled_mm: not supported on this device\nmore")

    monkeypatch.setattr(torch, "_scaled_mm", refuse)
    rows = measure_quant(torch.device("cpu"), dry_run=True, warmup=0, repeat=1)
    fp8 = [r for r in rows if r["op"] == "linear_fp8"]
    assert fp8 and all(r["status"] == "unsupported" for r in fp8)
    assert fp8[0]["error"] == "RuntimeError: _scaled_mm: not supported on this device"
    assert all(r["status"] == "ok" for r in rows if r["op"] != "linear_fp8")
    assert schema_problems({"device": {"name": "x", "date": "d", "torch": "t"},
                            "command": "c", "quant_ops": rows}) == []


def test_schema_problems_names_what_is_missing():
    bad = {"device": {"name": "NVIDIA H100", "device": "cuda", "date": "d", "torch": "t"},
           "generate": [{"op": "generate"}],
           "attention_nomask": [{"op": "attention_nomask", "shape": {}, "path": "causal",
                                 "median_s": 1.0, "min_s": 2.0, "flops": 1, "kv_bytes": 1}]}
    problems = schema_problems(bad)
    assert "device.cuda missing" in problems and "command missing" in problems
    assert any(p.startswith("generate[0] lacks") for p in problems)
    assert "attention_nomask[0] timings not positive and ordered" in problems


def test_nomask_sdpa_computes_what_the_masked_one_does():
    """The no-mask paths are the same attention: q = 1 with no mask equals an all-true mask,
    is_causal equals the lower-triangular mask, and enable_gqa equals repeating K/V."""
    torch.manual_seed(0)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    kr, vr = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    tril = torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(sdpa(q, k, v, is_causal=True, enable_gqa=True),
                               sdpa(q, kr, vr, attn_mask=tril))
    torch.testing.assert_close(sdpa(q[:, :, :1], kr, vr),
                               sdpa(q[:, :, :1], kr, vr, attn_mask=torch.ones(1, 6).bool()))


def test_batched_static_step_matches_a_full_forward():
    """The batched step the batch section times computes each sequence's own logits."""
    from kernels.measure_model import _quiet, build_model, static_step

    torch.manual_seed(0)
    model = build_model("llama-68m", torch.float32, torch.device("cpu"), layers=2)
    b, c = 3, 10
    ids = torch.randint(0, model.config.vocab_size, (b, c + 1))
    with _quiet():
        step = static_step(model, 1, c, torch.device("cpu"), prompt=ids[:, :c],
                           ids=ids[:, c:], batch=b)
        ref = model(input_ids=ids, use_cache=False).logits[:, c:]
        torch.testing.assert_close(step().logits, ref, rtol=1e-4, atol=1e-4)


def test_a_failed_graph_capture_is_timed_eagerly_and_said(monkeypatch):
    """On CUDA a capture can fail where the op itself runs: the row is kept, timed from queued
    eager calls, and names the capture error (the CPU has no graphs: the failure is forced)."""
    import kernels.measure_extra as mx

    real = mx.time_fn

    def no_graph(fn, device, **kw):
        if kw.get("graph"):
            raise RuntimeError("operation not permitted when stream is capturing")
        return real(fn, device, **kw)

    monkeypatch.setattr(mx, "time_fn", no_graph)
    row = mx._timed(lambda i: torch.ones(4) * i, torch.device("cpu"),
                    {"warmup": 0, "repeat": 2, "graph": True, "inner": 2})
    assert row["status"] == "ok" and row["cuda_graph"] is False and row["repeats"] == 2
    assert row["graph_error"] == "RuntimeError: operation not permitted when stream is capturing"
    with pytest.raises(RuntimeError):   # without graphs a failure is the op's: not hidden
        mx._timed(lambda i: (_ for _ in ()).throw(RuntimeError("x")), torch.device("cpu"),
                  {"warmup": 0, "repeat": 1})

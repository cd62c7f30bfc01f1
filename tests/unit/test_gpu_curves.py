"""Issue 19's curves in the GPU model: plumbing only, on SYNTHETIC measurement files.

Every timing below is SYNTHETIC: made here from known curve parameters (``_TRUE``), never
measured on any GPU, and no accuracy claim. The tests check that the model reads the sections
``kernels.measure_extra`` writes, fits only the rows it should, picks the kernel each
``--weight-bits`` / ``--gpu-stack`` asks for, and falls back with a note when a device's files
lack a curve.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from mapping.compression import quantize
from models.workload import Workload
from sim.gpu import calibrate, power
from sim.gpu.curves import (
    Extras,
    GenerateCost,
    KernelCurve,
    curve_notes,
    fit_extras,
    is_fit_extra,
    nomask_time,
    quant_order,
    quant_time,
)
from sim.gpu.lower import kernels
from sim.gpu.model import kernel_times
from sim.registry import run
from sim.spec import load_preset
from tests.unit.graphs import decoder_like

H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"
_TRUE = {  # SYNTHETIC curve parameters: (fixed s, fraction of HBM BW, fraction of fp16 peak)
    "int4": (6e-6, 0.55, 0.45), "int8": (7e-6, 0.75, 1.3), "fp8": (5e-6, 0.8, 1.5),
    "flash_decode": (9e-6, 0.7, 1.0), "causal": (12e-6, 0.6, 0.5)}


def _curve(kind: str) -> KernelCurve:
    return KernelCurve(kind, f"synthetic {kind}", *_TRUE[kind], n_fit=0)


def _synthetic_sections(bw: float, peak: float) -> dict:
    """quant_ops / attention_nomask / generate rows shaped as kernels.measure_extra writes
    them, timed by the true curves (SYNTHETIC)."""
    quant = []
    for kind in ("int4", "int8", "fp8"):
        for k, n in ((4096, 4096), (4096, 11008), (11008, 4096), (4096, 32000)):
            for m in (1, 16, 32, 128, 512, 2048):
                if kind == "int8" and m < 32:   # as if _int_mm refused these (SYNTHETIC)
                    quant.append({"op": "linear_int8", "shape": {"m": m, "k": k, "n": n},
                                  "status": "unsupported", "kernel": "torch._int_mm",
                                  "error": "RuntimeError: synthetic refusal"})
                    continue
                t = float(quant_time(_curve(kind), m, k, n, bw, peak))
                quant.append({"op": f"linear_{kind}", "shape": {"m": m, "k": k, "n": n},
                              "status": "ok", "kernel": f"synthetic {kind}", "median_s": t,
                              "min_s": t, "weight_bytes": 0, "flops": 2 * m * k * n})
    nomask = []
    for path, sizes in (("flash_decode", (128, 256, 512, 1024, 2048, 4096)),
                        ("causal", (128, 256, 512, 1024, 2048, 4096))):
        for size in sizes:
            for kvh in (32, 8):
                q, c = (1, size) if path == "flash_decode" else (size, 0)
                kv = 2 * kvh * (c + q) * 128 * 2
                full = 4 * 32 * q * (c + q) * 128
                t = float(nomask_time(_curve(path), kv + 2 * 2 * 32 * q * 128, full, bw, peak))
                nomask.append({"op": "attention_nomask", "path": path, "median_s": t,
                               "min_s": t, "kv_bytes": kv,
                               "flops": full // (2 if path == "causal" else 1),
                               "shape": {"q": q, "context": c, "heads": 32, "kv_heads": kvh,
                                         "head_dim": 128}})
    generate = [{"op": "generate", "model": m, "shape": {"prompt": 128, "new_tokens": [16, 80]},
                 "per_token_s": step + 0.004, "per_token_min_s": step + 0.003,
                 "tokens_per_s": 1 / (step + 0.004),
                 "eager_step": {"context": 176, "median_s": step, "min_s": step},
                 "power": {"available": True, "avg_power_w": w} if w else
                 {"available": False, "reason": "first model only"}}
                for m, step, w in (("llama2-7b", 0.025, 300.0), ("tinyllama-1.1b", 0.012, None))]
    return {"quant_ops": quant, "attention_nomask": nomask, "generate": generate}


def _clear() -> None:
    for f in (calibrate.baselines, calibrate.default_calibration, power.tdp_fractions,
              power.generate_fraction):
        f.cache_clear()


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """The real baseline files plus one SYNTHETIC H200 file with the issue-19 sections only
    (no per-op rows: the H200's newest ops must stay the measured ones)."""
    d = tmp_path_factory.mktemp("baselines")
    for f in calibrate.baselines_dir().glob("*.json"):
        shutil.copy(f, d / f.name)
    spec = load_preset("gpu-h200")
    data = {"schema": "llmcosim.gpu-baseline/2", "dry_run": False,
            "synthetic": "test fixture made from known curves; not a measurement",
            "command": "tests/unit/test_gpu_curves.py", "ops": [],
            "method": {"ops": "20 calls per timing, CUDA-graph replay"},
            "device": {"name": H200, "date": "2026-12-06T00:00:00+00:00", "torch": "synthetic"},
            **_synthetic_sections(spec.mem_bytes_per_s, spec.peak_ops_per_s("float16"))}
    (d / "nvidia-h200-synthetic.json").write_text(json.dumps(data))
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMCOSIM_BASELINES", str(d))
    _clear()
    yield d
    mp.undo()
    _clear()


def test_a_file_without_ops_keeps_the_measured_ops(synthetic_dir):
    b = calibrate.baselines()[H200]
    assert b.ops and all(r["op"] in ("linear", "attention", "rmsnorm_hf", "layernorm", "add",
                                     "silu_mul", "graph_chain", "rmsnorm") for r in b.ops)
    assert b.quant and b.nomask and len(b.generate) == 2
    assert not calibrate.baselines()[H100].quant      # the H100 has none of the new sections


def test_fit_recovers_the_synthetic_curves_from_fit_rows_only(synthetic_dir):
    x = calibrate.default_calibration(H200).extras
    assert x is not None and x.device == H200
    for kind, true in _TRUE.items():
        c = x.curve(kind)
        assert c is not None, kind
        got = (c.fixed_s, c.bw_eff, c.flop_eff)
        # flash decoding is bandwidth-bound: its flop term is not fitted (1.0 by definition)
        for g, t in zip(got[:2] if kind == "flash_decode" else got, true, strict=False):
            assert g == pytest.approx(t, rel=0.03), (kind, got, true)
    assert x.generate == GenerateCost(pytest.approx(0.003), 300.0, "llama2-7b", 1)
    # rows the kernel refused are padded up to the fewest it ran with, and the note says so
    assert (x.curve("int8").min_rows, x.curve("int4").min_rows) == (32, 1)
    spec = load_preset("gpu-h200")
    assert quant_time(x.curve("int8"), 1, 4096, 4096, spec.mem_bytes_per_s, 1e15) == \
        quant_time(x.curve("int8"), 32, 4096, 4096, spec.mem_bytes_per_s, 1e15)
    assert "rows padded to 32" in curve_notes(x, H200, "graph", {8})[0]
    assert calibrate.default_calibration(H100).extras.curves == ()


def test_held_out_rows_never_move_the_extra_fit():
    spec = load_preset("gpu-h200")
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    s = _synthetic_sections(bw, peak)
    base = fit_extras(H200, s["quant_ops"], s["attention_nomask"], s["generate"], bw, peak,
                      spec.peak_ops_per_s("int8"))
    qo = quant_order(s["quant_ops"])
    assert sorted(qo, key=qo.get) == [(4096, 4096), (4096, 11008), (11008, 4096),
                                      (4096, 32000)]   # by weight size; even ones fitted
    moved = [{**r, "median_s": 3 * r["median_s"]} if "median_s" in r
             and not is_fit_extra(r, qo) else r for r in s["quant_ops"]]
    moved_nm = [{**r, "median_s": 3 * r["median_s"]} if not is_fit_extra(r) else r
                for r in s["attention_nomask"]]
    again = fit_extras(H200, moved, moved_nm, s["generate"], bw, peak,
                       spec.peak_ops_per_s("int8"))
    assert again == base
    held = [r for r in s["attention_nomask"] if not is_fit_extra(r)]
    assert {r["shape"]["kv_heads"] for r in held} == {8, 32}   # GQA and mid sizes held out


def _w(bits: int | None = None) -> Workload:
    g0, g1 = decoder_like(context=16), decoder_like(context=23)
    if bits:
        g0, g1 = quantize(g0, weight_bits=bits), quantize(g1, weight_bits=bits)
    return Workload("toy", 1, 0, 8, None, g0, g1)


def test_weight_bits_pick_the_kernel_curve():
    spec = load_preset("gpu-h200")
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    x = Extras(H200, tuple(_curve(k) for k in _TRUE))
    c = dataclasses.replace(calibrate.default_calibration(H200), extras=x)
    dense = dataclasses.replace(c, extras=None)
    for bits, w8, kind in ((4, "int8", "int4"), (8, "int8", "int8"), (8, "fp8", "fp8")):
        k = kernels(_w(bits).decode_first)
        assert set(k.lin_wbits) == {bits}
        m, kk, n = k.lin_mkn.T
        got = kernel_times(k, dataclasses.replace(c, extras=dataclasses.replace(x, w8=w8)),
                           bw, peak)["linear"]
        np.testing.assert_allclose(got, quant_time(_curve(kind), m, kk, n, bw, peak))
        assert not np.allclose(got, kernel_times(k, dense, bw, peak)["linear"])
    for bits in (0, 3):   # the model dtype, and a width torch ships no kernel for: dense curve
        k = kernels(_w(bits or None).decode_first)
        np.testing.assert_allclose(kernel_times(k, c, bw, peak)["linear"],
                                   kernel_times(k, dense, bw, peak)["linear"])


def test_the_stack_picks_the_attention_path():
    spec = load_preset("gpu-h200")
    bw, peak = spec.mem_bytes_per_s, spec.peak_ops_per_s("float16")
    c = dataclasses.replace(calibrate.default_calibration(H200),
                            extras=Extras(H200, (_curve("flash_decode"),)))
    g = decoder_like(context=16)
    vllm, graph = kernels(g, "vllm"), kernels(g, "graph")
    assert set(vllm.attn_nomask) == {1.0} and set(graph.attn_nomask) == {0.0}
    np.testing.assert_allclose(kernel_times(vllm, c, bw, peak)["attention"],
                               nomask_time(_curve("flash_decode"), vllm.attn_bytes,
                                           vllm.attn_flops, bw, peak))
    masked = kernel_times(graph, c, bw, peak)["attention"]
    np.testing.assert_allclose(masked, kernel_times(
        vllm, dataclasses.replace(c, extras=Extras(H200)), bw, peak)["attention"])


def test_notes_name_the_kernel_or_the_missing_curve():
    x = Extras(H200, (_curve("int4"),), GenerateCost(0.003, 300.0, "llama2-7b", 1))
    notes = " | ".join(curve_notes(x, H200, "vllm", {0, 4, 8, 3}))
    assert "W4 linears timed on synthetic int4's curve" in notes
    assert "int8 GEMM curve (torch._int_mm) not measured on NVIDIA H200" in notes
    assert "torch ships no 3-bit GEMM" in notes
    assert "no-mask SDPA (flash_decode, causal) not measured" in notes
    eager = " | ".join(curve_notes(Extras(H100), H100, "hf-eager", {0}))
    assert "generate() per-token host cost not measured on NVIDIA H100" in eager
    assert "3,000 us per token" in curve_notes(x, H200, "hf-eager", {0})[0]


def test_simulate_uses_fp8_on_its_own_gpu_int8_elsewhere_and_falls_back(synthetic_dir):
    notes = {hw: " | ".join(run(load_preset(hw), _w(8), "calibrated").notes)
             for hw in ("gpu-h200", "gpu-a100", "gpu-h100")}
    assert "W8 linears timed on torch._scaled_mm's curve (fp8" in notes["gpu-h200"]
    assert "W8 linears timed on torch._int_mm's curve (int8" in notes["gpu-a100"]
    assert "int8 GEMM curve (torch._int_mm) not measured on NVIDIA H100" in notes["gpu-h100"]
    vllm = run(load_preset("gpu-h100"), _w(), "calibrated", stack="vllm")
    assert any("no-mask SDPA (flash_decode, causal) not measured" in n for n in vllm.notes)


def test_hf_eager_adds_generate_host_time_and_its_power(synthetic_dir, monkeypatch):
    """generate()'s per-token host cost is added per decode pass and its measured power is
    charged while decoding (the toy graphs carry a torch-call count; the host cost per call
    is set, not fitted, so no traced model is needed)."""
    import importlib

    gs = importlib.import_module("sim.gpu.simulate")   # the package exports the function

    base = dataclasses.replace(calibrate.default_calibration(H200), host_s_per_call=1e-6)
    monkeypatch.setattr(gs, "calibration_for", lambda spec, host=False: base)
    w = _w()
    w = dataclasses.replace(w, decode_first=_counted(w.decode_first),
                            decode_last=_counted(w.decode_last))
    r = run(load_preset("gpu-h200"), w, "calibrated", stack="hf-eager")
    assert r.breakdown_ms["decode"]["generate() host"] == pytest.approx(8 * 3.0)
    assert r.extra["decode_power_w"] == 300.0 and r.extra["power_source"] == "measured"
    a100 = run(load_preset("gpu-a100"), w, "calibrated", stack="hf-eager")
    frac = 300.0 / load_preset("gpu-h200").power_w
    assert a100.extra["decode_power_w"] == pytest.approx(frac * load_preset("gpu-a100").power_w)
    assert any("hf-eager decode power modelled" in n for n in a100.notes)


def _counted(g):
    return dataclasses.replace(g, meta=(*g.meta, ("eager_torch_calls", 100)))


def test_validate_reports_the_new_classes_or_says_they_are_skipped(synthetic_dir):
    from sim.gpu.validate import validate

    res = validate(H200, steps=False, only=H200)
    groups = {e.group: e for e in res["classes"]}
    for label in ("linear int4", "linear int8", "linear fp8", "attention flash_decode (no mask)",
                  "attention causal (no mask)"):
        assert groups[label].n > 0 and groups[label].max < 0.05, label  # synthetic: exact form
    other = validate(H200, steps=False, only=H100)
    assert f"{H100}: linear int4 not measured; class skipped" in other["notes"]

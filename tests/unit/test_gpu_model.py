"""The calibrated GPU model: data provenance, fit/held-out separation, bounds, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcosim.cli import main
from models.errors import UserError
from models.workload import Workload
from sim.gpu.calibrate import (
    _borrow_odd_keys,
    baselines,
    calibrate,
    default_calibration,
    fastest_eager,
    fit_host,
    op_class,
    op_rows,
    predict_ops,
)
from sim.gpu.model import (
    HF_RMSNORM_OPS,
    Kernels,
    chip,
    kernel_times,
    kernels,
    norm_chain,
    small_columns,
)
from sim.registry import run
from sim.spec import load_preset
from tests.unit.graphs import decoder_like

H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"


def _bw_peak(name: str) -> tuple[float, float]:
    s = load_preset({H200: "gpu-h200", H100: "gpu-h100"}[name])
    return s.mem_bytes_per_s, s.peak_ops_per_s("float16")


def test_measured_devices_carry_provenance():
    data = baselines()
    assert {H200, H100} <= set(data)
    for b in data.values():
        assert b.info["driver"] and b.info["torch"] and b.date == "2026-11-27"
        assert {r["op"] for r in b.ops} >= {"linear", "attention", "add", "graph_chain"}
        assert all(r["median_s"] > 0 for r in b.ops)
        assert b.power["available"] and b.steps and b.prefill


def test_held_out_rows_never_move_the_fit():
    b = baselines()[H200]
    bw, peak = _bw_peak(H200)
    base = calibrate(b, bw, peak).params()
    held = {id(r) for r in op_rows(b, held_out=True)}
    assert held and len(held) < len(b.ops)

    def scaled(which: set[int]) -> dict[str, float]:
        ops = tuple({**r, "median_s": r["median_s"] * 3} if id(r) in which else r
                    for r in b.ops)
        return calibrate(dataclasses.replace(b, ops=ops), bw, peak).params()

    assert scaled(held) == base
    fitted = {id(r) for r in op_rows(b, held_out=False) if r["op"] == "linear"}
    assert scaled(fitted)["linear_s"] != pytest.approx(base["linear_s"], rel=0.05)


def test_efficiencies_are_fractions_of_the_datasheet():
    c = default_calibration()
    for name, v in c.params().items():
        assert v > 0, name
        if name.endswith("_eff"):
            assert v <= 1.0, name


def test_held_out_linear_on_the_fitted_device():
    b = baselines()[H200]
    rows = [r for r in op_rows(b, held_out=True) if r["op"] == "linear"]
    pred = predict_ops(rows, default_calibration(), *_bw_peak(H200))
    err = np.abs(pred / np.array([r["median_s"] for r in rows]) - 1)
    assert len(rows) > 50 and np.median(err) <= 0.10 and err.max() <= 0.25


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4096), st.integers(16, 16384), st.integers(16, 32768),
       st.integers(1, 64), st.integers(0, 8192))
def test_kernel_time_never_beats_the_roofline(m, k, n, q, ctx):
    c = default_calibration()
    bw, peak = _bw_peak(H200)
    z = np.zeros(0)
    kv = 2.0 * 32 * (ctx + q) * 128 * 2
    kk = Kernels(np.array([[m, k, n]], dtype=float), np.array([2.0]), np.array([float(q)]),
                 np.array([32.0]), np.array([kv]), np.array([4.0 * 32 * q * (ctx + q) * 128]),
                 np.array([float((ctx + q) % 2)]), *[z] * 13)
    t = kernel_times(kk, c, bw, peak)
    assert t["linear"][0] >= max(2.0 * k * n / bw, 2.0 * m * k * n / peak)
    assert t["attention"][0] >= kv / bw


def _toy_workload() -> Workload:
    return Workload("toy", 1, 0, 8, None, decoder_like(context=16), decoder_like(context=23))


def test_calibrated_is_above_the_roofline_and_faster_with_more_bandwidth():
    w = _toy_workload()
    for name in ("gpu-v100s", "gpu-a100", "gpu-h100", "gpu-h200"):
        spec = load_preset(name)
        assert run(spec, w, "calibrated").decode_ms_per_token >= \
            run(spec, w, "roofline").decode_ms_per_token
    a = load_preset("gpu-a100")
    faster = dataclasses.replace(a, hbm_bytes_per_s=2 * a.hbm_bytes_per_s)
    assert run(faster, w, "calibrated").decode_ms_per_token <= \
        run(a, w, "calibrated").decode_ms_per_token


def test_norm_expands_to_its_aten_kernels():
    g = decoder_like()
    n0 = g.nodes[0]
    norm = dataclasses.replace(n0, name="n/norm", kind=type(n0.kind)("norm"), op="LlamaRMSNorm",
                               weight_bytes=0, attrs=(("aten_ops", "to.dtype,pow.Tensor_Scalar,"
                                                       "mean.dim,add.Tensor,rsqrt.default,"
                                                       "mul.Tensor,to.dtype,mul.Tensor"),))
    k = kernels(dataclasses.replace(g, nodes=(norm,)))
    assert (k.small_elem.sum(), k.small_red.sum()) == (7, 1)


def _norm_graph(op: str, aten: str | None, rows: int, hidden: int, weight_bytes: int):
    g = decoder_like()
    n0 = g.nodes[0]
    norm = dataclasses.replace(
        n0, name="n/norm", kind=type(n0.kind)("norm"), op=op, in_shapes=((1, rows, hidden),),
        out_shape=(1, rows, hidden), dtype="float16", weight_bytes=weight_bytes,
        act_bytes=2 * rows * hidden * 2, attrs=(("aten_ops", aten),) if aten else ())
    return dataclasses.replace(g, nodes=(norm,))


@pytest.mark.parametrize("rows", [1, 512])
def test_measured_norm_rows_are_timed_as_the_graphs_norm_nodes(rows):
    """A per-op norm record is predicted with the same kernels and bytes as the traced graph's
    norm node (HF's eight-kernel RMSNorm; OPT's fused LayerNorm, weight and bias), so the
    per-op check tests what the whole-model steps use."""
    c = default_calibration()
    bw, peak = _bw_peak(H200)
    ch = chip(load_preset("gpu-h200"))
    for op, module, aten, wb in (("rmsnorm_hf", "LlamaRMSNorm", HF_RMSNORM_OPS, 4096 * 2),
                                 ("layernorm", "aten.layer_norm.default", None, 2 * 4096 * 2)):
        rec = {"op": op, "shape": {"rows": rows, "hidden": 4096}, "median_s": 1.0}
        node = kernel_times(kernels(_norm_graph(module, aten, rows, 4096, wb)), c, bw, peak,
                            *ch)
        assert predict_ops([rec], c, bw, peak, *ch)[0] == pytest.approx(node["other"].sum())


def _profiles() -> list[dict]:
    import json

    from sim.gpu.calibrate import baselines_dir

    files = sorted(baselines_dir().glob("kernels-probe-*.json"))
    assert len(files) >= 2  # the H100's and the H200's
    return [p for f in files for p in json.loads(f.read_text())["profiles"]]


def test_norm_kernel_types_are_the_profiled_ones():
    """Which of HF's RMSNorm's kernels PyTorch runs non-vectorised (a widening cast, a
    broadcast operand) is what torch.profiler named on both GPUs, at every row count and
    width: two at one row, three from two rows up; the add and SiLU x up run none."""
    for p in _profiles():
        names = [k["name"] for k in p["kernels"]]
        slow = sum("vectorized" not in x and "elementwise_kernel" in x for x in names)
        rows, width = p["shape"]["rows"], p["shape"]["hidden"]
        if p["op"] == "rmsnorm_hf":
            d = norm_chain(rows, width, HF_RMSNORM_OPS, 2, 2 * width)
            assert (slow, len(names)) == (d["legacy"], d["elem"] + d["red"]), p["shape"]
            assert slow == (2 if rows == 1 else 3)
        else:
            assert slow == 0, p


def test_l2_reuse_needs_the_writer_to_fit_half_the_l2():
    """SiLU's output is read back from L2 by the product only while the SiLU kernel's whole
    footprint fits in half the L2 (one partition): faster than HBM below, unchanged above."""
    c = default_calibration()
    bw, peak = _bw_peak(H200)
    half = load_preset("gpu-h200").l2_bytes / 2

    def t(rows: int, l2: float) -> float:
        rec = {"op": "silu_mul", "shape": {"rows": rows, "hidden": 11008}, "median_s": 1.0}
        return float(predict_ops([rec], c, bw, peak, l2)[0])

    small, big = 256, 2048               # 11 MiB and 86 MiB of footprint
    assert 2 * small * 11008 * 2 <= half < 2 * big * 11008 * 2
    assert t(small, 2 * half) < t(small, 0.0) and t(big, 2 * half) == t(big, 0.0)


def test_legacy_kernels_scale_with_the_chip_not_the_hbm():
    """A non-vectorised elementwise kernel is bound by its element rate per SM and clock: more
    HBM bandwidth leaves a large one's time alone, more SMs x clock shortens it."""
    c = default_calibration()
    d = {"elem": 1, "legacy": 1, "legacy_bytes": 2 * 2 ** 22 * 2, "legacy_elems": 2 ** 22}
    k = Kernels(np.zeros((0, 3)), *[np.zeros(0)] * 6, *small_columns([d]))
    sm_hz = 132 * 1.98e9

    def t(bw: float, sm: float) -> float:
        return float(kernel_times(k, c, bw, 1e15, 0.0, sm)["other"][0])

    assert t(4.8e12, sm_hz) == t(9.6e12, sm_hz) > t(4.8e12, 2 * sm_hz)


def test_each_gpu_on_its_own_fit_meets_the_bar_per_op():
    """Every per-op class (norms at every width, RMSNorm over rows, GEMMs, SDPA, elementwise,
    graph nodes) on the held-out points of each GPU's own fit, as --hw gpu-h100 / gpu-h200
    simulate; whole-model steps are checked in tests/torch/test_gpu_steps.py."""
    from sim.gpu.validate import validate_own

    got = validate_own(steps=False)["classes"]
    assert {e.device for e in got} == {H200, H100}
    assert {"norm", "reduction", "elementwise", "linear", "attention_mask"} <= \
        {e.group for e in got}
    assert all(e.ok for e in got), [e for e in got if not e.ok]


def test_each_eager_point_counts_its_fastest_run_once():
    """Host jitter only adds time: of two runs of one eager point, the faster one is kept
    (steps and prefills alike), graph-replayed steps are left alone, and the host fit uses
    the kept runs."""
    b = baselines()[H200]
    step = {"model": "llama2-7b", "mode": "eager", "shape": {"q": 1, "context": 128},
            "median_s": 0.03, "min_s": 0.02}
    slow = {**step, "median_s": 0.06, "min_s": 0.05}
    pre = {"model": "llama2-7b", "shape": {"tokens": 128}, "use_cache": True, "min_s": 0.02}
    fake = dataclasses.replace(b, steps=(slow, step, {**step, "mode": "cuda_graph"}),
                               prefill=(pre, {**pre, "min_s": 0.09}))
    steps, prefill = fastest_eager(fake)
    assert steps == [step] and prefill == [pre]
    assert fit_host(fake) == pytest.approx(fit_host(dataclasses.replace(fake, steps=(step,))))


def test_bad_inputs_are_clear():
    w = _toy_workload()
    with pytest.raises(UserError, match="unknown GPU stack 'tpu'; allowed: graph, vllm, hf-eager"):
        run(load_preset("gpu-h100"), w, "calibrated", stack="tpu")
    with pytest.raises(UserError, match="does not model flightllm-u280"):
        run(load_preset("flightllm-u280"), w, "calibrated")


def test_validate_cli_prints_every_class(capsys):
    assert main(["gpu-baseline", "validate", "--no-steps"]) == 0
    out = capsys.readouterr().out
    for word in ("NVIDIA H200", "NVIDIA H100", "linear", "attention_mask", "graph_node",
                 "own data", "transfer"):
        assert word in out


def test_simulate_cli_takes_the_gpu_stack(capsys):
    assert main(["simulate", "--hw", "gpu-h100", "--model", "llama2-7b", "--gpu-stack",
                 "graph"]) == 2
    assert "--gpu-stack applies to --fidelity calibrated" in capsys.readouterr().err


def test_calibrated_speculation_on_a_gpu():
    from mapping.acceptance import IIDAcceptance
    from mapping.speculation import SpecConfig
    from tests.unit.hades_graphs import spec_workload

    spec = load_preset("gpu-a100")
    good = spec_workload(SpecConfig(gamma=4, acceptance=IIDAcceptance(0.9), seed=0))
    bad = spec_workload(SpecConfig(gamma=4, acceptance=IIDAcceptance(0.0), seed=0))
    r_good, r_bad = run(spec, good, "calibrated"), run(spec, bad, "calibrated")
    assert r_good.decode_ms_per_token >= run(spec, good, "roofline").decode_ms_per_token
    assert r_good.extra["speedup"] > 1 > r_bad.extra["speedup"]  # rejecting every draft costs
    assert set(r_good.extra["split_ms"]) >= {"draft", "verify"}
    tree = spec_workload(SpecConfig(gamma=2, tree=(-1, 0, 0), acceptance=IIDAcceptance(0.8),
                                    seed=0))
    with pytest.raises(UserError, match="chain speculation on GPUs"):
        run(spec, tree, "calibrated")


def test_batched_decode_steps_equal_one_by_one():
    from sim.gpu.model import step_time_s, step_times_s

    c, (bw, peak) = default_calibration(), _bw_peak(H200)
    contexts = [16, 20, 24, 28, 32, 36, 40]
    k0, k1 = kernels(decoder_like(context=16)), kernels(decoder_like(context=40))
    batch, _ = step_times_s(k0.lerp_batch(k1, (np.array(contexts) - 16) / 24), k0.count, c,
                            bw, peak)
    single = [step_time_s(kernels(decoder_like(context=x)), c, bw, peak)[0] for x in contexts]
    assert batch == pytest.approx(single, rel=1e-12)
    assert np.all(np.diff(batch) > 0)  # a longer cache never decodes faster


def test_eager_host_time_is_torch_calls_times_the_call_cost():
    """hf-eager: a host-bound step takes its graph's torch calls x the per-call host cost; a
    graph without the count (not traced by models.trace) is an error, not a silent zero."""
    from sim.gpu.model import step_time_s

    c = dataclasses.replace(default_calibration(), host_s_per_call=10e-6)
    bw, peak = _bw_peak(H200)
    g = decoder_like(context=16)
    with pytest.raises(ValueError, match="no eager torch-call count"):
        step_time_s(kernels(g, "hf-eager"), c, bw, peak, "hf-eager")
    counted = dataclasses.replace(g, meta=(*g.meta, ("eager_torch_calls", 5000)))
    t, parts = step_time_s(kernels(counted, "hf-eager"), c, bw, peak, "hf-eager")
    device = step_time_s(kernels(counted, "hf-eager"), c, bw, peak, "graph")[0]
    assert device < t == pytest.approx(5000 * 10e-6)          # host-bound: 50 ms
    assert parts["host (eager launch)"] == pytest.approx(t - sum(
        v for k, v in parts.items() if k != "host (eager launch)"))


def test_eager_stack_without_a_call_count_is_a_clear_error():
    with pytest.raises(UserError, match="could not be counted"):
        run(load_preset("gpu-a100"), _toy_workload(), "calibrated", stack="hf-eager")


def test_the_odd_key_factor_is_pytorchs_and_a_device_without_it_borrows_it():
    """The odd-key SDPA slowdown is PyTorch's path choice: fitted on each GPU's own odd-q rows
    it comes out the same on both (within 5%); a device whose fitted rows lack it takes another
    device's factor and names its origin."""
    h200, h100 = default_calibration(H200), default_calibration(H100)
    assert h200.attn_mask_odd_factor > 1.3 and "odd-key" not in h200.source + h100.source
    assert h100.attn_mask_odd_factor == pytest.approx(h200.attn_mask_odd_factor, rel=0.05)
    b = baselines()[H100]
    even = dataclasses.replace(b, ops=tuple(r for r in b.ops
                                            if op_class(r) != "attention_odd_keys"))
    borrowed = _borrow_odd_keys(dataclasses.replace(h100, attn_mask_odd_factor=1.0), even,
                                baselines())
    assert borrowed.attn_mask_odd_factor == h200.attn_mask_odd_factor
    assert borrowed.source.endswith(f"odd-key SDPA factor from {H200}")

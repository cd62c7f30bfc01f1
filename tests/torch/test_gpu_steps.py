"""Whole-model steps predicted from per-op curves (never fitted on steps) vs the measured ones."""

from __future__ import annotations

import statistics

import pytest

from sim.gpu.calibrate import baselines, default_calibration
from sim.gpu.model import chip
from sim.gpu.steps import predict_step
from sim.spec import load_preset


@pytest.mark.parametrize("device", ["NVIDIA H200", "NVIDIA H100 80GB HBM3"])
def test_llama2_7b_graph_steps_meet_the_bar(device):
    """Fitted on the H200's per-op data only; on the H100 just the datasheet changes."""
    b = baselines()[device]
    spec = load_preset(b.preset)
    c = default_calibration("NVIDIA H200")
    rows = [r for r in b.steps if r["model"] == "llama2-7b" and r["mode"] == "cuda_graph"]
    errs = [abs(predict_step(r, c, spec.mem_bytes_per_s, spec.peak_ops_per_s("float16"),
                             *chip(spec))
                / r["median_s"] - 1) for r in rows]
    # every one of the 32 (q, context) points, measured in one or more runs (leases)
    assert len({(r["shape"]["q"], r["shape"]["context"]) for r in rows}) == 32
    assert statistics.median(errs) <= 0.10 and max(errs) <= 0.25, (statistics.median(errs),
                                                                   max(errs))


def test_eager_host_is_each_machines_own_and_never_validated_on():
    """The host time per torch call comes from a machine's own LLaMA-2-7B q = 1 eager steps:
    scaling them moves it, scaling any other eager step does not; and the validation's eager
    points are exactly the other ones."""
    import dataclasses

    from sim.gpu.calibrate import fit_host, is_host_fit
    from sim.gpu.validate import validate

    for b in baselines().values():
        host = fit_host(b)
        assert host is not None and 5e-6 < host < 50e-6      # a CPU's per-kernel dispatch

        def scaled(pick, b=b):
            steps = tuple({**r, "min_s": r["min_s"] * 2} if pick(r) else r for r in b.steps)
            return fit_host(dataclasses.replace(b, steps=steps))

        assert scaled(lambda r: r["mode"] == "eager" and not is_host_fit(r)) == host
        assert scaled(is_host_fit) == pytest.approx(2 * host)
    res = validate()
    eager = [p for p in res["points"] if p["op"] == "step eager"]
    fitted = {(p["device"], p["model"], p["shape"]["q"]) for p in eager}
    assert eager and not any(m == "llama2-7b" and q == 1 for _, m, q in fitted)
    assert {d for d, _, _ in fitted} == set(baselines())


def test_reduction_config_follows_the_torch_header():
    """``reduce_values_per_thread`` restates PyTorch's reduction launch config; the header that
    defines it ships with torch, so a torch whose config changed fails here."""
    import re
    from pathlib import Path

    import torch

    from sim.gpu.model import reduce_values_per_thread

    src = (Path(torch.__file__).parent / "include/ATen/native/cuda/Reduce.cuh").read_text()
    for line in ("static constexpr int MAX_NUM_THREADS = 512;",
                 "block_height = std::min(dim1_pow2, int(max_num_threads / block_width));",
                 "block_width = std::min(dim0_pow2, int(max_num_threads / block_height));",
                 "std::min<int>(block_height * 16, max_values_per_thread);",
                 "constexpr int max_values_per_thread = 256;",
                 "config.input_mult[1] = config.split_input(block_height);"):
        assert line in src, line
    assert re.search(r"dim0 >= 128 && iter.num_reduce_dims\(\) == 1", src)
    # one row: 512 threads of 8 values; 16 rows and more: a warp per row, 128 values each
    assert [reduce_values_per_thread(r, 4096) for r in (1, 2, 4, 8, 16, 32, 2048)] == \
        [8, 16, 32, 64, 128, 128, 128]
    assert reduce_values_per_thread(1, 896) == 7 and reduce_values_per_thread(1, 64) == 1


def test_norm_and_elementwise_launches_follow_the_torch_headers():
    """The fused layer norm's threads per row (``num_threads()``, four warps) and the choice of
    a vectorised, unrolled-with-casts or legacy broadcast elementwise kernel come from headers
    that ship with torch: a torch that changed them fails here."""
    from pathlib import Path

    import torch

    from sim.gpu.model import norm_values_per_thread

    inc = Path(torch.__file__).parent / "include/ATen/native/cuda"
    consts = (inc / "thread_constants.h").read_text()
    assert "return C10_WARP_SIZE * 4;" in consts
    loops = (inc / "CUDALoops.cuh").read_text()
    for line in ("if (!needs_dynamic_casting<func_t>::check(iter)) {",
                 "return launch_vectorized_kernel(numel, f, data);",
                 "launch_unrolled_kernel(", "launch_legacy_kernel<128, unroll_factor>"):
        assert line in loops, line
    # 128 threads x 4 halves per load: flat to width 512, then one load more per 512
    assert [norm_values_per_thread(w) for w in (128, 512, 640, 1024, 2048, 4096, 16384)] == \
        [1, 1, 2, 2, 4, 8, 32]


def test_odd_key_lengths_take_the_slower_sdpa_path():
    """A verify step of q tokens over a cache of c has c + q keys; odd ones take PyTorch's
    slower masked SDPA path (measured on both GPUs), so the lowering flags exactly those."""
    import dataclasses

    from sim.gpu.calibrate import calibrate, op_class
    from sim.gpu.model import kernels
    from sim.gpu.steps import step_graph

    odd, even = kernels(step_graph("llama2-7b", 3, 128)), kernels(step_graph("llama2-7b", 4, 128))
    assert len(odd.attn_odd) == 32 and odd.attn_odd.all() and not even.attn_odd.any()
    assert not kernels(step_graph("llama2-7b", 1, 128)).attn_odd.any()  # no mask at q = 1
    b = baselines()["NVIDIA H200"]
    assert default_calibration().attn_mask_odd_factor > 1.3
    # without odd-key measurements the factor is not invented: it stays 1
    spec = load_preset(b.preset)
    plain = dataclasses.replace(b, ops=tuple(r for r in b.ops
                                             if op_class(r) != "attention_odd_keys"))
    assert calibrate(plain, spec.mem_bytes_per_s,
                     spec.peak_ops_per_s("float16")).attn_mask_odd_factor == 1.0

"""FlightLLM chain speculation at cycle level: verify programs (MV mode, one sequence's
gamma + 1 tokens) and the draft/verify schedule (``sim.flightllm.speculate``), on synthetic
LLaMA-shaped graphs (``mapping.flightllm.synthetic``)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from mapping.acceptance import IIDAcceptance
from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression
from mapping.flightllm.synthetic import linear_graph, llama_like
from mapping.spec_workload import SpeculativeWorkload
from mapping.speculation import SpecConfig
from models.errors import UserError
from models.graph import Phase
from sim.flightllm.mpe import A_MV_BYTES_PER_CHANNEL
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.speculate import PassCache, rollback_s, simulate_speculative
from sim.flightllm.timing import arch_of
from sim.spec import load_preset

SPEC = load_preset("flightllm-u280")
KW = {"layers": 2, "hidden": 256, "heads": 4, "ffn": 512, "vocab": 1024}


def _verify(q: int, context: int, **kw) -> object:
    return llama_like(phase=Phase.VERIFY, tokens=q, context=context, **(kw or KW))


def _program(g):
    return generate(apply_compression(g), arch_of(SPEC))


def test_verify_of_one_token_is_the_decode_program():
    """q = 1: the verify program is the decode program, instruction for instruction."""
    dec = _program(llama_like(phase=Phase.DECODE, context=40, **KW))
    ver = _program(_verify(1, 40))
    for a, b in zip(dec.cores, ver.cores, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("q", [2, 5])
def test_verify_loads_each_tile_once_and_runs_q_mvs(q):
    """Weights and K/V tiles are loaded once for the q tokens (same LD count as decode over
    the same number of 512-key tiles), every MV runs once per token, and the causal mask costs
    no instruction (same MISC count: the softmax pass applies it)."""
    dec = _program(llama_like(phase=Phase.DECODE, context=100, **KW)).counts()
    ver = _program(_verify(q, 100 + 1 - q)).counts()   # same keys: context + tokens = 101
    assert ver["LD"] == dec["LD"] and ver["ST"] == dec["ST"]
    assert ver["MV"] == q * dec["MV"] and ver.get("MM", 0) == 0
    assert ver["MISC"] == dec["MISC"]


def test_verify_needs_its_tokens_in_the_b_buffer():
    """The q input vectors sit in the B buffer like a decode batch's (check_batch_buffers)."""
    k = 8192   # B buffer 131072 bytes: 16 vectors of 8192 INT8 fit, 17 do not
    g = dataclasses.replace(linear_graph(k, 1024, 17), phase=Phase.VERIFY)
    with pytest.raises(UserError, match="verify of 17 tokens.*at most 16 tokens"):
        generate(apply_compression(g), arch_of(SPEC))
    generate(apply_compression(dataclasses.replace(linear_graph(k, 1024, 16),
                                                   phase=Phase.VERIFY)), arch_of(SPEC))


def _ratios(spec) -> list[float]:
    """Verify time of q = 1..16 tokens over one weight-bound linear, / the 1-token time."""
    t = [simulate_graph(spec, apply_compression(dataclasses.replace(
        linear_graph(4096, 12288, q), phase=Phase.VERIFY))).cycles for q in range(1, 17)]
    return [x / t[0] for x in t]


@pytest.mark.parametrize("hbm_scale", [1.0, 0.25])
@pytest.mark.parametrize("mv_rows", [1, 2, 4])
def test_verify_knee_where_the_roofline_says(hbm_scale, mv_rows):
    """Per core, a weight tile of B bytes loads in B / H cycles, H = weight_channels x
    hbm_channel_bytes_per_s x hbm_eff_same_channel / clock_hz (HBM), and each MV reads it from
    the A buffer in B / A cycles, A = A_MV_BYTES_PER_CHANNEL x weight_channels, for up to
    m = mv_rows token rows at once (one row as published). With double buffering a tile costs
    max(B / H, ceil(q / m) x B / A), so a verify of q tokens costs max(1, ceil(q / m) / R)
    one-token passes, R = A / H (> 1: one token is HBM-bound): flat up to the knee
    q = m x floor(R), then a staircase of m tokens per step. U280: H = 8 x 14.375 GB/s x 0.7 /
    225 MHz = 357.8 B/cycle, A = 512, R = 1.43 (m = 1: a 5-token verify costs ~3.5 tokens;
    m = 4: a 4-token verify costs one); with the HBM 4x slower, R = 5.72. The U280's HBM refresh
    (tRFC 260 ns every tREFI 3.9 us) lowers H by 6.7%: R = 1.53 and 6.13."""
    spec = dataclasses.replace(SPEC, hbm_channel_bytes_per_s=SPEC.hbm_channel_bytes_per_s
                               * hbm_scale, mv_rows=mv_rows)
    h = spec.weight_channels * spec.hbm_channel_bytes_per_s * spec.hbm_eff_same_channel \
        / spec.clock_hz
    if spec.hbm_refresh_ns:  # data moves tREFI - tRFC of every tREFI (sim.flightllm.hbm)
        h *= 1 - spec.hbm_refresh_ns / spec.hbm_refresh_interval_ns
    r = A_MV_BYTES_PER_CHANNEL * spec.weight_channels / h
    got = _ratios(spec)
    for q, x in enumerate(got, 1):
        assert x == pytest.approx(max(1.0, math.ceil(q / mv_rows) / r), rel=0.06), (q, x, r)
    flat = [q for q, x in enumerate(got, 1) if x < 1.06]   # within 6% of one token
    assert max(flat) == min(len(got), mv_rows * math.floor(r))


def test_more_mv_macs_do_not_move_the_knee():
    """The MV is bound by the A buffer's read port, not the MACs: 4x mv_macs_per_cycle leaves
    every verify time unchanged (the knee moves only with the HBM/A-port ratio)."""
    fast = dataclasses.replace(SPEC, mv_macs_per_cycle=4 * SPEC.mv_macs_per_cycle)
    assert _ratios(fast) == _ratios(SPEC)


def _workload(gamma: int, alpha: float, prefill: int, decode: int, zero_cost: bool = False,
              tree=None, batch: int = 1) -> SpeculativeWorkload:
    cfg = SpecConfig(gamma=gamma, acceptance=IIDAcceptance(alpha), zero_cost_draft=zero_cost,
                     tree=tree)
    end = prefill + decode + gamma
    dkw = {"layers": 1, "hidden": 128, "heads": 2, "ffn": 256, "vocab": 1024}
    return SpeculativeWorkload(
        "llama-like", batch, prefill, decode,
        llama_like(phase=Phase.PREFILL, tokens=prefill, **KW),
        llama_like(context=prefill, **KW), llama_like(context=prefill + decode - 1, **KW),
        draft="draft-like", config=cfg,
        draft_prefill=llama_like(phase=Phase.PREFILL, tokens=prefill, **dkw),
        draft_first=llama_like(context=prefill, **dkw),
        draft_last=llama_like(context=end, **dkw),
        verify_first=_verify(gamma + 1, prefill), verify_last=_verify(gamma + 1, end),
        vocab=1024)


def test_zero_cost_draft_tokens_per_verify_and_no_free_verify():
    """Zero-cost draft, i.i.d. alpha: tokens per verify -> (1 - a^(g+1)) / (1 - a) over a long
    decode, and every verify costs at least one decode step at the same context."""
    g, a = 4, 0.8
    w = _workload(g, a, 128, 6000, zero_cost=True)
    res = simulate_speculative(SPEC, w, decode_bucket=512)
    e = res.extra
    assert 1 + e["mean_accepted"] == pytest.approx((1 - a ** (g + 1)) / (1 - a), rel=0.01)
    assert e["split_ms"]["draft"] == 0.0 and e["split_ms"]["rollback"] == 0.0
    assert res.fidelity == "cycle" and res.decode_tokens_per_s > 0
    verify = PassCache(SPEC, w.verify_first, w.verify_last, bucket=512)
    decode = PassCache(SPEC, w.decode_first, w.decode_last, bucket=512)
    for c in range(128, 6128, 700):
        assert verify.seconds(c) >= decode.seconds(c)
    # speculation is never charged less than one decode step per verify
    assert e["split_ms"]["verify"] / e["rounds"] >= decode.seconds(128) * 1e3


def test_schedule_adds_draft_steps_and_reports_the_split():
    w = _workload(3, 0.7, 64, 200)
    res = simulate_speculative(SPEC, w)
    e = res.extra
    assert e["split_ms"]["draft"] > 0 and e["split_ms"]["verify"] > 0
    assert res.decode_ms_per_token * res.decode == pytest.approx(
        sum(e["split_ms"].values()), rel=1e-9)
    assert e["speedup"] == pytest.approx(res.decode_tokens_per_s / e["baseline_tokens_per_s"])
    assert res.counts["draft_passes"] == 3 * e["rounds"]
    assert rollback_s() == 0.0
    # the verifier block, timed by the RTL's timing function: greedy, one request of 3 drafts
    # per round (1 beat + 2 cycles of latency, sim.blocks.verifier)
    assert e["split_ms"]["verifier"] == pytest.approx(e["rounds"] * 3 / SPEC.clock_hz * 1e3)


def test_batched_trees_are_refused():
    """Chains run at any batch (tests/unit/test_flightllm_spec_batch.py); trees at batch 1."""
    with pytest.raises(UserError, match="runs token trees at batch 1 only"):
        simulate_speculative(SPEC, _workload(2, 0.8, 64, 32, tree=(-1, 0), batch=2))


# SHA-1 of every core's instruction bytes, generated by the code before verify support
# (commit 78a0988): verify compiles in its own branch, decode and prefill stay byte-identical.
# (The same holds for the traced LLaMA2-7B, OPT-6.7B and TinyLlama programs at batch 1, 4, 8,
# checked by hand.) An intended change to decode/prefill code generation updates these.
PINNED = {
    ("flightllm-u280", Phase.DECODE): "623c84ae7cd23f3288c419d6f256d233f443bd3b",
    ("flightllm-u280", Phase.PREFILL): "197b27e28fc4c5c6eabf268cfeec9608c285f4e9",
    ("flightllm-vhk158", Phase.DECODE): "f17669a637d674937435a620ee7c610edeea9bf4",
    ("flightllm-vhk158", Phase.PREFILL): "a1ba92a9252023140eb275b3d574bb42ae11863e",
}


@pytest.mark.parametrize("preset, phase", list(PINNED))
def test_decode_and_prefill_programs_unchanged(preset, phase):
    import hashlib

    kw = {"layers": 4, "hidden": 512, "heads": 8, "ffn": 1024, "vocab": 1024}
    shape = {"context": 200} if phase is Phase.DECODE else {"tokens": 256}
    p = generate(apply_compression(llama_like(phase=phase, **shape, **kw)),
                 arch_of(load_preset(preset)))
    digest = hashlib.sha1(b"".join(a.tobytes() for a in p.cores)).hexdigest()
    assert digest == PINNED[preset, phase]

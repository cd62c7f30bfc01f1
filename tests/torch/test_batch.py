"""Batch > 1 on every device: a pass never gets faster with more sequences, total tokens/s
never falls with batch unless a stated resource bound is hit, and FlightLLM's batched decode
reads each weight tile once for all sequences (MV per sequence, each its own KV cache)."""

from __future__ import annotations

import numpy as np
import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression
from mapping.flightllm.isa import LD_TARGETS, Queue
from models.cache import get_graph, get_workload
from models.errors import UserError
from sim.flightllm.timing import arch_of
from sim.registry import run
from sim.spec import load_preset

MODEL = "tinyllama-1.1b"   # GQA (4 K/V heads of 32): the grouped decode attention too
BATCHES = (1, 2, 4, 8)
DEVICES = [("flightllm-u280", "cycle"), ("flightllm-vhk158", "cycle"), ("hades", "cycle"),
           ("gpu-h100", "calibrated"), ("gpu-a100", "roofline"), ("flightllm-u280", "roofline")]


@pytest.fixture(scope="module")
def workloads():
    return {b: get_workload(MODEL, prefill=64, decode=4, batch=b) for b in BATCHES}


@pytest.mark.parametrize("hw, fidelity", DEVICES)
def test_tokens_per_s_never_falls_with_batch(workloads, hw, fidelity):
    spec = load_preset(hw)
    steps, rates = [], []
    for b in BATCHES:
        r = run(spec, workloads[b], fidelity)
        steps.append(r.decode_ms_per_token)
        rates.append(r.decode_tokens_per_s)
        assert r.batch == b
        assert r.decode_tokens_per_s == pytest.approx(b * 1e3 / r.decode_ms_per_token)
    assert all(b >= a * (1 - 1e-9) for a, b in zip(steps, steps[1:], strict=False)), steps
    assert all(b >= a * (1 - 1e-9) for a, b in zip(rates, rates[1:], strict=False)), rates


def _decode_program(b: int, hw: str = "flightllm-u280"):
    g = apply_compression(get_graph(MODEL, "decode", context=64, batch=b))
    return generate(g, arch_of(load_preset(hw)))


def test_flightllm_batched_decode_reads_weights_once():
    one, two, four = (_decode_program(b) for b in (1, 2, 4))

    def a_bytes(p):   # the A buffer takes the weights and the K/V tiles in decode
        return sum(int(a["nbytes"][(a["queue"] == Queue.LD) & (a["op"] == LD_TARGETS["A"])]
                       .sum()) for a in p.cores)

    def mvs(p):
        return sum(int((a["queue"] == Queue.MV).sum()) for a in p.cores)

    kv_seq = a_bytes(two) - a_bytes(one)       # what one more sequence adds: its K/V only
    assert a_bytes(four) - a_bytes(one) == 3 * kv_seq
    g1 = apply_compression(get_graph(MODEL, "decode", context=64, batch=1))
    kv = sum(n.kv_read_bytes for n in g1.nodes)
    # every K/V head at least once per sequence (a GQA head split over two cores: twice)
    assert kv <= kv_seq <= 2 * kv
    weights = sum(n.weight_bytes for n in g1.nodes if n.kind.value == "linear")
    assert a_bytes(one) - kv_seq == pytest.approx(weights, rel=0.1)   # + packed indices
    assert mvs(four) == 4 * mvs(one)   # one MV per sequence and tile (MV_PARALLEL_M = 1)
    assert max(int(a["rows"][a["queue"] == Queue.MV].max()) for a in four.cores) == 1


def test_flightllm_batch_limit_names_the_buffer():
    spec = load_preset("flightllm-u280")
    g = get_graph(MODEL, "decode", context=64, batch=32)   # 32 x 5632 > 131072 bytes
    with pytest.raises(UserError, match=r"batch 32: .*B buffer.*down_proj needs 32 x 5632 "
                       r"bytes, more than its 131072 bytes; the largest batch for .* is 23"):
        generate(apply_compression(g), arch_of(spec))


def test_flightllm_batched_prefill_attention_per_sequence():
    """Two prompts of 64 tokens cost two 64-token attentions, not one 128-token causal one."""
    spec = load_preset("flightllm-u280")
    one, two = (generate(apply_compression(get_graph(MODEL, "prefill", tokens=64, batch=b)),
                         arch_of(spec)) for b in (1, 2))
    for p1, p2 in zip(one.cores, two.cores, strict=True):
        mm1 = p1[p1["queue"] == Queue.MM]
        mm2 = p2[p2["queue"] == Queue.MM]
        macs = [int(np.sum(m["rows"].astype(np.int64) * m["cols"] * m["k"])) for m in (mm1, mm2)]
        assert macs[1] == pytest.approx(2 * macs[0], rel=0.01)


@pytest.mark.parametrize("hw", ["hades", "gpu-a100"])
def test_speculation_at_batch(hw):
    """Batched verification with per-sequence acceptance: tokens/s grows with the batch, a
    round never gets cheaper, and the speedup is against the same batch without speculation."""
    from models.zoo import get_model
    from sim.hades.speculate import speculate

    spec = load_preset(hw)
    out = [speculate(spec, get_model("llama2-7b"), draft="llama-68m", gamma=4, alpha="0.8",
                     acceptance=None, tree=None, prefill=64, decode=32, batch=b)
           for b in (1, 2, 4)]
    rates = [r.decode_tokens_per_s for r in out]
    assert rates == sorted(rates), rates
    per_round = [r.extra["split_ms"]["verify"] / r.extra["rounds"] for r in out]
    assert per_round == sorted(per_round), per_round
    for r in out:
        base = r.extra["baseline_tokens_per_s"]
        assert r.extra["speedup"] == pytest.approx(r.decode_tokens_per_s / base)


def test_compare_shows_the_bound_where_flightllm_cannot_batch():
    """A batch past FlightLLM's buffers: ``compare`` keeps the other devices and shows the
    roofline row for FlightLLM with the refusal in its notes (not a silent fallback)."""
    from reports.compare import compare

    w = get_workload("llama2-7b", prefill=16, decode=2, batch=16)
    rows = {r.hw: r for r in compare(["flightllm-u280", "gpu-a100"], w)}
    fl = rows["flightllm-u280"]
    assert fl.fidelity == "roofline" and fl.source.startswith("roofline bound")
    assert "cycle refused (FlightLLM decode at batch 16" in fl.notes[0]
    assert "the largest batch for llama2-7b is 11" in fl.notes[0]
    assert rows["gpu-a100"].decode_tokens_per_s > 0

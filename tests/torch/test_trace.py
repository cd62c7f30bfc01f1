"""Traced graphs against the transformers models they come from (params, FLOPs, KV, verify)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.graph import OpKind, Phase, interpolate
from models.request import TraceRequest
from models.trace import build_model, forward_call, trace
from models.zoo import ZOO, get_model

MATMUL_KINDS = (OpKind.LINEAR, OpKind.MATMUL, OpKind.ATTENTION)


def _reference_flops(name: str, phase: str, tokens: int, context: int) -> int:
    """FlopCounterMode on the same forward pass, full depth, on the meta device."""
    entry = get_model(name)
    module, args = forward_call(entry, TraceRequest.make(entry, phase, tokens=tokens,
                                                         context=context))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", ["llama2-7b", "opt-6.7b", "gpt2"])
@pytest.mark.parametrize(("phase", "tokens", "context"), [("prefill", 128, 0),
                                                           ("decode", 1, 511)])
def test_params_and_flops_match_transformers(name, phase, tokens, context):
    g = trace(name, phase, tokens=tokens, context=context)
    model = build_model(get_model(name))
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    tot = g.totals()
    assert tot.params == n_params
    assert tot.param_bytes == n_params * 2  # float16
    ref = _reference_flops(name, phase, tokens, context)
    assert abs(tot.flops - ref) <= 0.01 * ref
    # FlopCounterMode counts matmul-class ops only; ours add a bias add per biased linear.
    mm = sum(n.flops for n in g.nodes if n.kind in MATMUL_KINDS)
    assert abs(mm - ref) <= 0.001 * ref


def test_decode_kv_bytes_grow_linearly_with_context():
    cfg = get_model("llama2-7b").config
    layers, hidden = cfg["num_hidden_layers"], cfg["hidden_size"]
    kv = {c: trace("llama2-7b", "decode", context=c).totals().kv_read_bytes
          for c in (64, 128, 256)}
    for c, v in kv.items():  # K and V, every layer, cache + the new token, fp16
        assert v == 2 * layers * hidden * (c + 1) * 2
    assert kv[256] - kv[128] == 2 * (kv[128] - kv[64])


@pytest.mark.parametrize("k", [4, 8])
def test_verify_has_k_times_the_linear_flops_of_decode(k):
    dec = trace("llama2-7b", "decode", context=300)
    ver = trace("llama2-7b", "verify", tokens=k, context=300)
    lin = {g.phase: sum(n.flops for n in g.nodes if n.kind is OpKind.LINEAR) for g in (dec, ver)}
    assert lin[Phase.VERIFY] == k * lin[Phase.DECODE]
    wb = {g.phase: g.totals().weight_bytes for g in (dec, ver)}
    emb = [n.weight_bytes for g in (dec, ver) for n in g.nodes if n.kind is OpKind.EMBEDDING]
    assert wb[Phase.VERIFY] - emb[1] == wb[Phase.DECODE] - emb[0]  # only gathered rows differ
    assert ver.totals().param_bytes == dec.totals().param_bytes


def test_tree_verify_has_tree_masks_and_dense_cost():
    tree = (-1, 0, 0, 1, 1, 2, 2)
    g = trace("llama-68m", "verify", context=50, tree=tree)
    chain = trace("llama-68m", "verify", context=50, tokens=len(tree))
    assert dict(g.meta)["tree_parents"] == tree
    attn = [n for n in g.nodes if n.kind in (OpKind.MATMUL, OpKind.SOFTMAX)]
    assert attn and all(n.attr["mask"] == "tree" for n in attn)
    lin = [sum(n.flops for n in x.nodes if n.kind in MATMUL_KINDS) for x in (g, chain)]
    assert lin[0] == lin[1]


def test_interpolated_decode_equals_a_trace():
    lo = trace("tinyllama-1.1b", "decode", context=100)
    hi = trace("tinyllama-1.1b", "decode", context=900)
    assert interpolate(lo, hi, 517) == trace("tinyllama-1.1b", "decode", context=517)


@pytest.mark.parametrize(("name", "phase", "tokens", "context"), [
    ("llama2-7b", "decode", 1, 200), ("gpt2", "prefill", 64, 0), ("qwen2-0.5b", "verify", 3, 40),
    ("opt-6.7b", "decode", 1, 10),
])
def test_two_layer_replication_equals_full_export(name, phase, tokens, context):
    fast = trace(name, phase, tokens=tokens, context=context)
    full = trace(name, phase, tokens=tokens, context=context, full=True)
    assert dict(fast.meta)["layers_exported"] == 2 and dict(full.meta)["layers_exported"] == "all"
    assert fast.nodes == full.nodes
    assert fast.params == full.params
    for key in ("eager_torch_calls", "eager_torch_calls_in_cache"):  # extrapolated = counted
        assert dict(fast.meta)[key] == dict(full.meta)[key]


@pytest.mark.parametrize(("phase", "tokens", "context"), [("decode", 1, 16), ("prefill", 32, 0)])
def test_eager_call_count_on_meta_equals_a_real_cpu_run(phase, tokens, context):
    """The host work counted on meta is what a real eager forward (CPU, random weights) makes;
    a prefill without a cache makes the count less the cache's own calls."""
    import transformers

    from models.host_calls import _Count

    g = trace("gpt2", phase, tokens=tokens, context=context)
    cfg = transformers.GPT2Config(**get_model("gpt2").config)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    ids = torch.zeros(1, max(context, tokens), dtype=torch.long)
    with torch.no_grad():
        cache = transformers.DynamicCache(config=cfg)
        if context:
            model(input_ids=ids, past_key_values=cache, use_cache=True)
        count = _Count()
        with count:
            model(input_ids=ids[:, :tokens], past_key_values=cache, use_cache=True,
                  logits_to_keep=1)
        # within a call or two: the CPU copy runs in float32 (the trace in float16)
        assert abs(count.calls - dict(g.meta)["eager_torch_calls"]) <= 2
        if phase == "prefill":
            with _Count() as bare:
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
            # a dozen calls apart: without a cache HF checks for packed sequences
            assert abs(bare.calls - (count.calls - dict(g.meta)["eager_torch_calls_in_cache"])
                       ) <= 12


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_traces_and_round_trips(name):
    g = trace(name, "decode", context=16)
    kinds = g.kinds()
    assert kinds[OpKind.LINEAR] >= 4 * get_model(name).layers
    assert kinds[OpKind.KV_APPEND] == 2 * get_model(name).layers
    assert kinds[OpKind.NORM] >= get_model(name).layers
    assert g.to_json() == type(g).from_json(g.to_json()).to_json()


def test_layers_and_modules_are_recorded():
    g = trace("llama2-7b", "decode", context=32)
    q = [n for n in g.nodes if n.module.endswith("self_attn.q_proj")]
    assert [n.layer for n in q] == list(range(32))
    assert q[5].name == "model.layers.5.self_attn.q_proj/linear"
    assert q[5].weights == ("model.layers.5.self_attn.q_proj.weight",)
    rope = [n for n in g.nodes if n.kind is OpKind.ROPE and n.layer == 3]
    assert rope, "RoPE application on q/k is recognised"


def test_an_unlowerable_op_names_op_model_and_fix():
    from models.lower import LoweringError, lower

    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x)

    ep = torch.export.export(Odd(), (torch.zeros(4, device="meta"),), strict=False)
    with pytest.raises(LoweringError) as err:
        lower(ep, "odd-model", Phase.PREFILL, batch=1, tokens=4, context=0, dtype="float32")
    msg = str(err.value)
    assert "aten.special_bessel_j0" in msg and "'odd-model'" in msg and "models/lower.py" in msg


def test_any_decoder_config_traces_from_a_config_file(tmp_path):
    """A config the zoo does not have (Mistral-style, GQA + sliding window) needs no code."""
    cfg = {"model_type": "mistral", "hidden_size": 256, "intermediate_size": 512,
           "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 1000, "max_position_embeddings": 512}
    path = tmp_path / "tiny-mistral.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "g.json"
    run = subprocess.run([sys.executable, "-m", "llmcosim", "trace", str(path), "--context",
                          "32", "--out", str(out), "--summary"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    g = type(trace("gpt2", "decode", context=2)).from_json(out)
    assert g.model == "tiny-mistral (mistral)" and g.context == 32  # file stem + model_type
    assert sum(n.kind is OpKind.KV_APPEND for n in g.nodes) == 6


def test_bfloat16_and_batch():
    g = trace("gpt2", "decode", context=8, batch=3, dtype="bfloat16")
    assert g.batch == 3 and all(p.dtype == "bfloat16" for p in g.params)
    q = next(n for n in g.nodes if n.kind is OpKind.LINEAR)
    assert q.out_shape[0] == 3


def test_graph_is_a_frozen_value():
    g = trace("gpt2", "decode", context=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.context = 5  # type: ignore[misc]


def test_a_model_whose_eager_calls_cannot_be_counted_still_traces(monkeypatch):
    from models import host_calls

    def fail(*_):
        raise NotImplementedError("no SDPA on meta for this architecture")

    monkeypatch.setattr(host_calls, "_calls", fail)
    g = trace("gpt2", "decode", context=9)
    assert dict(g.meta)["eager_torch_calls"] == 0 and g.nodes

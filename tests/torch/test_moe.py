"""Mixture-of-experts graphs against the transformers models they come from.

FLOPs: a small Mixtral-like (and Qwen2-MoE-like, shared expert included) model is run for real
on the CPU, with HF's own experts loop (``experts_implementation="eager"``: one linear per hit
expert over its tokens) under ``FlopCounterMode``, and with the router patched to a fixed
routing so the run is deterministic. The experts' GEMM FLOPs are T x k x per-expert whatever
the routing, which the test shows too (two routings, one count); the traced graph (meta
device, ``batched_mm`` experts) must agree within 1%.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from models.graph import Graph, OpKind
from models.trace import build_model, trace
from models.zoo import ModelEntry, get_model

MATMUL_KINDS = (OpKind.LINEAR, OpKind.MATMUL, OpKind.ATTENTION)

TINY_MIXTRAL = ModelEntry("tiny-mixtral", "MixtralConfig", {
    "vocab_size": 256, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 4,
    "num_experts_per_tok": 2, "max_position_embeddings": 512}, "test config")
TINY_QWEN_MOE = ModelEntry("tiny-qwen-moe", "Qwen2MoeConfig", {
    "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "num_experts": 6,
    "num_experts_per_tok": 3, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 128, "max_position_embeddings": 512}, "test config")


@pytest.mark.parametrize(("name", "expected"), [("mixtral-8x7b", 46_702_792_704),
                                                ("qwen1.5-moe-a2.7b", None),
                                                ("qwen3-30b-a3b", None)])
def test_params_match_transformers(name, expected):
    n_params = sum(p.numel() for p in build_model(get_model(name)).parameters())
    if expected is not None:
        assert n_params == expected
    tot = trace(name, "decode", context=64).totals()
    assert tot.params == n_params
    assert tot.param_bytes == 2 * n_params


def _fixed_router(router: torch.nn.Module, shift: int):
    """The router's gate linear as HF runs it, then a fixed choice: token t of the flattened
    batch goes to experts (t x shift + j) mod E, j < k, with equal weights."""
    experts, k = router.num_experts, router.top_k

    def forward(hidden: torch.Tensor):
        logits = torch.nn.functional.linear(hidden.reshape(-1, router.hidden_dim), router.weight)
        n = logits.shape[0]
        idx = (torch.arange(n)[:, None] * shift + torch.arange(k)[None, :]) % experts
        return logits, torch.full((n, k), 1.0 / k), idx
    return forward


def _cpu_flops(entry: ModelEntry, tokens: int, context: int, batch: int, shift: int) -> int:
    """FlopCounterMode over a real CPU forward with HF's eager experts and a fixed routing."""
    cfg = getattr(transformers, entry.config_class)(**entry.config)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        cfg, attn_implementation="eager", dtype=torch.float32,
        experts_implementation="eager").eval()
    for mod in model.modules():
        if type(mod).__name__.endswith("TopKRouter"):
            mod.forward = _fixed_router(mod, shift)
    cache = transformers.DynamicCache(config=model.config)
    heads = cfg.num_key_value_heads
    for i in range(cfg.num_hidden_layers if context else 0):
        kv = torch.zeros(batch, heads, context, cfg.hidden_size // cfg.num_attention_heads)
        cache.update(kv, kv.clone(), i)
    ids = torch.zeros(batch, tokens, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return counter.get_total_flops()


def _graph_mm_flops(g) -> int:
    """GEMM FLOPs of a graph: matmul-class nodes, and the experts' T x k x per-expert."""
    mm = sum(n.flops for n in g.nodes if n.kind in MATMUL_KINDS)
    return mm + sum(n.attr["tokens"] * n.attr["top_k"] * n.attr["expert_flops"]
                    for n in g.nodes if n.kind is OpKind.EXPERTS)


@pytest.mark.parametrize("entry", [TINY_MIXTRAL, TINY_QWEN_MOE], ids=lambda e: e.name)
@pytest.mark.parametrize(("phase", "tokens", "context", "batch"), [("prefill", 32, 0, 2),
                                                                    ("decode", 1, 40, 3)])
def test_flops_match_flop_counter_at_fixed_routing(entry, phase, tokens, context, batch):
    refs = {_cpu_flops(entry, tokens, context, batch, shift) for shift in (1, 0)}
    assert len(refs) == 1   # expert FLOPs do not depend on which experts are picked
    (ref,) = refs
    g = trace(entry, phase, tokens=tokens, context=context, batch=batch)
    # exact for Mixtral; Qwen2's q/k/v biases add a few FLOPs FlopCounterMode does not count
    assert abs(_graph_mm_flops(g) - ref) <= 0.01 * ref
    ex = [n for n in g.nodes if n.kind is OpKind.EXPERTS]
    assert len(ex) == entry.layers
    assert all(n.attr["tokens"] == batch * tokens for n in ex)


def test_moe_graph_has_router_topk_and_shared_expert():
    g = trace(TINY_QWEN_MOE, "decode", context=8)
    layer0 = [n for n in g.nodes if n.layer == 0]
    assert [n.attr.get("moe") for n in layer0 if n.attr.get("moe")] == \
        ["router", "topk", "experts"]
    shared = [n for n in layer0 if n.kind is OpKind.LINEAR and "shared_expert" in n.module]
    assert len(shared) == 4   # gate, up, down projections and the shared expert's sigmoid gate
    ex = next(n for n in layer0 if n.kind is OpKind.EXPERTS)
    a = ex.attr
    assert (a["num_experts"], a["top_k"], a["expert_gemms"]) == (6, 3, ((64, 64), (32, 64)))
    assert ex.weight_bytes == 3 * a["expert_bytes"]   # batch-1 decode: top-k experts only


def test_two_layer_replication_equals_full_trace():
    fast = trace(TINY_MIXTRAL, "decode", context=16, batch=4)
    full = trace(TINY_MIXTRAL, "decode", context=16, batch=4, full=True)
    assert dict(fast.meta)["layers_exported"] == 2
    assert fast.nodes == full.nodes and fast.params == full.params
    assert Graph.from_json(fast.to_json()) == fast


def test_cli_trace_summary_and_simulate_show_the_moe(tmp_path, capsys, monkeypatch):
    from llmcosim.cli import main

    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "mixtral", **TINY_MIXTRAL.config}))
    assert main(["trace", str(cfg), "--context", "64", "--batch", "8", "--summary"]) == 0
    out = capsys.readouterr().out
    assert all(row in out for row in ("experts", "linear (router)", "reduction (topk)"))
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"counts": [[8, 8, 0, 0]]}))   # 8 tokens x top-2: exact
    assert main(["simulate", "--hw", "gpu-h100", "--model", str(cfg), "--prefill", "16",
                 "--decode", "4", "--batch", "8", "--routing", str(counts), "--json"]) == 0
    hot = json.loads(capsys.readouterr().out)
    assert main(["simulate", "--hw", "gpu-h100", "--model", str(cfg), "--prefill", "16",
                 "--decode", "4", "--batch", "8", "--json"]) == 0
    uniform = json.loads(capsys.readouterr().out)
    # 2 experts read per layer instead of 4 (1 - (1/2)^8 of them): less decode traffic
    assert hot["counts"]["decode_bytes"] < uniform["counts"]["decode_bytes"]
    assert main(["simulate", "--hw", "flightllm-u280", "--model", str(cfg), "--prefill", "16",
                 "--decode", "4"]) == 2
    assert "--fidelity roofline" in capsys.readouterr().err

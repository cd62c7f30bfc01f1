"""Synthetic decoder graphs for HADES/speculation tests: any hidden size, layers and tokens."""

from __future__ import annotations

from models.graph import Graph, Node, OpKind, Param, Phase

__all__ = ["decoder", "spec_workload"]


def decoder(hidden: int = 1024, layers: int = 2, context: int = 16, tokens: int = 1,
            phase: Phase = Phase.DECODE, model: str = "toy", vocab: int = 1000) -> Graph:
    """Per layer: a (hidden x 4·hidden) linear, a KV append, QK and PV matmuls over the cache."""
    h, n, c = hidden, tokens, context + tokens
    nodes, params = [], [Param("lm_head.weight", (vocab, h), "float16")]
    prev = "input_ids"
    for layer in range(layers):
        w = f"layers.{layer}.w"
        params.append(Param(w, (4 * h, h), "float16"))
        b = f"layers.{layer}"
        nodes += [
            Node(f"{b}/linear", OpKind.LINEAR, "aten.linear.default", (prev,), ((1, n, h),),
                 (1, n, 4 * h), "float16", flops=2 * n * h * 4 * h, weight_bytes=2 * 4 * h * h,
                 act_bytes=2 * n * 5 * h, layer=layer, weights=(w,)),
            Node(f"{b}/kv_append", OpKind.KV_APPEND, "aten.cat.default", (f"{b}/linear",),
                 ((1, n, h),), (1, c, h), "float16", kv_write_bytes=2 * 2 * n * h, layer=layer),
            Node(f"{b}/qk", OpKind.MATMUL, "aten.matmul.default", (f"{b}/linear",),
                 ((1, n, h), (1, h, c)), (1, n, c), "float16", flops=2 * n * h * c,
                 kv_read_bytes=2 * h * c, layer=layer),
            Node(f"{b}/softmax", OpKind.SOFTMAX, "aten._softmax.default", (f"{b}/qk",),
                 ((1, n, c),), (1, n, c), "float16", act_bytes=4 * n * c, layer=layer),
            Node(f"{b}/pv", OpKind.MATMUL, "aten.matmul.default", (f"{b}/softmax",),
                 ((1, n, c), (1, c, h)), (1, n, h), "float16", flops=2 * n * h * c,
                 kv_read_bytes=2 * h * c, layer=layer),
        ]
        prev = f"{b}/pv"
    nodes.append(Node("lm_head", OpKind.LINEAR, "aten.linear.default", (prev,), ((1, n, h),),
                      (1, n, vocab), "float16", flops=2 * n * h * vocab,
                      weight_bytes=2 * h * vocab, weights=("lm_head.weight",)))
    return Graph(model, phase, 1, n, context, "float16", tuple(nodes), tuple(params))


def spec_workload(cfg, prefill: int = 64, decode: int = 256, target_hidden: int = 2048,
                  target_layers: int = 8, draft_hidden: int = 256, draft_layers: int = 2):
    """A SpeculativeWorkload of synthetic target/draft graphs (torch-free)."""
    from mapping.spec_workload import SpeculativeWorkload

    end = prefill + decode + cfg.draft_steps
    t = {"hidden": target_hidden, "layers": target_layers, "model": "target"}
    d = {"hidden": draft_hidden, "layers": draft_layers, "model": "draft"}
    return SpeculativeWorkload(
        model="target", batch=1, prefill_tokens=prefill, decode_tokens=decode,
        prefill=decoder(**t, context=0, tokens=prefill, phase=Phase.PREFILL),
        decode_first=decoder(**t, context=prefill),
        decode_last=decoder(**t, context=prefill + decode - 1),
        draft="draft", config=cfg,
        draft_prefill=decoder(**d, context=0, tokens=prefill, phase=Phase.PREFILL),
        draft_first=decoder(**d, context=prefill), draft_last=decoder(**d, context=end),
        verify_first=decoder(**t, context=prefill, tokens=cfg.verify_tokens,
                             phase=Phase.VERIFY),
        verify_last=decoder(**t, context=end, tokens=cfg.verify_tokens, phase=Phase.VERIFY),
        vocab=1000)

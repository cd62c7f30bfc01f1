"""Synthetic IR graphs for torch-free tests (shapes and costs like a small decoder)."""

from __future__ import annotations

import random

from models.graph import Graph, Node, OpKind, Param, Phase

__all__ = ["decoder_like", "random_graph"]


def decoder_like(layers: int = 2, hidden: int = 64, context: int = 16,
                 phase: Phase = Phase.DECODE) -> Graph:
    """A tiny decoder-shaped graph whose costs are affine in ``context``."""
    nodes: list[Node] = []
    params: list[Param] = [Param("embed.weight", (100, hidden), "float16")]
    prev = "input_ids"
    for layer in range(layers):
        w = f"layers.{layer}.proj.weight"
        params.append(Param(w, (hidden, hidden), "float16"))
        base = f"layers.{layer}"
        kv = 2 * hidden * (context + 1)  # (heads*dim) x positions, fp16
        nodes += [
            Node(f"{base}.proj/linear", OpKind.LINEAR, "aten.linear.default", (prev,),
                 ((1, 1, hidden),), (1, 1, hidden), "float16", flops=2 * hidden * hidden,
                 weight_bytes=2 * hidden * hidden, act_bytes=4 * hidden, layer=layer,
                 module=f"{base}.proj", weights=(w,)),
            Node(f"{base}/kv_append", OpKind.KV_APPEND, "aten.cat.default",
                 (f"{base}.proj/linear",), ((1, 1, hidden),), (1, context + 1, hidden),
                 "float16", kv_write_bytes=2 * hidden, act_bytes=2 * hidden, layer=layer),
            Node(f"{base}/matmul", OpKind.MATMUL, "aten.matmul.default",
                 (f"{base}.proj/linear", f"{base}/kv_append"),
                 ((1, 1, hidden), (1, context + 1, hidden)), (1, 1, context + 1), "float16",
                 flops=2 * hidden * (context + 1), kv_read_bytes=kv, layer=layer,
                 attrs=(("role", "qk"),)),
        ]
        prev = f"{base}/matmul"
    return Graph("toy", phase, 1, 1, context, "float16", tuple(nodes), tuple(params))


def random_graph(rng: random.Random, n: int = 20) -> Graph:
    """Random ops with random FLOPs and bytes (for bound properties)."""
    kinds = list(OpKind)
    nodes = []
    for i in range(n):
        nodes.append(Node(
            f"op{i}", rng.choice(kinds), "aten.x", (), (), (rng.randint(1, 64),),
            rng.choice(["float16", "float32", "bfloat16", "int8"]),
            flops=rng.randint(0, 10**12), weight_bytes=rng.randint(0, 10**9),
            act_bytes=rng.randint(0, 10**8), kv_read_bytes=rng.randint(0, 10**8),
            kv_write_bytes=rng.randint(0, 10**6)))
    return Graph("random", Phase.PREFILL, 1, 8, 0, "float16", tuple(nodes), ())

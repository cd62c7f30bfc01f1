"""Synthetic per-pass graphs for serving tests (torch-free): a two-layer decoder whose linear,
KV-append and attention costs follow the shapes of a real pass."""

from __future__ import annotations

from models.graph import Graph, Node, OpKind, Param, Phase

__all__ = ["SOURCES", "toy_pass"]

H, LAYERS = 512, 2


def toy_pass(batch: int, tokens: int, context: int, phase: Phase, hidden: int = H) -> Graph:
    """One pass of ``batch`` x ``tokens`` new tokens over ``context`` cached ones (``hidden``:
    a smaller one drafts for the default)."""
    H = hidden  # noqa: N806
    n, keys, nodes = batch * tokens, context + tokens, []
    params = [Param(f"l{i}.w", (4 * H, H), "float16") for i in range(LAYERS)]
    for i in range(LAYERS):
        b = f"l{i}"
        nodes += [
            Node(f"{b}/linear", OpKind.LINEAR, "aten.linear", ("x",), ((batch, tokens, H),),
                 (batch, tokens, 4 * H), "float16", flops=2 * 4 * H * H * n,
                 weight_bytes=2 * 4 * H * H, act_bytes=2 * 5 * H * n, layer=i,
                 weights=(f"l{i}.w",)),
            Node(f"{b}/kv", OpKind.KV_APPEND, "aten.cat", (f"{b}/linear",),
                 ((batch, tokens, H),), (batch, keys, H), "float16",
                 kv_write_bytes=2 * 2 * H * n, layer=i),
            Node(f"{b}/qk", OpKind.MATMUL, "aten.matmul", (f"{b}/linear", f"{b}/kv"),
                 ((batch, tokens, H), (batch, keys, H)), (batch, tokens, keys), "float16",
                 flops=2 * 2 * H * n * keys, kv_read_bytes=2 * 2 * H * batch * context,
                 layer=i),
        ]
    return Graph("toy", phase, batch, tokens, context, "float16", tuple(nodes), tuple(params))


SOURCES = (lambda t: toy_pass(1, t, 0, Phase.PREFILL),
           lambda b, c: toy_pass(b, 1, c, Phase.DECODE))

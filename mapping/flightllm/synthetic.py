"""Small LLaMA-shaped IR graphs built in code (torch-free tests, benchmarks, random programs).

Node names, module paths, kinds and attrs follow what ``models.lower`` produces for HF LLaMA,
so every FlightLLM pass treats them like traced graphs.
"""

from __future__ import annotations

from dataclasses import replace

from models.graph import Graph, Node, OpKind, Param, Phase

__all__ = ["attention_graph", "batched", "linear_graph", "llama_like"]


def _lin(name: str, layer: int, src: str, t: int, k: int, n: int, params: list[Param]) -> Node:
    w = f"{name}.weight"
    params.append(Param(w, (n, k), "float16"))
    return Node(f"{name}/linear", OpKind.LINEAR, "aten.linear.default", (src,), ((1, t, k),),
                (1, t, n), "float16", flops=2 * t * k * n, weight_bytes=2 * k * n,
                act_bytes=2 * t * (k + n), layer=layer, module=name, weights=(w,))


_OPS = {OpKind.NORM: "LlamaRMSNorm", OpKind.ROPE: "aten.mul.Tensor",
        OpKind.SOFTMAX: "aten._softmax.default", OpKind.ACTIVATION: "aten.silu.default",
        OpKind.ELEMENTWISE: "aten.add.Tensor"}   # what the tracer records for HF LLaMA


def _op(name: str, kind: OpKind, layer: int, srcs: tuple[str, ...], shapes: tuple, out: tuple,
        op: str = "", **kw: object) -> Node:
    numel = 1
    for s in out:
        numel *= s
    return Node(name, kind, op or _OPS[kind], srcs, shapes, out, "float16", flops=numel,
                act_bytes=4 * numel, layer=layer, module=name.split("/")[0], **kw)


def _layer(i: int, src: str, t: int, ctx: int, h: int, heads: int, ffn: int,
           params: list[Param]) -> tuple[list[Node], str]:
    b, d, kv = f"model.layers.{i}", h // heads, t + ctx
    x = (1, t, h)
    q = _lin(f"{b}.self_attn.q_proj", i, f"{b}.input_layernorm/norm", t, h, h, params)
    k = _lin(f"{b}.self_attn.k_proj", i, q.inputs[0], t, h, h, params)
    v = _lin(f"{b}.self_attn.v_proj", i, q.inputs[0], t, h, h, params)
    hs = (1, heads, t, d)
    nodes = [
        _op(f"{b}.input_layernorm/norm", OpKind.NORM, i, (src,), (x,), x),
        q, k, v,
        _op(f"{b}.self_attn/rope", OpKind.ROPE, i, (q.name,), (hs,), hs),
        _op(f"{b}.self_attn/rope.1", OpKind.ROPE, i, (k.name,), (hs,), hs),
        Node(f"{b}.self_attn/kv_append", OpKind.KV_APPEND, "aten.cat.default", (k.name,), (hs,),
             (1, heads, kv, d), "float16", kv_write_bytes=2 * t * h, layer=i),
        Node(f"{b}.self_attn/kv_append.1", OpKind.KV_APPEND, "aten.cat.default", (v.name,),
             (hs,), (1, heads, kv, d), "float16", kv_write_bytes=2 * t * h, layer=i),
        Node(f"{b}.self_attn/matmul", OpKind.MATMUL, "aten.matmul.default",
             (f"{b}.self_attn/rope",), (hs, (1, heads, d, kv)), (1, heads, t, kv), "float16",
             flops=2 * heads * t * kv * d, kv_read_bytes=2 * kv * h if ctx else 0, layer=i,
             attrs=(("role", "qk"),)),
        _op(f"{b}.self_attn/softmax", OpKind.SOFTMAX, i, (f"{b}.self_attn/matmul",),
            ((1, heads, t, kv),), (1, heads, t, kv)),
        Node(f"{b}.self_attn/matmul.1", OpKind.MATMUL, "aten.matmul.default",
             (f"{b}.self_attn/softmax",), ((1, heads, t, kv), (1, heads, kv, d)), hs, "float16",
             flops=2 * heads * t * kv * d, kv_read_bytes=2 * kv * h if ctx else 0, layer=i,
             attrs=(("role", "pv"),)),
    ]
    o = _lin(f"{b}.self_attn.o_proj", i, f"{b}.self_attn/matmul.1", t, h, h, params)
    g = _lin(f"{b}.mlp.gate_proj", i, f"{b}.post_attention_layernorm/norm", t, h, ffn, params)
    u = _lin(f"{b}.mlp.up_proj", i, g.inputs[0], t, h, ffn, params)
    dn = _lin(f"{b}.mlp.down_proj", i, f"{b}.mlp/elementwise", t, ffn, h, params)
    f = (1, t, ffn)
    nodes += [
        o, _op(f"{b}/elementwise", OpKind.ELEMENTWISE, i, (src, o.name), (x, x), x),
        _op(f"{b}.post_attention_layernorm/norm", OpKind.NORM, i, (f"{b}/elementwise",), (x,), x),
        g, _op(f"{b}.mlp.act_fn/activation", OpKind.ACTIVATION, i, (g.name,), (f,), f), u,
        _op(f"{b}.mlp/elementwise", OpKind.ELEMENTWISE, i, (u.name,), (f, f), f,
            op="aten.mul.Tensor"), dn,
        _op(f"{b}/elementwise.1", OpKind.ELEMENTWISE, i, (dn.name,), (x, x), x),
    ]
    return nodes, f"{b}/elementwise.1"


def llama_like(layers: int = 2, hidden: int = 256, heads: int = 4, ffn: int = 512,
               vocab: int = 1024, phase: Phase = Phase.DECODE, tokens: int | None = None,
               context: int = 64) -> Graph:
    """A LLaMA-shaped graph: ``tokens`` new tokens (decode: 1) over ``context`` cached."""
    t = tokens if tokens is not None else (1 if phase is Phase.DECODE else 128)
    ctx = 0 if phase is Phase.PREFILL else context
    params: list[Param] = [Param("model.embed_tokens.weight", (vocab, hidden), "float16")]
    nodes: list[Node] = [Node("model.embed_tokens/embedding", OpKind.EMBEDDING,
                              "aten.embedding.default", ("input_ids",), ((1, t),),
                              (1, t, hidden), "float16", weight_bytes=2 * t * hidden,
                              module="model.embed_tokens",
                              weights=("model.embed_tokens.weight",))]
    src = nodes[0].name
    for i in range(layers):
        more, src = _layer(i, src, t, ctx, hidden, heads, ffn, params)
        nodes += more
    x = (1, t, hidden)
    nodes.append(_op("model.norm/norm", OpKind.NORM, -1, (src,), (x,), x))
    # logits of the last token (prefill, decode); verify: of every verified position
    head = _lin("lm_head", -1, "model.norm/norm", t if phase is Phase.VERIFY else 1, hidden,
                vocab, params)
    nodes.append(head)
    return Graph("llama-like", phase, 1, t, ctx, "float16", tuple(nodes), tuple(params))


def linear_graph(k: int, n: int, tokens: int = 1, bias: bool = False) -> Graph:
    """One linear (``tokens`` x ``k`` -> ``n``; decode when ``tokens`` is 1), alone."""
    params: list[Param] = []
    lin = _lin("model.layers.0.mlp.up_proj", 0, "input", tokens, k, n, params)
    if bias:
        params.append(Param(f"{lin.module}.bias", (n,), "float16"))
        lin = replace(lin, flops=lin.flops + tokens * n, weight_bytes=lin.weight_bytes + 2 * n,
                      weights=lin.weights + (params[-1].name,))
    phase = Phase.DECODE if tokens == 1 else Phase.PREFILL
    return Graph("linear", phase, 1, tokens, 0, "float16", (lin,), tuple(params))


def attention_graph(heads: int, d: int, tokens: int = 1, context: int = 0) -> Graph:
    """One layer's attention (QK^T, softmax, PV) over ``context`` cached + ``tokens`` keys."""
    g = llama_like(layers=1, hidden=heads * d, heads=heads, ffn=16,
                   phase=Phase.DECODE if tokens == 1 else Phase.PREFILL, tokens=tokens,
                   context=context)
    keep = [x for x in g.nodes if x.kind in (OpKind.MATMUL, OpKind.SOFTMAX)]
    return Graph("attention", g.phase, 1, tokens, g.context, "float16", tuple(keep), ())


def batched(g: Graph, b: int) -> Graph:
    """``g`` (one sequence) as ``b`` sequences: the leading dimension of every shape and the
    per-sequence counts (FLOPs, activation and KV bytes) times ``b``."""
    if b == 1:
        return g

    def sh(s: tuple) -> tuple:
        return (b, *s[1:]) if s and s[0] == 1 else s
    nodes = tuple(replace(n, in_shapes=tuple(sh(x) for x in n.in_shapes),
                          out_shape=sh(n.out_shape), flops=b * n.flops,
                          act_bytes=b * n.act_bytes, kv_read_bytes=b * n.kv_read_bytes,
                          kv_write_bytes=b * n.kv_write_bytes) for n in g.nodes)
    return replace(g, nodes=nodes, batch=b)

"""Mixture-of-experts routing (models.moe) and its consumers, on a synthetic graph (no torch)."""

from __future__ import annotations

import json
import random

import pytest

from mapping.compression import quantize
from mapping.flightllm.codegen import refuse_moe
from models.errors import UserError
from models.graph import Graph, Node, OpKind, Param, Phase
from models.moe import (
    UNIFORM,
    Routing,
    expert_load,
    inclusion,
    load_routing,
    parse_routing,
    route,
)
from sim.gpu.model import expert_kernels
from tests.unit.graphs import decoder_like

E, K, H, FF = 8, 2, 64, 128
GEMMS = ((H, 2 * FF), (FF, H))                 # gate_up (H -> 2FF), down (FF -> H)
EXPERT_FLOPS = 2 * sum(k * n for k, n in GEMMS)
EXPERT_BYTES = 2 * sum(k * n for k, n in GEMMS)  # float16


def moe_like(tokens: int = 1, layers: int = 2) -> Graph:
    """Router linear, top-k and an experts node per layer, attrs as models.lower sets them."""
    nodes, params = [], []
    for layer in range(layers):
        b = f"layers.{layer}.mlp"
        params += [Param(f"{b}.gate.weight", (E, H), "float16"),
                   Param(f"{b}.experts.gate_up_proj", (E, 2 * FF, H), "float16"),
                   Param(f"{b}.experts.down_proj", (E, H, FF), "float16")]
        nodes += [
            Node(f"{b}.gate/linear", OpKind.LINEAR, "aten.linear.default", ("x",),
                 ((tokens, H),), (tokens, E), "float16", flops=2 * tokens * H * E,
                 weight_bytes=2 * E * H, layer=layer, weights=(f"{b}.gate.weight",),
                 attrs=(("moe", "router"),)),
            Node(f"{b}.gate/reduction", OpKind.REDUCTION, "aten.topk.default",
                 (f"{b}.gate/linear",), ((tokens, E),), (tokens, K), "float32",
                 flops=tokens * E, layer=layer, attrs=(("moe", "topk"), ("top_k", K))),
            Node(f"{b}.experts/experts", OpKind.EXPERTS, "MixtralExperts", ("x",),
                 ((tokens, H),), (tokens, H), "float16",
                 flops=tokens * K * EXPERT_FLOPS, weight_bytes=E * EXPERT_BYTES,
                 act_bytes=4 * tokens * H, layer=layer, module=f"{b}.experts",
                 weights=(f"{b}.experts.gate_up_proj", f"{b}.experts.down_proj"),
                 attrs=tuple(sorted({"moe": "experts", "num_experts": E, "top_k": K,
                                     "tokens": tokens, "expert_bytes": EXPERT_BYTES,
                                     "expert_flops": EXPERT_FLOPS,
                                     "expert_gemms": GEMMS}.items()))),
        ]
    return Graph("toy-moe", Phase.DECODE, tokens, 1, 16, "float16", tuple(nodes), tuple(params))


@pytest.mark.parametrize("tokens", [1, 2, 16, 512])
def test_uniform_distinct_experts_follow_the_closed_form(tokens):
    load = expert_load(E, K, tokens)
    assert load.distinct == pytest.approx(E * (1 - (1 - K / E) ** tokens), rel=1e-12)
    assert sum(load.tokens) == pytest.approx(tokens * K)
    if tokens == 1:
        assert load.distinct == pytest.approx(K)   # batch-1 decode reads exactly top-k experts


def test_uniform_formula_matches_sampled_routing():
    """Each token picks K distinct experts uniformly, tokens independently (the assumption)."""
    rng = random.Random(0)
    for tokens in (3, 10):
        runs = [len({e for _ in range(tokens) for e in rng.sample(range(E), K)})
                for _ in range(4000)]
        assert sum(runs) / len(runs) == pytest.approx(expert_load(E, K, tokens).distinct,
                                                      rel=0.01)


def test_zipf_skew_reads_fewer_experts_and_keeps_k_picks_per_token():
    flat = expert_load(E, K, 16, Routing("zipf", zipf_s=0.0)).distinct
    assert flat == pytest.approx(expert_load(E, K, 16).distinct)
    skews = [expert_load(E, K, 16, Routing("zipf", zipf_s=s)) for s in (0.5, 1.0, 2.0)]
    assert flat > skews[0].distinct > skews[1].distinct > skews[2].distinct >= K
    for load in skews:
        assert sum(load.tokens) == pytest.approx(16 * K)
        assert max(load.tokens) <= 16 + 1e-9   # no expert gets a token twice


def test_inclusion_clips_at_one_and_sums_to_k():
    # 3 x 0.7 > 1: clipped; the rest rescaled to 2 picks puts 0.2 over 1 too; 0.05s share 1
    assert inclusion([0.7, 0.2, 0.05, 0.05], 3) == pytest.approx([1, 1, 0.5, 0.5])
    q = inclusion([0.4, 0.3, 0.2, 0.1], 2)        # no clipping: k p_e
    assert q == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_trace_counts_of_this_pass_are_taken_as_they_are():
    exact = Routing("trace", counts=((2, 0, 0, 1, 0, 0, 0, 1),), source="t.json")
    load = expert_load(E, K, 2, exact)
    assert load.distinct == 3 and load.tokens == (2, 0, 0, 1, 0, 0, 0, 1)
    # other totals are a distribution: q_e = k c_e / sum(c)
    dist = expert_load(E, K, 1, exact)
    assert dist.tokens == pytest.approx((1.0, 0, 0, 0.5, 0, 0, 0, 0.5))
    with pytest.raises(UserError, match="4 experts"):
        expert_load(E, K, 1, Routing("trace", counts=((1, 1, 1, 1),), source="t.json"))


def test_route_sets_weight_bytes_and_token_split_per_layer():
    g = route(moe_like(tokens=16))
    ex = [n for n in g.nodes if n.kind is OpKind.EXPERTS]
    d = E * (1 - (1 - K / E) ** 16)
    assert all(n.weight_bytes == round(d * EXPERT_BYTES) for n in ex)
    assert all(n.attr["routing"] == "uniform" and n.flops == 16 * K * EXPERT_FLOPS for n in ex)
    two = Routing("trace", counts=((16, 16, 0, 0, 0, 0, 0, 0), (4, 4, 4, 4, 4, 4, 4, 4)),
                  source="log.json")
    per_layer = [n for n in route(g, two).nodes if n.kind is OpKind.EXPERTS]
    assert [n.weight_bytes for n in per_layer] == [2 * EXPERT_BYTES, 8 * EXPERT_BYTES]
    with pytest.raises(UserError, match="2 MoE layers"):
        route(g, Routing("trace", counts=((1,) * E,) * 3, source="log.json"))


def test_routed_graph_round_trips_through_json():
    g = route(moe_like(tokens=4), Routing("zipf", zipf_s=1.1))
    back = Graph.from_json(g.to_json())
    assert back == g
    n = next(x for x in back.nodes if x.kind is OpKind.EXPERTS)
    assert n.attr["expert_gemms"] == GEMMS and len(n.attr["expert_tokens"]) == E


def test_route_leaves_dense_graphs_untouched():
    g = decoder_like()
    assert route(g) is g and route(g, Routing("zipf", zipf_s=2.0)) is g


def test_routing_files_and_flags(tmp_path):
    js = tmp_path / "r.json"
    js.write_text(json.dumps({"counts": [[1, 2, 3, 4, 0, 0, 0, 2]]}))
    assert load_routing(js).counts == ((1, 2, 3, 4, 0, 0, 0, 2),)
    jl = tmp_path / "r.jsonl"
    jl.write_text("\n".join(json.dumps({"layer": i % 2, "counts": [1] * E}) for i in range(6)))
    assert load_routing(jl).counts == ((3.0,) * E, (3.0,) * E)   # summed per layer
    assert parse_routing(None) is UNIFORM and parse_routing("zipf:1.5").zipf_s == 1.5
    for bad in ("zipf:-1", "zipf:x", "hot", str(tmp_path / "missing.json")):
        with pytest.raises(UserError):
            parse_routing(bad)
    (tmp_path / "bad.json").write_text('{"counts": [[0, 0]]}')
    with pytest.raises(UserError, match="not all zero"):
        load_routing(tmp_path / "bad.json")


def test_gpu_grouped_gemm_keeps_flops_and_reads_distinct_experts_once():
    n = next(x for x in route(moe_like(tokens=16)).nodes if x.kind is OpKind.EXPERTS)
    rows, per_elem, _ = expert_kernels(n, 2)
    assert sum(2 * m * k * nn for m, k, nn in rows) == pytest.approx(16 * K * EXPERT_FLOPS)
    weights = sum(k * nn * b for (_, k, nn), b in zip(rows, per_elem, strict=True))
    assert weights == pytest.approx(n.attr["distinct_experts"] * EXPERT_BYTES)


def test_quantized_experts_are_routed_at_their_bits():
    g = route(quantize(moe_like(tokens=1), weight_bits=4))
    n = next(x for x in g.nodes if x.kind is OpKind.EXPERTS)
    assert n.attr["expert_bytes"] == EXPERT_BYTES // 4
    assert n.weight_bytes == K * EXPERT_BYTES // 4


def test_flightllm_cycle_flow_refuses_moe():
    with pytest.raises(UserError, match="--fidelity roofline"):
        refuse_moe(moe_like())
    refuse_moe(decoder_like())  # dense graphs pass


def test_roofline_reads_the_routed_experts_and_says_so():
    from models.workload import Workload
    from sim.roofline import op_bounds, simulate
    from sim.spec import load_preset

    g = route(moe_like(tokens=16))
    w = Workload("toy-moe", 16, 0, 1, None, g, g)
    gpu = load_preset("gpu-h100")
    res = simulate(gpu, w)
    assert res.counts["decode_bytes"] == g.totals().compulsory_bytes
    ex = [b for b in op_bounds(gpu, g) if b.kind is OpKind.EXPERTS]
    d = E * (1 - (1 - K / E) ** 16)
    assert ex[0].memory_s == pytest.approx(round(d * EXPERT_BYTES) / gpu.mem_bytes_per_s)
    assert any(f"{d:.2f} experts' weights read" in note for note in res.notes)
    fl = simulate(load_preset("flightllm-u280"), w)
    assert any("roofline only" in note for note in fl.notes)
    assert not any("experts" in note for note in simulate(gpu, Workload(
        "toy", 1, 0, 1, None, decoder_like(), decoder_like())).notes)

"""FlightLLM compression pass: N:16 block-row mixes, metadata bytes, bits, attention masks."""

from __future__ import annotations

import pytest

from mapping.flightllm.compression import (
    CONFIG_DIR,
    apply_compression,
    block_row_mix,
    config_from_dict,
    default_config,
    load_config,
    load_masks,
    prefill_masks,
)
from mapping.flightllm.synthetic import llama_like
from models.errors import UserError
from models.graph import OpKind, Phase


def _node(g, suffix):
    return next(n for n in g.nodes if n.name.endswith(suffix))


def test_default_is_artifact_setup():
    cfg = default_config()
    assert cfg.weight_bits == 4 and cfg.kv_bits == 8 and cfg.prefill_attention == "masks"
    g = apply_compression(llama_like(layers=2), cfg)
    q, v = _node(g, "0.self_attn.q_proj/linear"), _node(g, "0.self_attn.v_proj/linear")
    assert abs(q.attr["keep"] - 0.7) < 1 / 16 and v.attr["keep"] == 1.0
    assert dict(q.attr["nm_rows"]) == {16: 6, 8: 10}  # 256 rows = 16 block-rows: 0.4 dense
    # the artifact IR's INT32 bias on q/k/v/o_proj (LLaMA has none), not on the MLP
    lin = {n.module.split(".")[-1]: n.attr["bias_bytes"] for n in g.nodes
           if n.kind is OpKind.LINEAR and n.layer == 0}
    assert lin == {"q_proj": 1024, "k_proj": 1024, "v_proj": 1024, "o_proj": 1024,
                   "gate_proj": 0, "up_proj": 0, "down_proj": 0}


@pytest.mark.parametrize("keep", [0.125, 0.2, 0.25, 0.4, 0.5, 0.7, 0.9, 1.0])
def test_block_row_mix_uses_supported_n_and_hits_keep(keep):
    mix = block_row_mix(keep, 64)
    assert sum(r for _, r in mix) == 64
    assert all(n in (2, 4, 8, 16) for n, _ in mix)
    assert abs(sum(n * r for n, r in mix) / (16 * 64) - keep) <= 1 / 64


def test_metadata_bytes_by_hand():
    cfg = config_from_dict({"weight_bits": 4, "linear": [{"match": "q_proj", "pattern": "4:16"}]})
    g = apply_compression(llama_like(layers=1, hidden=256), cfg)
    q = _node(g, "q_proj/linear")
    kept = 256 * 256 // 4
    assert q.attr["meta_bytes"] == kept * 4 // 8       # 4-bit index per kept weight
    assert q.attr["fsb_bytes"] == (256 // 16) ** 2     # one byte per 16x16 block
    assert q.weight_bytes == kept * 4 // 8 + q.attr["meta_bytes"] + q.attr["fsb_bytes"]
    assert q.flops == 2 * 256 * 256 // 4


def test_per_layer_bits_and_later_rules_override():
    cfg = config_from_dict({"weight_bits": 8, "linear": [
        {"match": "mlp", "bits": 3}, {"match": "mlp", "layers": [1], "bits": 2}]})
    g = apply_compression(llama_like(layers=2), cfg)
    assert _node(g, "layers.0.mlp.up_proj/linear").attr["weight_bits"] == 3
    assert _node(g, "layers.1.mlp.up_proj/linear").attr["weight_bits"] == 2
    assert _node(g, "layers.1.self_attn.o_proj/linear").attr["weight_bits"] == 8
    d = _node(g, "layers.1.mlp.down_proj/linear")
    assert d.weight_bytes == 256 * 512 * 2 // 8


def test_kv_and_activations_int8():
    g0 = llama_like(layers=1)
    g = apply_compression(g0)
    a0, a = _node(g0, "/kv_append"), _node(g, "/kv_append")
    assert a.kv_write_bytes * 2 == a0.kv_write_bytes
    assert _node(g, "/softmax").act_bytes * 2 == _node(g0, "/softmax").act_bytes


def test_prefill_masks_from_artifact():
    masks = load_masks(CONFIG_DIR / "flightllm_llama2_7b_masks.npz")
    assert masks.shape == (32, 32, 32, 32)
    g = apply_compression(llama_like(layers=2, hidden=4096, heads=32, ffn=512,
                                     phase=Phase.PREFILL, tokens=2048), default_config())
    qk = _node(g, "layers.1.self_attn/matmul")
    causal_blocks = 32 * 33 // 2
    kept = [b / causal_blocks for b in qk.attr["attn_blocks"]]
    assert 0.2 < sum(kept) / len(kept) < 0.65  # the shared file: 23-60% of the triangle
    assert qk.flops < _node(g, "layers.1.self_attn/matmul.1").flops * 1.0001


def test_causal_prefill_counts_lower_triangle_blocks():
    cfg = config_from_dict({"attention": {"prefill": "causal"}})
    g = apply_compression(llama_like(layers=1, phase=Phase.PREFILL, tokens=256), cfg)
    qk = _node(g, "/matmul")
    assert qk.attr["attn_blocks"] == (10,) * 4           # 4x4 blocks: 10 on/below diagonal
    assert qk.attr["attn_elems"] == (10 * 64 * 64,) * 4


@pytest.mark.parametrize(("rule", "words"), [
    ({"match": "q_proj", "pattern": "3:16"}, ["'2:16'", "'8:16'", "dense"]),
    ({"match": "q_proj", "pattern": "8:32"}, ["'4:16'"]),
    ({"match": "q_proj", "keep": 0.05}, ["0.125", "2:16"]),
    ({"match": "q_proj", "bits": 5}, ["2, 3, 4, 8"]),
    ({"match": "q_proj", "keep": 0.5, "pattern": "8:16"}, ["either"]),
    ({"match": "q_proj", "sparsity": 1}, ["unknown", "keep"]),
    ({"match": "q_proj", "bias": "yes"}, ["bias", "true or false"]),
])
def test_bad_patterns_name_allowed_values(rule, words):
    with pytest.raises(UserError) as e:
        config_from_dict({"linear": [rule]}, "cfg.toml")
    for w in words:
        assert w in str(e.value)


def test_unsupported_shape_names_layer():
    cfg = config_from_dict({"linear": [{"match": "q_proj", "pattern": "8:16"}]})
    with pytest.raises(UserError, match=r"layer model\.layers\.0\.self_attn\.q_proj.*multiples"):
        apply_compression(llama_like(layers=1, hidden=200, heads=4), cfg)


def test_masks_too_short_names_layer_and_limit():
    g = llama_like(layers=1, hidden=4096, heads=32, ffn=256, phase=Phase.PREFILL, tokens=2112)
    with pytest.raises(UserError, match=r"layer 0 .*2048"):
        apply_compression(g)


def _qk_blocks(g):
    return [n.attr["attn_blocks"] for n in g.nodes if n.attr.get("role") == "qk"]


def test_masks_that_do_not_cover_the_model():
    g = llama_like(layers=2, hidden=768, heads=12, ffn=256, phase=Phase.PREFILL, tokens=256)
    masks = {"prefill": "masks", "masks": "flightllm_llama2_7b_masks.npz"}
    strict = config_from_dict({"attention": masks})
    with pytest.raises(UserError, match=r"32 layers x 32 heads; this model has 2 x 12\. "
                       r"Pass --sparsity"):
        apply_compression(g, strict)
    # the default config: dense causal attention, and a note that says so
    out = apply_compression(g)
    assert "2 x 12: its prefill attention is dense causal" in dict(out.meta)["attention_note"]
    causal = config_from_dict({"attention": {"prefill": "causal"}})
    assert _qk_blocks(out) == _qk_blocks(apply_compression(g, causal)) == [(10,) * 12] * 2
    # a model the masks cover keeps them, with no note; more layers than the masks is refused
    g32 = llama_like(layers=2, hidden=4096, heads=32, ffn=256, phase=Phase.PREFILL, tokens=256)
    assert prefill_masks(g32, strict)[1] == "" and prefill_masks(g32, strict)[0] is not None
    assert "attention_note" not in dict(apply_compression(g32).meta)
    assert _qk_blocks(apply_compression(g32)) != _qk_blocks(apply_compression(g32, causal))
    g33 = llama_like(layers=33, hidden=4096, heads=32, ffn=16, phase=Phase.PREFILL, tokens=64)
    with pytest.raises(UserError, match="this model has 33 x 32"):
        apply_compression(g33, strict)
    with pytest.raises(UserError, match=r"attention\.unmatched = 'maybe'; allowed"):
        config_from_dict({"attention": masks | {"unmatched": "maybe"}})
    with pytest.raises(UserError, match=r"\[attention\] takes the keys"):
        config_from_dict({"attention": {"prefil": "causal"}})


def test_missing_file_and_every_shipped_config_loads():
    with pytest.raises(UserError, match="does not exist"):
        load_config("nope.toml")
    for p in CONFIG_DIR.glob("*.toml"):
        assert load_config(p).name == p.stem


def test_decode_attention_stays_dense():
    g = apply_compression(llama_like(layers=1, context=100))
    mm = [n for n in g.nodes if n.kind is OpKind.MATMUL]
    assert all("attn_blocks" not in n.attr for n in mm)


def test_prefill_logits_all_tokens():
    """The artifact's prefill IR runs lm_head on all prompt tokens (qk70 sets it); decode and
    the default keep the traced last-token head."""
    g = llama_like(layers=1, phase=Phase.PREFILL, tokens=128)
    head = _node(g, "lm_head/linear")
    last = _node(apply_compression(g, config_from_dict({})), "lm_head/linear")
    allt = _node(apply_compression(g, config_from_dict({"prefill_logits": "all"})),
                 "lm_head/linear")
    assert default_config().prefill_logits == "all"
    assert last.in_shapes == head.in_shapes and last.flops == head.flops
    assert allt.in_shapes[0][-2] == 128 and allt.out_shape[-2] == 128
    assert allt.flops == 128 * head.flops
    d = apply_compression(llama_like(layers=1), default_config())
    assert _node(d, "lm_head/linear").in_shapes[0][-2] == 1
    with pytest.raises(UserError, match="prefill_logits"):
        config_from_dict({"prefill_logits": "some"})

"""FlightLLM code generation: barriers only where a full vector is needed, balanced cores,
tiles within every buffer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression, config_from_dict
from mapping.flightllm.isa import LD_TARGETS as TARGETS
from mapping.flightllm.isa import Queue
from mapping.flightllm.synthetic import llama_like
from models.graph import OpKind, Phase
from sim.flightllm.mpe import A_MV_BYTES_PER_CHANNEL, mv_cycles
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of, fill_cycles
from sim.spec import load_preset

SPEC = load_preset("flightllm-vhk158")
CFG = config_from_dict({"attention": {"prefill": "causal"},
                        "linear": [{"match": ["q_proj", "k_proj"], "keep": 0.7}]})


def _decode(layers=2):
    return apply_compression(llama_like(layers=layers, phase=Phase.DECODE, hidden=1024,
                                        heads=8, ffn=2048, context=64), CFG)


def test_four_barriers_per_layer():
    """o_proj, post-norm, down_proj, next input norm need the full vector; k/v_proj and
    up_proj read the vector q_proj/gate_proj already had in full: no barrier for them."""
    prog = generate(_decode(layers=3), arch_of(SPEC))
    for arr in prog.cores:
        assert int((arr["queue"] == Queue.SYS).sum()) == 4 * 3


def test_mixed_sparsity_balanced_over_cores():
    res = simulate_graph(SPEC, _decode())
    mv = [int(a["cycles"][a["queue"] == Queue.MV].sum()) for a in res.program.cores]
    assert max(mv) - min(mv) <= 0.02 * max(mv)


@pytest.mark.parametrize("in_weights", [True, False])
def test_sparse_tiles_fit_their_buffers(in_weights):
    """Decode indices next to the weights (default): no meta LDs, tile + indices within half
    the A buffer; through the meta buffer: within half of it. Prefill (MM) always streams
    indices into the meta buffer. FSB bytes always fit half the FSB buffer."""
    arch = dataclasses.replace(arch_of(SPEC), index_in_weights=in_weights)
    pre = apply_compression(llama_like(layers=2, phase=Phase.PREFILL, hidden=1024, heads=8,
                                       ffn=2048, tokens=128), CFG)
    for g in (_decode(), pre):
        for arr in generate(g, arch).cores:
            ld = arr[arr["queue"] == Queue.LD]
            meta = ld["nbytes"][ld["op"] == TARGETS["meta"]]
            fsb = ld["nbytes"][ld["op"] == TARGETS["FSB"]]
            assert fsb.size and fsb.max() <= SPEC.fsb_buffer_bytes // 2
            if g.phase is Phase.DECODE and in_weights:
                assert meta.size == 0
            else:
                assert meta.size and meta.max() <= SPEC.meta_buffer_bytes // 2
            tile = ld["nbytes"][ld["op"] == TARGETS["A"]] * SPEC.weight_channels
            assert g.phase is Phase.PREFILL or tile.max() <= SPEC.a_buffer_bytes // 2


def test_packed_indices_cost_bytes_and_a_buffer_reads():
    """Packed 4-bit indices: an N=8 tile moves (4 + 4) bits per kept weight, and its MV reads
    them from the A buffer (``nbytes``), which bounds the MV at 64 B per channel per cycle."""
    prog = fill_cycles(generate(_decode(layers=1), arch_of(SPEC)), SPEC)
    arr = prog.cores[0]
    mv = arr[(arr["queue"] == Queue.MV) & (arr["n"] == 8)]
    assert mv.size
    for r in mv:
        assert r["nbytes"] == r["cols"] * r["k"] * 8 // 16
        assert r["cycles"] >= r["nbytes"] // (64 * SPEC.weight_channels)
    dense = arr[(arr["queue"] == Queue.MV) & (arr["n"] == 16)
                & (arr["nbytes"] == arr["cols"] * arr["k"] // 2)]
    assert dense.size
    # INT4 dense: the A buffer delivers exactly what the chains consume (not a bound)
    for r in dense:
        if r["cols"] % 64 == 0:
            w = int(r["cols"] + r["pad"])
            assert r["cycles"] == mv_cycles(w, int(r["k"]), 16, 1024)


@pytest.mark.parametrize("layer", ["q_proj", "v_proj", "gate_proj", "down_proj", "lm_head"])
def test_every_mv_computes_whole_tiles(layer):
    """The MV instruction has no column count (artifact: K, flags, addresses): a core's
    columns of a linear fill whole ``mv_tile_cols`` tiles, N segments sharing a tile, and
    only the rest of the last tile is padding."""
    g = apply_compression(llama_like(layers=1, phase=Phase.DECODE, hidden=1024, heads=8,
                                     ffn=2752, context=64), CFG)
    prog = generate(g, arch_of(SPEC))
    ids = [i for i, n in enumerate(prog.nodes) if layer in n]
    kk = next(int(x.in_shapes[0][-1]) for x in g.nodes if x.name == prog.nodes[ids[0]])
    for arr in prog.cores:
        mv = arr[(arr["queue"] == Queue.MV) & np.isin(arr["node"], ids)]
        real = int((mv["cols"].astype(np.int64) * mv["k"]).sum()) // kk
        whole = int(((mv["cols"] + mv["pad"]).astype(np.int64) * mv["k"]).sum()) // kk
        assert whole % SPEC.mv_tile_cols == 0 and 0 <= whole - real < SPEC.mv_tile_cols
        assert ((mv["cols"] + mv["pad"]) <= SPEC.mv_tile_cols).all()


def test_decode_attention_in_whole_tiles():
    """A head's scores take one MV per 512 keys, its PV (head_dim columns) one padded tile;
    a padded MV costs what a full tile of its kind costs."""
    for ctx, tiles in ((511, 1), (512, 2)):
        g = apply_compression(llama_like(layers=1, phase=Phase.DECODE, hidden=1024, heads=8,
                                         ffn=2048, context=ctx), CFG)
        prog = fill_cycles(generate(g, arch_of(SPEC)), SPEC)
        ids = [i for i, n in enumerate(prog.nodes) if "matmul" in n]
        arr = prog.cores[0]
        mv = arr[(arr["queue"] == Queue.MV) & np.isin(arr["node"], ids)]
        heads = 8 // SPEC.cores
        assert len(mv) == heads * (tiles + 1)
        pv = mv[mv["cols"] == 128]
        assert len(pv) == heads and (pv["pad"] == SPEC.mv_tile_cols - 128).all()
        full = mv_cycles(SPEC.mv_tile_cols, int(pv["k"][0]), 16, SPEC.mv_macs_per_cycle,
                         int(pv["nbytes"][0]) * SPEC.mv_tile_cols // 128,
                         A_MV_BYTES_PER_CHANNEL * SPEC.weight_channels)
        assert (pv["cycles"] == full).all()


def test_weight_prefetch_ahead_of_gather():
    """After a barrier the next linear's first weight tile is queued before the gather's
    cross-channel LDs (the in-order LD queue would otherwise hold the prefetch)."""
    prog = generate(_decode(layers=2), arch_of(SPEC))
    arr = prog.cores[0]
    ld = np.flatnonzero(arr["queue"] == Queue.LD)
    cross = [i for i in ld if arr["cross"][i] == 1]
    assert cross
    for i in cross[::SPEC.cores - 1]:  # the first cross LD of each gather
        sys = np.flatnonzero((arr["queue"] == Queue.SYS) & (np.arange(len(arr)) < i))[-1]
        prev = [j for j in ld if j < i and arr["cross"][j] == 0]
        assert prev[-1] > sys and arr["op"][prev[-1]] in (TARGETS["A"], TARGETS["FSB"])


def _same(a, b) -> bool:
    return a.nodes == b.nodes and all(np.array_equal(x, y) for x, y in
                                      zip(a.cores, b.cores, strict=True))


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
@pytest.mark.parametrize("rules", [
    [{"match": ["q_proj", "k_proj"], "keep": 0.7}],
    # per-layer settings: layers 3 and 4 differ, so replication must stop there
    [{"match": ["q_proj"], "keep": 0.5}, {"match": ["up_proj"], "layers": [3], "bits": 8},
     {"match": ["o_proj"], "layers": [4], "pattern": "4:16"}],
])
def test_replicated_layers_equal_generated(phase, rules):
    cfg = config_from_dict({"attention": {"prefill": "causal"}, "linear": rules})
    g = apply_compression(llama_like(layers=6, phase=phase, hidden=512, heads=8, ffn=1024,
                                     context=64), cfg)
    for spec in (SPEC, load_preset("flightllm-u280")):
        arch = arch_of(spec)
        assert _same(generate(g, arch), generate(g, arch, replicate=False))
        off = dataclasses.replace(arch, on_chip_decode=False, fuse=False)
        assert _same(generate(g, off), generate(g, off, replicate=False))


def test_epilogues_for_q_k_rope_and_the_silu_product():
    """RoPE runs on both q_proj and k_proj tiles (3 element-wise ops each, as the artifact),
    SiLU on gate_proj, the SiLU x up product on up_proj."""
    from mapping.flightllm.isa import MISC_OPS

    prog = generate(_decode(layers=1), arch_of(SPEC))
    for arr in prog.cores:
        misc = arr[arr["queue"] == Queue.MISC]
        names = [prog.nodes[i].split(".")[-1] for i in misc["node"]]
        ops = {(n, int(o)) for n, o in zip(names, misc["op"], strict=True)}
        for proj in ("q_proj/linear", "k_proj/linear"):
            assert (proj, MISC_OPS["eltwise_mul"]) in ops and (proj, MISC_OPS["eltwise_add"]) in ops
        assert ("gate_proj/linear", MISC_OPS["silu"]) in ops
        assert ("up_proj/linear", MISC_OPS["eltwise_mul"]) in ops


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_ld_targets_follow_the_operands(phase):
    """MV reads its matrix (weights, K/V) from A and its vector from B; MM reads its token rows
    from A and its weights from B (artifact buffer widths): weight tiles, K/V and gathered
    activations are loaded into those buffers. The SFU works in the global buffer: prefill
    norms load their row chunks there."""
    g = apply_compression(llama_like(layers=1, phase=phase, hidden=1024, heads=8, ffn=2048,
                                     context=64), CFG)
    mat, act = ("A", "B") if phase is Phase.DECODE else ("B", "A")
    prog = generate(g, arch_of(SPEC))
    for arr in prog.cores:
        ld = arr[arr["queue"] == Queue.LD]
        gathered = ld[ld["cross"] == 1]
        norm = np.array([i >= 0 and prog.nodes[i].endswith("/norm") for i in gathered["node"]],
                        bool)
        assert gathered.size and (gathered["op"][~norm] == TARGETS[act]).all()
        assert (gathered["op"][norm] == TARGETS["global"]).all()
        assert norm.any() == (phase is Phase.PREFILL)   # decode: a gathered vector into B
        mpe = np.array([i >= 0 and ("proj" in prog.nodes[i] or "matmul" in prog.nodes[i])
                        for i in ld["node"]], bool)
        ops = {int(x) for x in ld["op"][mpe]}
        inputs = {TARGETS[act]} if phase is Phase.PREFILL else set()  # off-chip inputs
        assert TARGETS[mat] in ops
        assert ops <= {TARGETS[mat], TARGETS["meta"], TARGETS["FSB"]} | inputs


def _prefill(tokens, layers=1, **kw):
    return apply_compression(llama_like(layers=layers, phase=Phase.PREFILL, hidden=1024,
                                        heads=8, ffn=2816, tokens=tokens, **kw), CFG)


def test_prefill_operands_fit_the_buffers():
    """A long prefill (640 tokens, 5 row tiles; down_proj's 128 x 2,816 rows exceed half of
    a 256 KB A buffer): every activation LD fits half of A, every K/V/weight LD half of B,
    every output store half of the global buffer, and each row tile loads its own rows. The
    SFU's operands fit the global buffer: the norms and the embedding run in row chunks of
    half of it (a 640 x 1,024 activation is 5x the buffer), each chunk loaded and stored."""
    spec = dataclasses.replace(SPEC, a_buffer_bytes=256 * 1024)
    arch = arch_of(spec)
    prog = generate(_prefill(640), arch)
    for arr in prog.cores:
        ld = arr[arr["queue"] == Queue.LD]
        act = ld[(ld["op"] == TARGETS["A"]) & (ld["node"] >= 0)]
        mat = ld[ld["op"] == TARGETS["B"]]
        st = arr[(arr["queue"] == Queue.ST) & (arr["node"] >= 0)]
        assert act.size and mat.size and st.size
        # one activation chunk = the LDs between two MMs; bounded per LD by half of A
        assert act["nbytes"].max() <= arch.a_buffer_bytes // 2
        assert mat["nbytes"].max() <= arch.b_buffer_bytes // 2
        assert st["nbytes"].max() <= arch.global_buffer_bytes // 2
        mm = arr[arr["queue"] == Queue.MM]
        assert (mm["rows"] <= arch.mm_tile_rows).all()
        glob = ld[ld["op"] == TARGETS["global"]]
        assert glob.size and glob["nbytes"].max() <= arch.global_buffer_bytes // 2
        misc = arr[arr["queue"] == Queue.MISC]
        assert (misc["rows"].astype(int) * misc["cols"] <= arch.global_buffer_bytes).all()
        norm = [i for i, n in enumerate(prog.nodes) if n.endswith("/norm")]
        normed = misc[np.isin(misc["node"], norm)]
        assert normed["rows"].sum() == 640 * len(norm)   # every row, chunk by chunk
        assert np.isin(st["node"], norm).sum() == normed.size   # each chunk stored


def test_prefill_reloads_split_k_chunks_once_per_column_tile():
    """down_proj's K (2,816) needs three chunks of 1,024 rows x 128 in half a 256 KB A
    buffer: the column tiles alternate the chunk order, so each tile after the first starts
    on the chunk still resident and re-loads one chunk, not three."""
    spec = dataclasses.replace(SPEC, a_buffer_bytes=256 * 1024)
    g = _prefill(128)
    prog = generate(g, arch_of(spec))
    ids = [i for i, n in enumerate(prog.nodes) if "down_proj" in n]
    arr = prog.cores[0]
    sel = arr[np.isin(arr["node"], ids)]
    mm = sel[sel["queue"] == Queue.MM]
    tiles = len(mm) // 3                     # three K chunks per 16-column tile
    ks = [int(k) for k in mm["k"]]
    assert ks[:6] == [1024, 1024, 768, 768, 1024, 1024]  # forward, then backward
    act = sel[(sel["queue"] == Queue.LD) & (sel["op"] == TARGETS["A"])]
    loads = len(np.unique(np.searchsorted(np.flatnonzero(sel["queue"] == Queue.MM),
                                          np.flatnonzero((sel["queue"] == Queue.LD)
                                                         & (sel["op"] == TARGETS["A"])))))
    assert act.size and tiles > 2 and loads == tiles + 2  # 3 chunks once, then 1 per tile


def test_prefill_attention_groups_fit_the_global_buffer():
    """Scores of a query group (one or two 64-row block-rows) fit half the global buffer; a
    block-row whose keys need more takes the whole buffer; beyond that: a clear error."""
    from mapping.flightllm.prefill import attention_groups
    from models.errors import UserError

    causal = [(1 << (q + 1)) - 1 for q in range(32)]       # 2,048 tokens
    groups = attention_groups(causal, 2048, 128, 64 * 1024, 64 * 1024)
    assert [q for grp, _, _ in groups for q in grp] == list(range(32))
    for grp, chunks, single in groups:
        kept = sum(causal[q].bit_count() for q in grp)
        assert sum(b for _, b in chunks) == kept
        assert kept * 4096 <= (128 if single else 64) * 1024
        assert all(k <= 8 and b <= 2 * k for k, b in chunks)  # 8 key blocks per B chunk
    assert any(single for *_, single in groups) and len(groups[0][0]) == 2
    with pytest.raises(UserError, match="global buffer"):
        attention_groups(causal, 2048, 128, 32 * 1024, 64 * 1024)
    arch = dataclasses.replace(arch_of(SPEC), global_buffer_bytes=16 * 1024)  # 256 keys
    generate(_prefill(256), arch)
    with pytest.raises(UserError, match=r"layer 0 \(.*matmul\): prefill of 320 tokens: "
                                        r"query block-row 4 keeps 320 keys"):
        generate(_prefill(320), arch)


def _opt_like(phase):
    """The LLaMA-like graph with OPT's traced ops: LayerNorm, ReLU, biases on every linear."""
    g = llama_like(layers=1, phase=phase, hidden=1024, heads=8, ffn=2048, context=64)
    ops = {OpKind.NORM: "aten.layer_norm.default", OpKind.ACTIVATION: "aten.relu.default"}
    nodes = []
    for n in g.nodes:
        if n.kind in ops:
            n = dataclasses.replace(n, op=ops[n.kind])
        elif n.kind is OpKind.LINEAR:
            n = dataclasses.replace(n, weights=n.weights + (f"{n.module}.bias",))
        nodes.append(n)
    return apply_compression(dataclasses.replace(g, nodes=tuple(nodes)), CFG)


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_mpe_flags_norms_and_biases_follow_the_model(phase):
    """OPT: LayerNorm (MISC op 3), ReLU as the MPE's relu flag on fc1's finished tiles (no SFU
    op), one INT32 bias LD per linear and core (its columns) and FLAG_BIAS on each output
    tile's first K chunk. LLaMA: RMSNorm, SiLU on the SFU, no bias. FLAG_SPARSE marks the
    N:16 layers (q/k_proj)."""
    from mapping.flightllm.isa import FLAG_BIAS, FLAG_RELU, FLAG_SPARSE, MISC_OPS

    llama = apply_compression(llama_like(layers=1, phase=phase, hidden=1024, heads=8,
                                         ffn=2048, context=64), CFG)
    for g, opt in ((_opt_like(phase), True), (llama, False)):
        prog = generate(g, arch_of(SPEC))
        for arr in prog.cores:
            names = np.array([prog.nodes[i] if i >= 0 else "" for i in arr["node"]])
            misc = set(arr["op"][arr["queue"] == Queue.MISC].tolist())
            assert (MISC_OPS["layernorm"] in misc) == opt and (MISC_OPS["rmsnorm"] in misc) != opt
            assert (MISC_OPS["silu"] in misc) != opt
            q = Queue.MV if phase is Phase.DECODE else Queue.MM
            lin = (arr["queue"] == q) & np.char.endswith(names, "/linear")
            fl = arr["flags"]
            relu = lin & (fl & FLAG_RELU > 0)
            assert relu.any() == opt
            assert all("gate_proj" in x for x in names[relu])
            bias_lds = (arr["queue"] == Queue.LD) & (arr["op"] == TARGETS["bias"])
            with_bias = lin & (fl & FLAG_BIAS > 0)
            assert with_bias.any() == opt and bias_lds.sum() == (8 if opt else 0)  # 1/linear
            # one row tile: each output column gets its bias once, loaded with the linear
            assert arr["nbytes"][bias_lds].sum() == 4 * arr["cols"][with_bias].sum()
            sparse = names[lin & (fl & FLAG_SPARSE > 0)]
            assert sparse.size and all(("q_proj" in x or "k_proj" in x) for x in sparse)


def test_decode_gqa_loads_each_kv_head_once_per_core():
    """GQA (TinyLlama, Qwen2): the query heads of one K/V head share its K and V tiles on a
    core: 8 query heads over 2 K/V heads on 4 cores (2 heads each) load half the bytes of
    8 K/V heads, with the same score/PV MVs."""
    def attn(kv_heads):
        g = llama_like(layers=1, phase=Phase.DECODE, hidden=1024, heads=8, ffn=2048,
                       context=700)
        nodes = tuple(dataclasses.replace(n, in_shapes=((1, kv_heads) + n.in_shapes[0][2:],))
                      if n.kind is OpKind.KV_APPEND else n for n in g.nodes)
        prog = generate(apply_compression(dataclasses.replace(g, nodes=nodes), CFG),
                        arch_of(SPEC))
        ids = [i for i, n in enumerate(prog.nodes) if "matmul" in n]
        out = []
        for arr in prog.cores:
            sel = arr[np.isin(arr["node"], ids)]
            out.append((int(sel["nbytes"][sel["queue"] == Queue.LD].sum()),
                        int((sel["queue"] == Queue.MV).sum())))
        return out

    mha, gqa = attn(8), attn(2)
    keys = 701
    assert all(b == 2 * 2 * keys * 128 for b, _ in mha)      # 2 heads x (K + V) per core
    assert all(b == 2 * keys * 128 for b, _ in gqa)          # one K/V head per core
    assert [m for _, m in mha] == [m for _, m in gqa] == [2 * (2 + 1)] * 4


def test_prefill_output_tile_must_fit_the_global_buffer():
    """128 rows x 16 columns of INT8 outputs (2 KB) need half a global buffer of 4 KB (8 KB
    also holds a 128-token head's scores, single-buffered)."""
    from models.errors import UserError

    generate(_prefill(128), dataclasses.replace(arch_of(SPEC), global_buffer_bytes=8192))
    with pytest.raises(UserError, match=r"layer model\.layers\.0\.self_attn\.q_proj: an output "
                                        r"tile of 128 rows x 16 columns does not fit half the "
                                        r"global buffer \(1024 bytes\)"):
        generate(_prefill(128), dataclasses.replace(arch_of(SPEC), global_buffer_bytes=2048))

"""FlightLLM KV rollback (``mapping.flightllm.rollback``): replaying the generated compaction
program on a model cache leaves exactly what a plain decode of the accepted tokens writes."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mapping.acceptance import children_of
from mapping.flightllm.compression import apply_compression
from mapping.flightllm.isa import Queue
from mapping.flightllm.rollback import compaction_moves, generate_rollback, kv_rows
from mapping.flightllm.synthetic import llama_like
from mapping.speculation import KVCacheModel, check_spec_tree
from models.graph import Phase
from sim.flightllm.timing import arch_of
from sim.spec import load_preset

SPEC = load_preset("flightllm-u280")
ARCH = arch_of(SPEC)
KW = {"layers": 2, "hidden": 256, "heads": 4, "ffn": 512, "vocab": 1024}


@st.composite
def rounds(draw):
    """A chain or a random tree (BFS order), an accepted root-to-node path, a context."""
    n = draw(st.integers(1, 20))
    if draw(st.booleans()):
        parents = tuple(range(-1, n - 1))
    else:
        parents = check_spec_tree(tuple(draw(st.integers(-1, i - 1)) for i in range(n)))
    kids, path, node = children_of(parents), [], -1
    while node in kids and draw(st.booleans()):
        node = draw(st.sampled_from(kids[node]))
        path.append(node)
    return parents, tuple(path), draw(st.integers(1, 200))


def _kv(token: np.ndarray, pos: np.ndarray, tensor: int) -> np.ndarray:
    """A K/V row's content: a function of the token, its position (RoPE) and the tensor."""
    return (token * 1_000_003 + pos) * 64 + tensor


def _depths(parents: tuple[int, ...]) -> list[int]:
    d: list[int] = []
    for p in parents:
        d.append(1 if p < 0 else d[p] + 1)
    return d


def _replay(cache: np.ndarray, prog, moves, core: int, lds_first: bool) -> None:
    """Run core ``core``'s LD/ST pairs on ``cache`` (tensor, row): each LD reads its move's
    source row into a buffer, its ST writes the buffer to the destination. ``lds_first``:
    every LD before any ST (the LD queue running ahead: still correct by the order argument
    of the module)."""
    arr = prog.cores[core]
    lds = np.flatnonzero(arr["queue"] == Queue.LD)
    sts = np.flatnonzero(arr["queue"] == Queue.ST)
    assert len(lds) == len(sts) == len(moves)
    buf = [cache[m.tensor, m.src] for m in moves] if lds_first else None
    for i, m in enumerate(moves):
        ld, st_ = arr[lds[i]], arr[sts[i]]
        assert ld["channel"] == core * ARCH.channels_per_core + m.src % ARCH.weight_channels
        assert st_["channel"] == core * ARCH.channels_per_core + m.dst % ARCH.weight_channels
        assert ld["nbytes"] == st_["nbytes"] > 0 and sts[i] > lds[i]
        cache[m.tensor, m.dst] = buf[i] if buf is not None else cache[m.tensor, m.src]


@settings(max_examples=150, deadline=None)
@given(rounds(), st.booleans())
# a move's destination is an earlier move's source (node 1 -> row 1, node 2 -> row 2): the
# moves must run in path order; a chain with a side branch; an in-place path
@example(((-1, -1, 1), (1, 2), 5), False)
@example(((-1, -1, 0, 1, 3), (1, 3, 4), 17), False)
@example(((-1, -1, 0), (0, 2), 3), True)
def test_compaction_leaves_the_plain_decode_cache(r, lds_first):
    parents, path, context = r
    n = len(parents)
    g = apply_compression(llama_like(phase=Phase.VERIFY, tokens=n + 1, context=context, **KW))
    tensors = len(kv_rows(g))
    rng = np.random.default_rng(context)
    prompt = rng.integers(0, 32000, context)
    root, drafts = int(rng.integers(0, 32000)), rng.integers(0, 32000, n)
    rows = context + 1 + n
    t_idx = np.arange(tensors)[:, None]
    # the verify wrote the root at row `context` and node i at row context + 1 + i, each at
    # its tree position context + depth (models.trace: depth-based positions)
    tokens = np.concatenate([prompt, [root], drafts])
    pos = np.concatenate([np.arange(context + 1), context + np.array(_depths(parents))])
    written = _kv(tokens[None, :], pos[None, :], t_idx)
    assert written.shape == (tensors, rows)
    # a plain decode of the accepted tokens writes them at consecutive positions
    kept = np.concatenate([prompt, [root], drafts[list(path)]]).astype(np.int64)
    want = _kv(kept[None, :], np.arange(len(kept))[None, :], t_idx)
    rb = generate_rollback(g, ARCH, context, path)
    assert len(rb.moves) == tensors * len(compaction_moves(context, path))
    for core in range(ARCH.cores):
        if not len(rb.program.cores[core]):
            continue   # a core without K/V heads of this model
        cache = written.copy()
        _replay(cache, rb.program, rb.moves, core, lds_first)
        assert np.array_equal(cache[:, :len(kept)], want)
    # chains: the accepted drafts are in place already, rollback is a pointer reset
    if parents == tuple(range(-1, n - 1)):
        assert rb.program.total == 0
    # the reference model's gather mode moves the same rows
    model = KVCacheModel(list(prompt), "gather")
    model.verify(root, list(drafts), parents, path)
    assert model.rows_moved == len(compaction_moves(context, path))


def test_rows_are_a_layers_kv_heads_times_head_dim():
    g = apply_compression(llama_like(phase=Phase.VERIFY, tokens=5, context=10, **KW))
    rows = kv_rows(g)
    assert len(rows) == 2 * KW["layers"]
    heads, hd = KW["heads"], KW["hidden"] // KW["heads"]
    assert all(h == heads and b == heads * hd * 1 for _, h, b in rows)   # INT8 KV cache

"""Rejection-sampling verifier: emitted tokens follow the target distribution; rollback leaves
exactly the emitted prefix in the KV cache (chain pointer reset, tree gather or indirection)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.speculation import KVCacheModel, check_spec_tree
from sim.hades.verifier import verify_greedy, verify_sample

V = 6


def _chi2_pvalue(observed: np.ndarray, expected_p: np.ndarray) -> float:
    """Pearson chi-square p-value (numpy only: Wilson-Hilferty normal approximation)."""
    n = observed.sum()
    exp = expected_p * n
    keep = exp > 0
    stat = float((((observed - exp) ** 2)[keep] / exp[keep]).sum())
    k = int(keep.sum()) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / np.sqrt(2 / (9 * k))
    from math import erfc, sqrt

    return 0.5 * erfc(z / sqrt(2))


def _draw_case(rng, b, gamma):
    p = rng.dirichlet(np.ones(V) * 0.7, size=gamma + 1)     # target rows, fixed per position
    q = rng.dirichlet(np.ones(V) * 0.7, size=gamma)         # draft rows
    draft = np.stack([rng.choice(V, size=b, p=q[i]) for i in range(gamma)], axis=1)
    return draft, np.broadcast_to(p, (b, *p.shape)), np.broadcast_to(q, (b, *q.shape)), p


def _emitted(draft, accepted, token, k):
    """The k-th emitted token of each trial (drafts up to ``accepted``, then ``token``)."""
    return np.where(accepted > k, draft[:, min(k, draft.shape[1] - 1)],
                    np.where(accepted == k, token, -1))


def test_first_and_second_tokens_follow_the_target():
    rng = np.random.default_rng(11)
    b = 120_000
    for gamma in (1, 3):
        draft, p, q, prow = _draw_case(rng, b, gamma)
        acc, tok = verify_sample(draft, p, q, rng)
        first = _emitted(draft, acc, tok, 0)
        assert _chi2_pvalue(np.bincount(first, minlength=V), prow[0]) > 1e-3
        # the second token, among trials that emitted one in this round (first accepted)
        second = _emitted(draft, acc, tok, 1)[acc >= 1]
        assert _chi2_pvalue(np.bincount(second, minlength=V), prow[1]) > 1e-3


def test_the_statistical_test_catches_a_wrong_verifier():
    rng = np.random.default_rng(12)
    draft, p, q, prow = _draw_case(rng, 120_000, 2)
    # wrong: resample from p instead of the residual max(0, p − q) at a rejection
    acc, _ = verify_sample(draft, p, q, rng)
    wrong = np.array([rng.choice(V, p=prow[a]) for a in acc[:20_000]])
    first = np.where(acc[:20_000] > 0, draft[:20_000, 0], wrong)
    assert _chi2_pvalue(np.bincount(first, minlength=V), prow[0]) < 1e-6


def test_sampling_accepts_everything_when_draft_equals_target():
    rng = np.random.default_rng(13)
    p = rng.dirichlet(np.ones(V), size=4)
    draft = np.stack([rng.choice(V, size=500, p=p[i]) for i in range(3)], axis=1)
    acc, _ = verify_sample(draft, np.broadcast_to(p, (500, 4, V)),
                           np.broadcast_to(p[:3], (500, 3, V)), rng)
    assert (acc == 3).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_greedy_accepts_the_leading_matches(gamma, seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 3, size=(5, gamma + 1))
    draft = rng.integers(0, 3, size=(5, gamma))
    acc, tok = verify_greedy(draft, target)
    for i in range(5):
        a = 0
        while a < gamma and draft[i, a] == target[i, a]:
            a += 1
        assert acc[i] == a and tok[i] == target[i, a]


@st.composite
def _tree_and_path(draw):
    n = draw(st.integers(1, 12))
    parents = tuple(draw(st.integers(-1, i - 1)) for i in range(n))
    parents = check_spec_tree(parents)
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        kids.setdefault(p, []).append(i)
    path, node = [], -1
    while node in kids and draw(st.booleans()):
        node = draw(st.sampled_from(kids[node]))
        path.append(node)
    return parents, path


@settings(max_examples=80, deadline=None)
@given(st.lists(_tree_and_path(), min_size=1, max_size=6), st.sampled_from(["gather",
                                                                           "indirection"]))
def test_tree_rollback_keeps_exactly_the_accepted_path(rounds, mode):
    prompt = [1000, 1001, 1002]
    kv = KVCacheModel(prompt, mode)
    seq = list(prompt)
    last, tok = 5000, 0
    for parents, path in rounds:
        drafts = [tok + i for i in range(len(parents))]   # unique ids per round
        tok += len(parents)
        kv.verify(last, drafts, parents, path)
        seq += [last, *(drafts[i] for i in path)]
        last = 9000 + tok                                  # the bonus/resampled token
        assert kv.logical() == seq
        assert kv.length == len(seq)
    if mode == "indirection":
        assert kv.rows_moved == 0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1, max_size=8))
def test_chain_rollback_is_a_pointer_reset(rounds):
    kv = KVCacheModel([7, 8], "pointer")
    seq = [7, 8]
    last = 100
    for gamma, a in rounds:
        a = min(a, gamma)
        drafts = list(range(last + 1, last + 1 + gamma))
        kv.verify(last, drafts, None, list(range(a)))
        seq += [last, *drafts[:a]]
        assert kv.logical() == seq and kv.length == len(seq)
        assert kv.rows_moved == 0          # a chain never copies rows
        last += 100

"""Reference kernels of kernels/ checked against independent plain-Python models."""

from __future__ import annotations

import math
import random

import pytest
import torch

from kernels.csd_chain import compress_nm, csd_chain, dense_matvec
from kernels.dequant import dequant
from kernels.softmax import exp_table, softmax_fixed, softmax_float
from kernels.verify import verify_greedy, verify_sample


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_csd_chain_equals_dense_matvec_of_the_pruned_matrix(n):
    g = torch.Generator().manual_seed(n)
    w = torch.randint(-128, 128, (8, 64), generator=g, dtype=torch.int8)
    a = torch.randint(-128, 128, (2, 64), generator=g, dtype=torch.int8)
    vals, idx = compress_nm(w, n)
    pruned = torch.zeros_like(w).reshape(8, 4, 16).scatter(2, idx.long(), vals).reshape(8, 64)
    assert ((pruned != 0).reshape(8, 4, 16).sum(-1) <= n).all()
    assert torch.equal(csd_chain(vals, idx, a, device="cpu"), dense_matvec(pruned, a, device="cpu"))


def test_csd_chain_wraps_like_a_32_bit_accumulator():
    k = 16 * 8200  # 131,200 products of 2**14 = 2,149,580,800 > 2**31 - 1
    vals = torch.full((1, k // 16, 16), -128, dtype=torch.int8)
    idx = torch.arange(16).expand(1, k // 16, 16)
    acts = torch.full((2, k), -128, dtype=torch.int8)
    exact = k * 16384
    assert csd_chain(vals, idx, acts, device="cpu")[0, 0].item() == exact - 2**32


def test_dequant_against_python_ints():
    rng = random.Random(3)
    for bits in (2, 3, 4, 8):
        q = [[rng.randrange(2**bits) for _ in range(32)]]
        s = [[rng.randrange(4096) for _ in range(2)]]
        z = [[rng.randrange(2**bits) for _ in range(2)]]
        got = dequant(torch.tensor(q), torch.tensor(s), torch.tensor(z), bits=bits, group=16,
                      device="cpu")[0].tolist()
        want = [max(-128, min(127, math.floor(((v - z[0][i // 16]) * s[0][i // 16]) / 16 + 0.5)))
                for i, v in enumerate(q[0])]
        assert got == want


def test_verify_greedy_against_loop():
    rng = random.Random(4)
    for _ in range(200):
        g = rng.randint(1, 6)
        target = [rng.randrange(4) for _ in range(g + 1)]
        draft = [rng.randrange(4) for _ in range(g)]
        a = next((i for i in range(g) if draft[i] != target[i]), g)
        acc, tok = verify_greedy(torch.tensor([draft]), torch.tensor([target]), device="cpu")
        assert (acc.item(), tok.item()) == (a, target[a])


def test_verify_sample_preserves_the_target_distribution():
    """Rejection sampling theorem: the first emitted token is distributed as p (γ = 1)."""
    g = torch.Generator().manual_seed(7)
    p_row = torch.tensor([30000, 20000, 10000, 5535])
    q_row = torch.tensor([5000, 10000, 40000, 10535])
    b = 40000
    draft = torch.multinomial(q_row.double(), b, replacement=True, generator=g).unsqueeze(1)
    u = torch.randint(0, 2**16, (b, 1), generator=g)
    r = torch.randint(0, 2**16, (b, 2), generator=g)
    p = p_row.expand(b, 2, 4)
    q = q_row.expand(b, 1, 4)
    acc, tok = verify_sample(draft, p, q, u, r, device="cpu")
    first = torch.where(acc >= 1, draft[:, 0], tok)
    freq = torch.bincount(first, minlength=4).double() / b
    want = p_row.double() / p_row.sum()
    assert (freq - want).abs().max() < 0.01  # ~4 standard errors at b = 40,000


def test_softmax_error_bound_against_fp32():
    """|fixed − FP32| ≤ (3 + n·y/2)·2**-16: table rounding, sum, reciprocal floor, output round."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-128, 128, (256, 64), generator=g)
    y = softmax_fixed(x, device="cpu").double() / 2**16
    ref = softmax_float(x, device="cpu").double()
    bound = (3 + 64 * ref / 2) / 2**16
    assert ((y - ref).abs() <= bound).all()
    assert exp_table(device="cpu")[0].item() == 2**16

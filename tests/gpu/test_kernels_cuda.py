"""The reference kernels on a CUDA GPU give bit for bit what they give on the CPU.

The RTL is verified against these kernels on the CPU (tests/hdl), so equality here carries the
RTL check over to the GPU runs of the same kernels. Marked ``gpu`` by directory: skipped where
there is no CUDA device.
"""

from __future__ import annotations

import pytest
import torch

from kernels.csd_chain import compress_nm, csd_chain, dense_matvec
from kernels.dequant import dequant
from kernels.softmax import softmax_fixed
from kernels.verify import verify_greedy, verify_sample


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _both(fn, *args, **kw):
    cpu = fn(*args, device="cpu", **kw)
    gpu = fn(*args, device="cuda", **kw)
    return cpu, gpu


def _same(a, b) -> None:
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                    strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y.cpu())


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_csd_chain(n):
    g = _gen(n)
    w = torch.randint(-128, 128, (256, 4096), generator=g, dtype=torch.int8)
    a = torch.randint(-128, 128, (8, 4096), generator=g, dtype=torch.int8)
    vals, idx = compress_nm(w, n)
    _same(*_both(csd_chain, vals, idx, a))
    _same(*_both(dense_matvec, w, a))


def test_csd_chain_wraps_on_the_gpu_too():
    k = 16 * 8200  # 131,200 products of 2**14 overflow a 32-bit accumulator
    vals = torch.full((1, k // 16, 16), -128, dtype=torch.int8)
    idx = torch.arange(16).expand(1, k // 16, 16)
    acts = torch.full((2, k), -128, dtype=torch.int8)
    _same(*_both(csd_chain, vals, idx, acts))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dequant(bits):
    g = _gen(bits)
    q = torch.randint(0, 2**bits, (64, 4096), generator=g)
    s = torch.randint(0, 4096, (64, 4096 // 64), generator=g)
    z = torch.randint(0, 2**bits, (64, 4096 // 64), generator=g)
    _same(*_both(dequant, q, s, z, bits=bits, group=64))


def test_softmax_fixed():
    x = torch.randint(-128, 128, (512, 1024), generator=_gen(7), dtype=torch.int8)
    _same(*_both(softmax_fixed, x))


def test_verify():
    g = _gen(11)
    b, gamma, v = 64, 6, 32000
    draft = torch.randint(0, v, (b, gamma), generator=g)
    target = torch.randint(0, v, (b, gamma + 1), generator=g)
    target[:, :3] = draft[:, :3]  # some acceptance
    _same(*_both(verify_greedy, draft, target))
    p = torch.randint(0, 2**16, (b, gamma + 1, v), generator=g)
    q = torch.randint(0, 2**16, (b, gamma, v), generator=g)
    u = torch.randint(0, 2**16, (b, gamma), generator=g)
    r = torch.randint(0, 2**16, (b, gamma + 1), generator=g)
    _same(*_both(verify_sample, draft, p, q, u, r))

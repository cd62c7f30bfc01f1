"""Constrained-random stimulus per block, packed to stream beats, with reference outputs.

Every generator takes the constructed component (for its parameters), a numpy Generator and a
transaction count, and returns ``(inputs, expected)``: packed input beats per stream name and
packed output beats, both grouped by transaction. References come from ``kernels/``.
"""

from __future__ import annotations

import numpy as np
import torch

from kernels.csd_chain import csd_chain as ref_csd_chain
from kernels.dequant import dequant as ref_dequant
from kernels.softmax import softmax_fixed
from kernels.verify import verify_greedy, verify_sample
from verification.packing import pack

__all__ = ["csd_chain", "dequant", "softmax", "verifier"]

PROB_ONE = 1 << 16  # UQ0.16


def _int8(rng, shape, mode):
    """INT8 values: uniform, extremes (−128 and 127 only), or mostly zero."""
    if mode == "extreme":
        return rng.choice(np.array([-128, 127]), size=shape, p=[0.8, 0.2])
    vals = rng.integers(-128, 128, size=shape)
    if mode == "sparse":
        vals[rng.random(shape) < 0.8] = 0
    return vals


def _mode(rng):
    return rng.choice(["uniform", "extreme", "sparse"], p=[0.7, 0.15, 0.15])


def csd_chain(dut, rng, count, *, timing_blocks):
    from rtl.csd_chain import csd_layouts

    lay = csd_layouts(dut.chain, dut.n)
    n, rows, chain = dut.n, dut.rows, dut.chain
    w_beats, a_beats, expected = [], [], []
    for t in range(count):
        kb = timing_blocks if t < 8 else int(rng.integers(1, 5))  # K = 16..64
        mode = _mode(rng)
        vals = _int8(rng, (rows, kb, n), mode)  # (rows, K/16, N)
        acts = _int8(rng, (2, kb * 16), mode)  # (lanes, K)
        if n < 16:  # distinct 4-bit indices per 16-block, random order
            idx = np.argsort(rng.random((rows, kb, 16)), axis=-1)[..., :n]
        else:
            idx = np.broadcast_to(np.arange(16), (rows, kb, 16))
        out = ref_csd_chain(torch.from_numpy(vals), torch.from_numpy(np.array(idx)),
                            torch.from_numpy(acts), device="cpu").tolist()  # (rows, lanes)
        w_txn, a_txn = [], []
        for b in range(kb):
            beat = {"w": [int(vals[d // n, b, d % n]) for d in range(chain)], "last": b == kb - 1}
            if n < 16:
                beat["idx"] = [int(idx[d // n, b, d % n]) for d in range(chain)]
            w_txn.append(pack(lay["w"], beat))
            a_txn.append(pack(lay["a"], {"lo": acts[0, 16 * b:16 * b + 16].tolist(),
                                         "hi": acts[1, 16 * b:16 * b + 16].tolist()}))
        w_beats.append(w_txn)
        a_beats.append(a_txn)
        expected.append([pack(lay["y"], {"lo": [o[0] for o in out], "hi": [o[1] for o in out]})])
    return {"w": w_beats, "a": a_beats}, expected


def dequant(dut, rng, count):
    from rtl.dequant import dequant_layouts

    bits, lanes, group = dut.bits, dut.lanes, dut.group
    lay = dequant_layouts(bits, lanes)
    top = (1 << bits) - 1
    q = rng.integers(0, top + 1, size=(count, group))  # (txn, group)
    zero = rng.integers(0, top + 1, size=(count, 1))
    typical = np.round(127 / max(top, 1) * 16 * rng.uniform(0.5, 2.2, size=(count, 1)))
    scale = np.where(rng.random((count, 1)) < 0.2, rng.choice([0, 4095], size=(count, 1)),
                     np.clip(typical, 0, 4095)).astype(np.int64)
    y = ref_dequant(torch.from_numpy(q), torch.from_numpy(scale), torch.from_numpy(zero),
                    bits=bits, group=group, device="cpu").numpy()
    params = [[pack(lay["params"], {"scale": int(scale[t, 0]), "zero": int(zero[t, 0])})]
              for t in range(count)]
    qs = [[pack(lay["q"], q[t, i:i + lanes].tolist()) for i in range(0, group, lanes)]
          for t in range(count)]
    exp = [[pack(lay["y"], y[t, i:i + lanes].tolist()) for i in range(0, group, lanes)]
           for t in range(count)]
    return {"params": params, "q": qs}, exp


def verifier(dut, rng, count):
    from rtl.verifier import verifier_layouts

    lay = verifier_layouts(dut.mode, dut.gamma, dut.vocab, dut.token_bits)
    if dut.mode == "greedy":
        return _greedy(dut, rng, count, lay)
    return _sample(dut, rng, count, lay)


def _greedy(dut, rng, count, lay):
    g, top = dut.gamma, (1 << dut.token_bits) - 1
    target = rng.integers(0, top + 1, size=(count, g + 1))
    target[rng.random((count, g + 1)) < 0.1] = top  # extreme token ids
    miss = rng.random((count, g)) < rng.choice([0.0, 0.15, 0.5, 1.0], size=(count, 1))
    draft = np.where(miss, (target[:, :g] + rng.integers(1, top + 1, size=(count, g))) % (top + 1),
                     target[:, :g])
    acc, tok = verify_greedy(torch.from_numpy(draft), torch.from_numpy(target), device="cpu")
    ins = [[pack(lay["x"], {"draft": draft[t].tolist(), "target": target[t].tolist()})]
           for t in range(count)]
    exp = [[pack(lay["y"], {"accepted": int(acc[t]), "token": int(tok[t])})] for t in range(count)]
    return {"x": ins}, exp


def _probs(rng, shape):
    """UQ0.16 probability rows summing to at most 2**16 − 1, some peaked, some zero."""
    logits = rng.normal(0, rng.choice([0.3, 2.0, 6.0]), size=shape)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = np.floor(p / p.sum(-1, keepdims=True) * (PROB_ONE - 1)).astype(np.int64)
    return p


def _sample(dut, rng, count, lay):
    g, v = dut.gamma, dut.vocab
    p = _probs(rng, (count, g + 1, v))
    q = _probs(rng, (count, g + 1, v))
    kind = rng.random(count)
    q[kind < 0.15, :g] = p[kind < 0.15, :g]  # draft equals target: all accepted
    p[(kind >= 0.15) & (kind < 0.2)] = 0  # degenerate target rows: token-0 fallback
    draft = rng.integers(0, v, size=(count, g + 1))
    u = rng.integers(0, PROB_ONE, size=(count, g + 1))
    r = rng.integers(0, PROB_ONE, size=(count, g + 1))
    acc, tok = verify_sample(torch.from_numpy(draft[:, :g]), torch.from_numpy(p),
                             torch.from_numpy(q[:, :g]), torch.from_numpy(u[:, :g]),
                             torch.from_numpy(r), device="cpu")
    ins = [[pack(lay["x"], {"draft": int(draft[t, i]), "p": p[t, i].tolist(),
                            "q": q[t, i].tolist(), "u": int(u[t, i]), "r": int(r[t, i])})
            for i in range(g + 1)] for t in range(count)]
    exp = [[pack(lay["y"], {"accepted": int(acc[t]), "token": int(tok[t])})] for t in range(count)]
    return {"x": ins}, exp


def softmax(dut, rng, count):
    from rtl.sfu import softmax_layouts

    n, lanes = dut.n, dut.lanes
    lay = softmax_layouts(lanes)
    spread = rng.choice([4, 40, 256], size=(count, 1))
    centre = rng.integers(-128, 128, size=(count, 1))
    x = np.clip(centre + rng.integers(-128, 128, size=(count, n)) * spread // 256, -128, 127)
    x[rng.random(count) < 0.05] = 127  # all equal: every output 1/n
    y = softmax_fixed(torch.from_numpy(x), device="cpu").numpy()
    ins = [[pack(lay["x"], x[t, i:i + lanes].tolist()) for i in range(0, n, lanes)]
           for t in range(count)]
    exp = [[pack(lay["y"], y[t, i:i + lanes].tolist()) for i in range(0, n, lanes)]
           for t in range(count)]
    return {"x": ins}, exp

"""The N:M ablation: every linear dense, then at 8:16, 4:16 and 2:16, prefill and decode apart.

The paper credits N:M sparsity with 1.6x compute efficiency. Our default setup (the authors'
artifact) sparsifies q_proj and k_proj alone, at a 70% keep: 2 of a LLaMA layer's 7 linears,
17% of its MACs, so it cuts at most 5% of them (``ablate``'s first row, ~1.05x). This table puts
one N:16 pattern on *every* linear (the output head included) against the same config dense,
and says per row what bounds the pass: the MPE's MACs (MM busy, prefill), the A-buffer reads of
weights and their 4-bit indices that feed each MV (decode: an MV cannot run faster than A
delivers its tile, ``sim.flightllm.mpe``), or the HBM loads of weights, indices and FSB bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mapping.flightllm.compression import CompressionConfig, LinearRule, apply_compression
from models.graph import Graph, OpKind
from sim.flightllm.simulate import PassResult, simulate_graph
from sim.spec import FlightLLMSpec

__all__ = ["PATTERNS", "nm_ablation", "nm_markdown"]

PATTERNS = (16, 8, 4, 2)   # dense, then the CSD-Chain's N:16 patterns (FlightLLM §4)


def _every_linear(dense: CompressionConfig, n: int) -> CompressionConfig:
    """``dense`` with one N:16 pattern on every linear (a last rule matching every module)."""
    if n == 16:
        return dense
    return dataclasses.replace(dense, name=f"{dense.name}_{n}of16",
                               rules=(*dense.rules, LinearRule(match=("",), pattern=n)))


def _bytes(g: Graph) -> tuple[int, int, int]:
    """(kept weight bytes, index bytes, FSB bytes) of the compressed graph's linears."""
    w = i = f = 0
    for node in g.nodes:
        if node.kind is OpKind.LINEAR and "weight_bits" in node.attr:
            a = node.attr
            i += a.get("meta_bytes", 0)
            f += a.get("fsb_bytes", 0)
            w += node.weight_bytes - a.get("meta_bytes", 0) - a.get("fsb_bytes", 0) \
                - a.get("bias_bytes", 0)
    return w, i, f


def _bound(phase: str, r: PassResult, ws: tuple[int, int, int]) -> str:
    """One sentence: what bounds this pass (the busiest unit, and what it moves)."""
    mpe_q = "MM" if phase == "prefill" else "MV"
    busy = {"MPE": r.busy[mpe_q], "HBM loads": r.busy["LD"], "SFU": r.busy["MISC"]}
    top = max(busy, key=busy.__getitem__)
    w, i, f = (x / 1e9 for x in ws)
    what = f"weights {w:.2f} GB + indices {i:.2f} GB + FSB {f * 1e3:.1f} MB"
    load = ", ".join(f"{k} {v:.0%}" for k, v in busy.items())
    if busy[top] < 0.6:
        return (f"no unit is saturated ({load} busy): the hand-offs between them (barriers, "
                f"softmax and norms between the linears) bound it; {what}")
    if top == "HBM loads":
        return f"HBM loads of {what} bound it ({load} busy)"
    if top == "MPE" and phase == "decode":
        return (f"the MV bounds it ({load} busy): each MV waits for A to deliver its tile, "
                f"{what}")
    if top == "MPE":
        return f"MACs bound it ({load} busy): N:16 cuts the chain passes 16/N-fold; {what}"
    return f"the SFU bounds it ({load} busy); {what}"


def nm_ablation(spec: FlightLLMSpec, graphs: dict[str, Graph],
                dense: CompressionConfig) -> list[dict[str, Any]]:
    """Rows per phase (``graphs``: raw ``prefill`` and ``decode`` graphs) and pattern."""
    rows = []
    for phase, g in graphs.items():
        base = None
        for n in PATTERNS:
            cg = apply_compression(g, _every_linear(dense, n))
            r = simulate_graph(spec, cg)
            base = base or r
            rows.append({"phase": phase, "pattern": "dense" if n == 16 else f"{n}:16",
                         "ms": r.seconds * 1e3, "speedup_x": base.seconds / r.seconds,
                         "dsp_utilisation": r.dsp_utilisation,
                         "dsp_dense_utilisation": r.dsp_dense_utilisation,
                         "bound": _bound(phase, r, _bytes(cg))})
    return rows


def nm_markdown(rows: list[dict[str, Any]], paper_x: float) -> str:
    lines = ["| phase | every linear | time ms | vs dense | DSP util. (kept / dense-equiv.) "
             "| paper | what bounds it |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        paper = f"{paper_x:.1f}x" if r["pattern"] != "dense" else "-"
        lines.append(f"| {r['phase']} | {r['pattern']} | {r['ms']:.2f} | {r['speedup_x']:.2f}x "
                     f"| {r['dsp_utilisation']:.1%} / {r['dsp_dense_utilisation']:.1%} "
                     f"| {paper} | {r['bound']} |")
    return "\n".join(lines)

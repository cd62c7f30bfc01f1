"""A pass of identical decoder layers from three short programs: simulate 1, 2 and 3 layers
(plus the model's head and tail), extrapolate to all of them.

Every layer of a decoder whose layers have the same ops on the same shapes compiles to the
same instructions (``mapping.flightllm.replicate``), and the per-layer SYS barrier brings the
cores back to the same state each layer, so each layer after the first adds the same cycles,
instructions, bytes and busy time. Each count ``X`` of the full pass is then
``X(1) + (L - 1) (X(2) - X(1))``. The run checks this on the spot (``X(3) - X(2)`` must equal
``X(2) - X(1)`` for the cycles and every count, else it simulates the whole pass), and
``tests/torch/test_flightllm_periodic.py`` checks it against the whole pass, cycle for cycle,
on several models, contexts and both boards. Layers that differ (per-layer attention masks in
prefill, per-layer sparsity or bits) are simulated in full.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mapping.flightllm.replicate import layer_ranges, signature
from models.graph import Graph

__all__ = ["FIRST", "identical_layers", "truncate_layers"]

FIRST = 1  # layers in the shortest program; the three programs have 1, 2 and 3


def identical_layers(g: Graph) -> int:
    """The number of layers if layers 1.. all have layer 1's signature and there are enough
    of them to gain from extrapolation; else 0."""
    ranges = layer_ranges(g)
    if len(ranges) < FIRST + 4:
        return 0
    sigs = {signature(g.nodes[s:e]) for _, s, e in ranges[1:]}
    return len(ranges) if len(sigs) == 1 else 0


def truncate_layers(g: Graph, k: int) -> Graph:
    """``g`` with its first ``k`` layers and its tail (final norm, head): what read the last
    layer's output reads layer ``k - 1``'s."""
    ranges = layer_ranges(g)
    last, end = ranges[-1][0], ranges[-1][2]
    keep = ranges[k - 1][2]
    pat = re.compile(rf"layers\.{last}(?=[./])")
    tail = tuple(replace(n, inputs=tuple(pat.sub(f"layers.{ranges[k - 1][0]}", i)
                                         for i in n.inputs)) for n in g.nodes[end:])
    return replace(g, nodes=g.nodes[:keep] + tail)

"""Build an N-layer graph from a trace of the same model with two layers.

Exporting is ~2 ms per ATen node here, so a 7B model costs seconds to trace; its 32 decoder
layers are identical, though. When ``models.trace`` has checked that every layer of the real
model has the same structure (module classes, parameter shapes, attention type), it exports a
two-layer copy and this module repeats layer 1 for layers 2..N-1. The result equals a full
trace node for node (tests/torch/test_trace.py compares them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from models.graph import Graph, Node, Param

__all__ = ["replicate_layers"]


def _shifter(container: str, delta: int) -> Callable[[str], str]:
    """Rewrite layer indices in names: ``{container}.{i}`` and ``past.{i}`` -> i + delta."""
    pat = re.compile(rf"\b({re.escape(container)}|past)\.(\d+)(?=[./]|$)")

    def shift(s: str) -> str:
        return pat.sub(lambda m: f"{m.group(1)}.{int(m.group(2)) + delta}", s)

    return shift


def _shift_node(n: Node, shift: Callable[[str], str], layer: int) -> Node:
    return replace(n, name=shift(n.name), module=shift(n.module), layer=layer,
                   inputs=tuple(shift(i) for i in n.inputs),
                   weights=tuple(shift(w) for w in n.weights))


def _local(layer: list[Node], shift: Callable[[str], str]) -> list[Node]:
    """A layer's nodes renamed by ``shift``, inputs from outside the layer blanked out."""
    own = {shift(n.name) for n in layer}
    out = []
    for n in layer:
        m = _shift_node(n, shift, 1)
        out.append(replace(m, inputs=tuple(i if i in own else "<outside>" for i in m.inputs)))
    return out


def _split(g: Graph) -> tuple[list[Node], list[Node], list[Node], list[Node]]:
    prefix: list[Node] = []
    layers: dict[int, list[Node]] = {0: [], 1: []}
    suffix: list[Node] = []
    for n in g.nodes:
        if n.layer in layers:
            if suffix:
                raise ValueError(f"node {n.name!r} of a layer follows the layers' suffix")
            layers[n.layer].append(n)
        elif n.layer == -1:
            (suffix if layers[0] else prefix).append(n)
        else:
            raise ValueError(f"node {n.name!r} is in layer {n.layer}; expected a 2-layer trace")
    return prefix, layers[0], layers[1], suffix


def replicate_layers(g: Graph, n_layers: int, container: str) -> Graph:
    """The ``n_layers`` graph from a 2-layer trace ``g`` whose layers live in ``container``."""
    if n_layers <= 2:
        raise ValueError("replicate_layers needs a target of more than 2 layers")
    prefix, layer0, layer1, suffix = _split(g)
    if _local(layer0, _shifter(container, 1)) != _local(layer1, lambda s: s):
        raise ValueError("layers 0 and 1 of the 2-layer trace differ; trace all layers instead")
    nodes = list(prefix) + layer0 + layer1
    for layer in range(2, n_layers):
        shift = _shifter(container, layer - 1)
        nodes.extend(_shift_node(n, shift, layer) for n in layer1)
    last = _shifter(container, n_layers - 2)
    nodes.extend(replace(n, inputs=tuple(last(i) for i in n.inputs)) for n in suffix)
    params = _params(g.params, container, n_layers)
    return replace(g, nodes=tuple(nodes), params=params)


def _params(params: tuple[Param, ...], container: str, n_layers: int) -> tuple[Param, ...]:
    one = re.compile(rf"^{re.escape(container)}\.1\.")
    zero = re.compile(rf"^{re.escape(container)}\.0\.")
    layer1 = [p for p in params if one.match(p.name)]
    if len(layer1) != sum(1 for p in params if zero.match(p.name)):
        raise ValueError("layers 0 and 1 of the 2-layer trace have different parameters")
    out: list[Param] = []
    for p in params:
        if p is layer1[0] if layer1 else False:
            for layer in range(1, n_layers):
                shift = _shifter(container, layer - 1)
                out.extend(replace(q, name=shift(q.name)) for q in layer1)
        elif not one.match(p.name):
            out.append(p)
    return tuple(out)

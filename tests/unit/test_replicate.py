"""Layer replication on synthetic graphs (the torch layer checks it against full traces)."""

from __future__ import annotations

import dataclasses

import pytest

from models.replicate import replicate_layers
from tests.unit.graphs import decoder_like


def test_two_layers_replicate_to_n():
    two = decoder_like(layers=2)
    five = decoder_like(layers=5)
    assert replicate_layers(two, 5, "layers") == five


def test_differing_layers_are_refused():
    two = decoder_like(layers=2)
    nodes = list(two.nodes)
    nodes[-1] = dataclasses.replace(nodes[-1], flops=nodes[-1].flops + 1)
    with pytest.raises(ValueError, match="differ"):
        replicate_layers(two.with_nodes(nodes), 4, "layers")

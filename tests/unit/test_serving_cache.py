"""Serving pass tables on disk (``sim.serving.cache``): a table read back equals the one
built; the key moves with the spec, the grid and the model; a broken file is rebuilt."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.zoo import get_model
from sim.serving import device
from sim.serving.cache import load_table, save_table, table_path
from sim.serving.passes import build_table
from sim.spec import load_preset, validate
from tests.unit.serving_graphs import SOURCES

SPEC = load_preset("hades")
GRID = {"fidelity": "roofline", "storage": "FP16", "max_tokens": 64, "max_batch": 8,
        "max_context": 400, "separate": False}


def _build():
    return build_table(SPEC, "roofline", *SOURCES, max_tokens=64, max_batch=8, max_context=400)


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(getattr(a, f.name)), np.asarray(getattr(b, f.name)))
               for f in dataclasses.fields(a))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path))
    monkeypatch.delenv("LLMCOSIM_SERVING_CACHE", raising=False)
    monkeypatch.setattr(device, "_TABLES", {})
    return tmp_path


def test_round_trip(cache):
    table = _build()
    path = table_path(SPEC, {"m": 1}, **GRID)
    save_table(path, table)
    assert _same(load_table(path), table)


def test_key_moves_with_what_sets_the_numbers(cache, monkeypatch):
    base = table_path(SPEC, {"m": 1}, **GRID)
    faster = validate(dataclasses.replace(SPEC, clock_hz=SPEC.clock_hz * 2))
    assert table_path(faster, {"m": 1}, **GRID) != base
    assert table_path(SPEC, {"m": 2}, **GRID) != base
    assert table_path(SPEC, {"m": 1}, **(GRID | {"max_batch": 16})) != base
    assert table_path(SPEC, {"m": 1}, **GRID) == base
    monkeypatch.setenv("LLMCOSIM_SERVING_CACHE", "0")
    assert table_path(SPEC, {"m": 1}, **GRID) is None


def test_second_process_reads_the_disk_and_a_broken_file_is_rebuilt(cache, monkeypatch):
    builds = []

    def build():
        builds.append(1)
        return _build()

    entry = get_model("llama2-7b")
    first = device._cached_table(SPEC, entry, GRID, build)
    monkeypatch.setattr(device, "_TABLES", {})          # a new process: memory empty
    again = device._cached_table(SPEC, entry, GRID, build)
    assert len(builds) == 1 and _same(first, again)
    (path,) = (cache / "serving-tables").glob("*.npz")
    path.write_bytes(b"not a table")
    monkeypatch.setattr(device, "_TABLES", {})
    rebuilt = device._cached_table(SPEC, entry, GRID, build)
    assert len(builds) == 2 and _same(first, rebuilt)

"""Compiled FlightLLM programs are reused within a process (``program_for``): a program
depends on the graph and ``arch_of(spec)`` only, so designs that differ in clock, MPE size or
HBM speed share one. Reuse must give exactly the cycles of a fresh compilation, whatever ran
before, and ``fill_cycles`` must never write into the kept program."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

from mapping.flightllm.codegen import generate
from mapping.flightllm.synthetic import llama_like
from models.errors import UserError
from models.graph import Phase
from sim.flightllm.simulate import clear_programs, program_for, simulate_graph
from sim.flightllm.timing import arch_of
from sim.spec import load_preset, validate

fsim = importlib.import_module("sim.flightllm.simulate")  # the package exports a function so named
KW = {"layers": 3, "hidden": 512, "heads": 8, "ffn": 1024, "vocab": 1024}
U280 = load_preset("flightllm-u280")
VARIANTS = [U280,
            validate(dataclasses.replace(U280, clock_hz=150e6)),
            validate(dataclasses.replace(U280, mm_macs_per_cycle=2048)),
            validate(dataclasses.replace(U280, hbm_channel_bytes_per_s=8e9, hbm_bytes_per_s=256e9)),
            load_preset("flightllm-vhk158")]


def _graphs():
    return [llama_like(phase=Phase.DECODE, context=300, **KW),
            llama_like(phase=Phase.PREFILL, tokens=256, **KW)]


def _fresh(spec, g):
    clear_programs()
    r = simulate_graph(spec, g)
    clear_programs()
    return r


@pytest.mark.parametrize("phase", [0, 1])
def test_reuse_equals_fresh_compilation_in_any_order(phase: int) -> None:
    g = _graphs()[phase]
    fresh = [_fresh(s, g) for s in VARIANTS]
    clear_programs()
    for order in (VARIANTS, VARIANTS[::-1], VARIANTS + VARIANTS):
        got = {id(s): simulate_graph(s, g) for s in order}
        for s, want in zip(VARIANTS, fresh, strict=True):
            r = got[id(s)]
            assert (r.cycles, r.counts, r.busy, r.hbm_bytes) == \
                (want.cycles, want.counts, want.busy, want.hbm_bytes)
            for a, b in zip(r.program.cores, want.program.cores, strict=True):
                assert np.array_equal(a, b)
    # the designs differ in time (decode ignores the MM size), so shared cycles would show
    assert len({r.cycles for r in fresh}) >= 4


def test_kept_program_is_not_written_by_fill_cycles() -> None:
    g = _graphs()[0]
    clear_programs()
    arch = arch_of(U280)
    before = [a.copy() for a in program_for(g, arch).cores]
    simulate_graph(VARIANTS[1], g)
    simulate_graph(VARIANTS[2], g)
    after = program_for(g, arch).cores
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(np.array_equal(a, b) for a, b in
               zip(after, generate(g, arch).cores, strict=True))


def test_budget_zero_compiles_every_time_and_bad_budget_is_one_line(monkeypatch) -> None:
    g = _graphs()[0]
    clear_programs()
    monkeypatch.setenv("LLMCOSIM_PROGRAM_CACHE_MB", "0")
    simulate_graph(U280, g)
    assert not fsim._PROGRAMS
    monkeypatch.setenv("LLMCOSIM_PROGRAM_CACHE_MB", "lots")
    with pytest.raises(UserError, match="LLMCOSIM_PROGRAM_CACHE_MB must be a number"):
        simulate_graph(U280, g)


def test_budget_evicts_oldest(monkeypatch) -> None:
    clear_programs()
    graphs = [llama_like(phase=Phase.DECODE, context=c, **KW) for c in (100, 200, 300, 400)]
    one = sum(a.nbytes for a in generate(graphs[0], arch_of(U280)).cores)
    monkeypatch.setenv("LLMCOSIM_PROGRAM_CACHE_MB", str(3.5 * one / 2**20))
    for g in graphs:
        simulate_graph(U280, g)
    kept = [k.g.context for k in fsim._PROGRAMS]
    assert kept and kept[-1] == 400 and 100 not in kept
    assert sum(sum(a.nbytes for a in p.cores) for p in fsim._PROGRAMS.values()) \
        <= 3.5 * one


def test_a_lookup_hashes_its_graph_once_however_many_are_kept(monkeypatch):
    """An OrderedDict hashes a key again on every move, pop and values() step, and a graph's
    hash walks every node: keys carry their hash, so the work per call does not grow with
    the number of kept programs (it did: the co-design sweep slowed down point after point)."""
    from models.graph import Graph

    clear_programs()
    graphs = [llama_like(phase=Phase.DECODE, context=c, **KW) for c in range(100, 400, 25)]
    arch = arch_of(U280)
    for g in graphs:
        program_for(g, arch)
    calls = []
    orig = Graph.__hash__
    monkeypatch.setattr(Graph, "__hash__", lambda self: calls.append(1) or orig(self))
    for g in graphs:                       # hits: each moves its key to the end
        program_for(g, arch)
    program_for(llama_like(phase=Phase.DECODE, context=999, **KW), arch)   # a miss
    assert len(calls) == len(graphs) + 1

"""HADES: speculation-aware LLM ASIC — spec, units, energy, event-driven simulator."""

from sim.hades.spec import HadesSpec

__all__ = ["HadesSpec"]

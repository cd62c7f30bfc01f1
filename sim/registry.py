"""One interface to every simulator: ``run(spec, workload, fidelity) -> SimResult``.

A simulator registers a function under a fidelity name and the hardware kinds it models; the
CLI, the demo and sweeps call :func:`run` and never import a simulator directly. The roofline
models every kind; cycle-level simulators (FlightLLM, HADES) and the calibrated GPU model
register themselves here as they land.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.errors import UserError
from models.workload import Workload
from sim.result import SimResult
from sim.spec import HardwareSpec

__all__ = ["Simulator", "fidelities", "register", "run"]

SimulateFn = Callable[[HardwareSpec, Workload], SimResult]


@dataclass(frozen=True)
class Simulator:
    fidelity: str
    kinds: frozenset[str] | None   # hardware kinds it models; None: all
    fn: SimulateFn
    description: str


_REGISTRY: dict[str, Simulator] = {}


def register(fidelity: str, fn: SimulateFn, *, kinds: set[str] | None = None,
             description: str = "") -> None:
    _REGISTRY[fidelity] = Simulator(fidelity, frozenset(kinds) if kinds else None, fn,
                                    description)


def fidelities(kind: str | None = None) -> list[str]:
    """Fidelity names, those that model hardware ``kind`` when given."""
    _load_builtins()
    return [f for f, s in _REGISTRY.items() if kind is None or s.kinds is None or kind in s.kinds]


def run(spec: HardwareSpec, workload: Workload, fidelity: str = "roofline") -> SimResult:
    """Simulate ``workload`` on ``spec`` at ``fidelity``; UserError for unknown combinations."""
    _load_builtins()
    sim = _REGISTRY.get(fidelity)
    if sim is None:
        raise UserError(f"unknown --fidelity {fidelity!r}; available: "
                        f"{', '.join(_REGISTRY)}")
    if sim.kinds is not None and spec.kind not in sim.kinds:
        raise UserError(f"--fidelity {fidelity} models {', '.join(sorted(sim.kinds))} hardware, "
                        f"not {spec.name} ({spec.kind}); for it use one of "
                        f"{', '.join(fidelities(spec.kind))}")
    return sim.fn(spec, workload)


def _load_builtins() -> None:
    if "roofline" not in _REGISTRY:
        from sim.roofline import simulate

        register("roofline", simulate, description="per-op max(FLOPs/peak, bytes/bandwidth)")
    if "cycle" not in _REGISTRY:
        from sim.flightllm.simulate import simulate as flightllm_simulate

        register("cycle", flightllm_simulate, kinds={"flightllm"},
                 description="FlightLLM cycle-level: ISA program on HBM/MPE/SFU unit models")
    if "event" not in _REGISTRY:
        from sim.hades.simulate import simulate_cycle

        register("event", simulate_cycle, kinds={"hades"},
                 description="HADES event-driven simulator (speculation rounds over its units)")

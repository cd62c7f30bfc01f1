"""One interface to every simulator: ``run(spec, workload, fidelity) -> SimResult``.

A simulator registers a function under a fidelity name and the hardware kinds it models; the
CLI, the demo and sweeps call :func:`run` and never import a simulator directly. The roofline
models every kind; cycle-level simulators (FlightLLM, HADES) and the calibrated GPU model
register themselves here as they land.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.errors import UserError
from models.workload import Workload
from sim.result import SimResult
from sim.spec import HardwareSpec

__all__ = ["BEST", "Simulator", "best_fidelity", "fidelities", "register", "run"]

BEST = "best"  # the most detailed simulator registered for the hardware's kind
_PREFERENCE = ("cycle", "calibrated", "roofline")

SimulateFn = Callable[..., SimResult]  # (spec, workload, **options) -> SimResult


@dataclass(frozen=True)
class Simulator:
    fidelity: str
    kinds: frozenset[str] | None   # hardware kinds it models; None: all
    fn: SimulateFn
    description: str
    options: frozenset[str] = frozenset()  # keyword options fn accepts beyond (spec, workload)
    reports_progress: bool = False  # fn takes progress=(done, total) callback


_REGISTRY: dict[str, list[Simulator]] = {}  # fidelity -> simulators (disjoint kinds)


def register(fidelity: str, fn: SimulateFn, *, kinds: set[str] | None = None,
             description: str = "", options: tuple[str, ...] = (),
             reports_progress: bool = False) -> None:
    """Add a simulator; one fidelity name may have one simulator per hardware kind."""
    sims = _REGISTRY.setdefault(fidelity, [])
    new = Simulator(fidelity, frozenset(kinds) if kinds else None, fn, description,
                    frozenset(options), reports_progress)
    sims[:] = [s for s in sims if s.kinds is not None and new.kinds is not None
               and not s.kinds & new.kinds] + [new]


def _find(fidelity: str, kind: str) -> Simulator | None:
    for sim in _REGISTRY.get(fidelity, []):
        if sim.kinds is None or kind in sim.kinds:
            return sim
    return None


def fidelities(kind: str | None = None) -> list[str]:
    """Fidelity names, those that model hardware ``kind`` when given."""
    _load_builtins()
    return [f for f in _REGISTRY if kind is None or _find(f, kind) is not None]


def best_fidelity(kind: str, speculative: bool = False) -> str:
    """Cycle-level where there is one, else calibrated, else the roofline. ``speculative``
    does not change the choice: HADES and FlightLLM run their speculation schedules at cycle
    level (``sim.hades.speculate``), the others at the roofline."""
    _load_builtins()
    del speculative  # kept for callers: every kind's best speculative fidelity is its best
    for f in _PREFERENCE:
        if _find(f, kind) is not None:
            return f
    return "roofline"


def run(spec: HardwareSpec, workload: Workload, fidelity: str = "roofline", *,
        progress: Callable[[int, int], None] | None = None, **options: Any) -> SimResult:
    """Simulate ``workload`` on ``spec`` at ``fidelity``; UserError for unknown combinations.

    ``fidelity="best"`` picks :func:`best_fidelity` for the hardware's kind. A speculative
    workload (``mapping.spec_workload``) runs its speculation schedule; options are
    simulator-specific (FlightLLM cycle: ``compression``, a compression config, and
    ``trace``, a Perfetto output path). ``progress(done, total)`` reaches the simulators that
    report it (FlightLLM cycle: programs simulated); the others finish in seconds and ignore it.
    """
    _load_builtins()
    if fidelity == BEST:
        fidelity = best_fidelity(spec.kind, getattr(workload, "config", None) is not None)
    if fidelity not in _REGISTRY:
        raise UserError(f"unknown --fidelity {fidelity!r}; available: {', '.join(_REGISTRY)}")
    sim = _find(fidelity, spec.kind)
    if sim is None:
        raise UserError(f"--fidelity {fidelity} does not model {spec.name} ({spec.kind}); "
                        f"for it use one of {', '.join(fidelities(spec.kind))}")
    given = {k for k, v in options.items() if v is not None}
    if given - sim.options:
        raise UserError(f"--fidelity {fidelity} on {spec.kind} hardware takes no option "
                        f"{', '.join(sorted(given - sim.options))}; it takes: "
                        f"{', '.join(sorted(sim.options)) or 'none'}")
    kwargs = {k: options[k] for k in given}
    if progress is not None and sim.reports_progress:
        kwargs["progress"] = progress
    return sim.fn(spec, workload, **kwargs)


def _flightllm_cycle(spec: HardwareSpec, w: Workload, compression: Any = None,
                     trace: str | None = None, decode_bucket: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> SimResult:
    """FlightLLM cycle level; a speculative workload runs its speculation schedule
    (``sim.flightllm.speculate``; no trace or progress there)."""
    from sim.flightllm.simulate import simulate as flightllm_simulate

    if getattr(w, "config", None) is not None:
        from sim.flightllm.speculate import simulate_speculative

        if trace is not None:
            raise UserError("--trace (a Perfetto timeline) of speculative decoding needs "
                            "--hw hades")
        return simulate_speculative(spec, w, compression,  # type: ignore[arg-type]
                                    decode_bucket=decode_bucket)
    return flightllm_simulate(spec, w, compression, trace, decode_bucket, progress)


def _load_builtins() -> None:
    if "roofline" in _REGISTRY:
        return
    from sim.hades.simulate import simulate_cycle as hades_simulate

    register("roofline", _roofline, description="per-op max(FLOPs/peak, bytes/bandwidth)")
    register("cycle", _flightllm_cycle,
             kinds={"flightllm"}, options=("compression", "trace", "decode_bucket"),
             reports_progress=True,
             description="FlightLLM cycle-level: ISA program on HBM/MPE/SFU unit models")
    register("cycle", hades_simulate, kinds={"hades"},
             description="HADES event-driven simulator (speculation rounds over its units)")
    from sim.gpu import simulate as gpu_simulate

    register("calibrated", gpu_simulate, kinds={"gpu"}, options=("stack",),
             description="GPU kernel model calibrated on measured per-op data")
    # "event" was HADES's first name for its simulator; kept so saved sweeps still run.
    register("event", hades_simulate, kinds={"hades"}, description="alias of cycle on HADES")


def _roofline(spec: HardwareSpec, w: Workload) -> SimResult:
    """Roofline of a plain workload, or of a speculation schedule pass by pass."""
    from mapping.spec_workload import SpeculativeWorkload

    if isinstance(w, SpeculativeWorkload) and w.config is not None:
        from sim.hades.simulate import speculative_roofline

        return speculative_roofline(spec, w)
    from sim.roofline import simulate

    return simulate(spec, w)

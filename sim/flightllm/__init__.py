"""FlightLLM cycle-level simulator: HBM, MPE (CSD-Chain), SFU timing; SimPy and numba engines."""

from sim.flightllm.simulate import simulate, simulate_graph

__all__ = ["simulate", "simulate_graph"]

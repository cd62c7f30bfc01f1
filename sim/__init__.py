"""Hardware models and simulators."""

import importlib

__all__: list[str] = []

# Spec kinds defined outside sim/spec.py register themselves on import; load them here so
# load_preset() knows every kind in configs/hw/ (HADES: sim/hades/spec.py).
importlib.import_module("sim.hades.spec")

"""FPGA resource columns of sweep points (FlightLLM presets; NULL for other devices).

``resources_dsp``, ``resources_lut``, ``resources_ff``, ``resources_bram`` (BRAM36),
``resources_uram`` (URAM288) and their fractions of the device (``*_util``, NULL where the
preset gives no capacity) come from ``sim/flightllm/resources.py``: recorded Yosys counts of the
RTL blocks plus the buffers' BRAM/URAM, with the point's hardware overrides applied. They depend
on the spec only, so a sweep's constraints may name them and filter a point before simulating
(``"resources_dsp <= fpga_dsp_count"``, ``"resources_uram_util <= 0.9"``); ``sweep show
--pareto`` minimises them. A point whose architecture needs a block configuration missing from
``configs/resources/rtl_synth.json`` gets NULL columns and a note naming it, never 0.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RESOURCE_METRICS", "resource_columns"]

_COUNT = {"resources_dsp": ("dsp", "fpga_dsp_count"), "resources_lut": ("lut", "fpga_lut_count"),
          "resources_ff": ("ff", "fpga_ff_count"),
          "resources_bram": ("bram36", "fpga_bram36_count"),
          "resources_uram": ("uram288", "fpga_uram288_count")}
RESOURCE_METRICS = (*_COUNT, *(f"{k}_util" for k in _COUNT))
_MEMO: dict[Any, tuple[dict[str, float | None], list[str]]] = {}


def resource_columns(spec: Any, point: Any) -> tuple[dict[str, float | None], list[str]]:
    """The point's resource columns and notes (all None for a non-FlightLLM spec)."""
    from sim.spec import FlightLLMSpec

    if not isinstance(spec, FlightLLMSpec):
        return dict.fromkeys(RESOURCE_METRICS), []
    bits = point.weight_bits if point.weight_bits in (2, 3, 4, 8) else 4
    # a tree point (gamma unset) speculates too: the verifier and the draft's placement count
    speculative = getattr(point, "speculative", getattr(point, "gamma", None) is not None)
    key = (spec, bits, speculative)
    if key not in _MEMO:
        from models.errors import UserError
        from sim.flightllm.resources import estimate

        try:
            rep = estimate(spec, weight_bits=bits, speculation=speculative)
        except UserError as e:   # e.g. a separate draft engine with no HBM channel left:
            # NULL columns (rules on them do not apply); simulating fails with the message
            _MEMO[key] = dict.fromkeys(RESOURCE_METRICS), [f"resources: {e}"]
            return dict(_MEMO[key][0]), list(_MEMO[key][1])
        cols: dict[str, float | None] = {}
        for col, (res, cap_field) in _COUNT.items():
            total, cap = rep.totals[res], getattr(spec, cap_field)
            cols[col] = total
            cols[f"{col}_util"] = total / cap if total is not None and cap else None
        _MEMO[key] = cols, list(rep.notes)
    cols, notes = _MEMO[key]
    return dict(cols), list(notes)

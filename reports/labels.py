"""Axis labels for plots: one table from column names to a quantity, its unit and a scale.

``label("decode_tokens_per_s")`` is "decode throughput (tokens/s)"; ``scale("clock_hz")`` is
1e-6 because clocks are shown in MHz. Hardware fields not in the table take their unit from
the field-name suffix (``sim.units.unit_of_field``: ``_hz``, ``_bytes_per_s``, ``_bytes``,
...) with an SI prefix fitted to typical magnitudes; counts and categories (cores, batch,
the preset) are unitless and listed in the table with an empty unit.
"""

from __future__ import annotations

import re

from sim.units import unit_of_field

__all__ = ["LABELS", "is_labelled", "label", "quantity", "scale", "unitless_labels"]

# column -> (quantity, unit shown, factor from the stored value to the unit shown)
LABELS: dict[str, tuple[str, str, float]] = {
    "decode_tokens_per_s": ("decode throughput", "tokens/s", 1.0),
    "tokens_per_s": ("decode throughput", "tokens/s", 1.0),
    "baseline_tokens_per_s": ("decode throughput without speculation", "tokens/s", 1.0),
    "tokens_per_j": ("decode energy efficiency", "tokens/J", 1.0),
    "tokens_per_s_per_usd": ("decode throughput per price", "tokens/s per $", 1.0),
    "prefill_ms": ("prefill time", "ms", 1.0),
    "decode_ms_per_token": ("decode time", "ms/token", 1.0),
    "total_ms": ("total time", "ms", 1.0),
    "energy_j": ("energy", "J", 1.0),
    "memory_bytes": ("memory", "GB", 1e-9),
    "price_usd": ("price", "$", 1.0),
    "peak_ops_per_s": ("peak compute", "TOP/s", 1e-12),
    "mem_bytes_per_s": ("memory bandwidth", "GB/s", 1e-9),
    "clock_hz": ("clock", "MHz", 1e-6),
    "hbm_bytes_per_s": ("HBM bandwidth", "GB/s", 1e-9),
    "weight_bits": ("weight precision", "bits", 1.0),
    "kv_bits": ("KV-cache precision", "bits", 1.0),
    "prefill": ("prompt length", "tokens", 1.0),
    "decode": ("generated length", "tokens", 1.0),
    "keep": ("kept fraction of weights", "", 1.0),
    "speedup": ("speedup over plain decode", "x", 1.0),
    "mean_accepted": ("mean accepted draft tokens", "tokens/round", 1.0),
    "tokens_per_pass": ("tokens per target pass", "tokens/pass", 1.0),
    "gamma": ("draft tokens per round γ", "tokens", 1.0),
    # unitless: counts and categories
    "hw": ("hardware preset", "", 1.0),
    "preset": ("hardware preset", "", 1.0),
    "model": ("model", "", 1.0),
    "fidelity": ("fidelity", "", 1.0),
    "batch": ("batch size", "", 1.0),
    "cores": ("cores", "", 1.0),
    "hbm_channels": ("HBM channels", "", 1.0),
    "alpha": ("acceptance rate α", "", 1.0),
    "tree": ("token tree", "", 1.0),
    "draft": ("draft model", "", 1.0),
    "sparsity": ("compression config", "", 1.0),
    "dtype": ("data type", "", 1.0),
}

# unit suffixes of hardware fields (sim/units.py) -> (unit shown, factor)
_SHOWN = {"bytes/s": ("GB/s", 1e-9), "FLOP/s": ("TFLOP/s", 1e-12), "op/s": ("TOP/s", 1e-12),
          "Hz": ("MHz", 1e-6), "bytes": ("MB", 1e-6), "W": ("W", 1.0), "USD": ("$", 1.0),
          "s": ("s", 1.0)}
_SUFFIX = re.compile(r"_(bytes_per_s|flops_per_s|ops_per_s|hz|bytes|w|usd|s)$")


def _entry(column: str) -> tuple[str, str, float]:
    if column in LABELS:
        return LABELS[column]
    unit = unit_of_field(column)
    words = _SUFFIX.sub("", column).replace("_", " ")
    if unit is None:   # a count (macs_per_dsp, mm_macs_per_cycle, ...)
        return words, "", 1.0
    shown, factor = _SHOWN[unit[0]]
    return words, shown, factor


def label(column: str) -> str:
    """"quantity (unit)", or the quantity alone for counts and categories."""
    quantity, unit, _ = _entry(column)
    return f"{quantity} ({unit})" if unit else quantity


def quantity(column: str) -> str:
    """The quantity alone ("clock" for ``clock_hz``), for titles."""
    return _entry(column)[0]


def scale(column: str) -> float:
    """Factor from the stored value to the unit :func:`label` shows."""
    return _entry(column)[2]


def unitless_labels() -> set[str]:
    """Labels of the table's unitless quantities (for checks on plots)."""
    return {q for q, u, _ in LABELS.values() if not u}


def is_labelled(text: str) -> bool:
    """A plot label with a unit in parentheses, or a known unitless quantity."""
    return bool(re.fullmatch(r".+ \([^()]+\)", text)) or text in unitless_labels()

"""Checking one sweep input: a value in canonical form, or an axis (a list or a range table).

Every value of a sweep file (fixed, an axis entry, a range's bounds, a ``[[points]]`` entry)
goes through :func:`check_value`, which names the key and what is allowed on a bad one
(:class:`UserError`); :func:`check_axis` turns a list or ``{min, max, steps, scale, integer}``
table into an :class:`Axis`. The tables, points and the spec itself are in :mod:`sweeps.spec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.errors import UserError
from sweeps.paths import tree_parents
from sweeps.sampling import Axis

__all__ = ["NO_SPECULATION", "SERVING_KEYS", "alpha_text", "check_axis", "check_value"]

NO_SPECULATION = "none"   # speculation.gamma = "none": the point decodes without a draft
SERVING_KEYS = ("rate", "requests", "num_requests", "requests_seed", "slo", "token_budget")
_SERVING_INT = ("num_requests", "requests_seed", "token_budget")
_FLOAT_INPUTS = ("alpha", "keep", "rate")   # may be ranges
_INT_INPUTS = ("prefill", "decode", "batch")
_BITS = ("weight_bits", "kv_bits")


def alpha_text(loc: str, v: Any, where: str = "") -> str:
    """Canonical acceptance text: ``0.8`` -> "0.8", ``"0.9, 0.8"`` -> "0.9,0.8"."""
    try:
        vals = [float(x) for x in (v.split(",") if isinstance(v, str) else [v])]
    except (TypeError, ValueError):
        vals = []
    if isinstance(v, bool) or not vals or not all(0 <= x <= 1 for x in vals):
        raise UserError(f"{where}{loc} = {v!r}: expected an acceptance probability in [0, 1] "
                        "such as 0.8, or per-position values such as \"0.9,0.8,0.7\"")
    return ",".join(f"{x:.6g}" for x in vals)


def check_axis(where: str, loc: str, key: str, value: Any, types: dict[str, type],
               sampling: str) -> Axis:
    """The axis of input ``key`` from a list of values or a range table."""
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: {loc} is an empty list")
        vals = tuple(check_value(where, loc, key, v, types) for v in value)
        return Axis(key, values=tuple(dict.fromkeys(vals)))
    extra = set(value) - {"min", "max", "steps", "scale", "integer", "values"}
    if extra:
        raise UserError(f"{where}: {loc}: unknown range key {sorted(extra)[0]!r}; allowed: "
                        "min, max, steps, scale, integer (or values)")
    if "values" in value:
        return check_axis(where, loc, key, list(value["values"]), types, sampling)
    if types.get(key) not in (int, float) and key not in (*_INT_INPUTS, "gamma",
                                                          *_FLOAT_INPUTS, *_SERVING_INT):
        raise UserError(f"{where}: {loc}: a range needs a numeric input; give a list instead")
    if "min" not in value or "max" not in value:
        raise UserError(f"{where}: {loc}: a range needs min and max")
    lo, hi = (float(check_value(where, loc, key, value[m], types)) for m in ("min", "max"))
    if lo > hi:
        raise UserError(f"{where}: {loc}: min {lo:g} > max {hi:g}")
    scale = value.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise UserError(f"{where}: {loc}.scale = {scale!r}; allowed: linear, log")
    if scale == "log" and lo <= 0:
        raise UserError(f"{where}: {loc}: a log range needs min > 0")
    steps = value.get("steps")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise UserError(f"{where}: {loc}.steps must be a whole number >= 1 (got {steps!r})")
    integer = bool(value.get("integer", types.get(key) is int or key in (*_INT_INPUTS,
                                                                         "gamma", *_SERVING_INT)))
    return Axis(key, lo=lo, hi=hi, steps=steps, log=scale == "log", integer=integer)


def check_value(where: str, loc: str, key: str, v: Any, types: dict[str, type]) -> Any:
    """One value of input ``key``, checked and in canonical form (SI numbers for fields)."""
    if key in ("hw", "model", "dtype", "fidelity", "draft") or types.get(key) is str:
        if not isinstance(v, str):
            raise UserError(f"{where}: {loc} = {v!r}: expected a string")
        return v
    if key == "adaptive":
        if not isinstance(v, bool):
            raise UserError(f"{where}: {loc} = {v!r}: expected true or false (with [serving]: "
                            "choose up to gamma drafts per iteration)")
        return v
    if key == "gamma":
        if v == "none":   # no speculation: plain decode (sweeps.spec, SweepSpec._point)
            return NO_SPECULATION
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"{where}: {loc} = {v!r}: expected a whole number >= 1 "
                            "(draft tokens per round) or \"none\" (no speculation)")
        return v
    if key == "alpha":
        text = alpha_text(loc, v, f"{where}: ")
        return float(text) if "," not in text and not isinstance(v, str) else text
    if key == "tree":
        if not isinstance(v, str):
            raise UserError(f"{where}: {loc} = {v!r}: expected \"chain\", a .toml tree file "
                            "or comma-separated parent indices")
        if v == "chain":
            return None
        tree_parents(loc, v, f"{where}: ")
        return v
    if key == "sparsity":
        if v == "none":
            return None
        if not isinstance(v, str):
            raise UserError(f"{where}: {loc} = {v!r}: expected a FlightLLM compression file "
                            "(configs/sparsity/*.toml) or \"none\"")
        from mapping.flightllm.compression import load_config

        try:
            load_config(v)
        except UserError as e:
            raise UserError(f"{where}: {loc}: {e}") from None
        return v
    if key == "keep":
        from mapping.flightllm.compression import BLOCK_M, SUPPORTED_N

        lo = min(SUPPORTED_N) / BLOCK_M
        if v == "none":
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= 1:
            raise UserError(f"{where}: {loc} = {v!r}: expected a kept fraction in [{lo:g}, 1] "
                            "(the sparsest CSD-Chain pattern is 2:16) or \"none\"")
        return float(v)
    if key in SERVING_KEYS:
        return _serving_value(where, loc, key, v)
    if key in _INT_INPUTS:
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key != "batch" else 1):
            raise UserError(f"{where}: {loc} = {v!r}: expected a whole number >= "
                            f"{0 if key != 'batch' else 1}")
        return v
    if key in _BITS:
        from mapping.compression import ALLOWED_BITS

        if v == "none":
            return None
        if v not in ALLOWED_BITS or isinstance(v, bool):
            raise UserError(f"{where}: {loc} = {v!r}; allowed: "
                            f"{', '.join(map(str, ALLOWED_BITS))} or \"none\"")
        return v
    if key not in types:
        raise UserError(f"{where}: unknown key {loc!r}; hardware fields of these presets: "
                        f"{', '.join(types)}")
    from sim.units import parse_quantity

    try:
        x = parse_quantity(key, v)
    except ValueError as e:
        raise UserError(f"{where}: {loc}: {e}") from None
    if types[key] is int:
        if x != int(x):
            raise UserError(f"{where}: {loc} = {v!r}: must be a whole number")
        return int(x)
    return float(x)


def _serving_value(where: str, loc: str, key: str, v: Any) -> Any:
    """A [serving] value, checked as `llmcosim serve` checks its flag."""
    from sim.serving.metrics import parse_slo
    from sim.serving.requests import parse_rate

    try:
        if key == "rate":
            if isinstance(v, bool) or not isinstance(v, int | float | str):
                raise UserError(f"{v!r}: expected a rate such as 2, 0.5 or \"120/min\"")
            return parse_rate(v)
        if key == "slo":
            if not isinstance(v, str):
                raise UserError(f"{v!r}: expected text such as \"ttft=500ms,tpot=50ms\"")
            parse_slo(v)
            return v.replace(" ", "")
        if key == "requests":
            if not isinstance(v, str) or not Path(v).is_file():
                raise UserError(f"{v!r}: expected an existing lengths .toml or .jsonl trace")
            return v
        low = 0 if key == "requests_seed" else 1
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise UserError(f"{v!r}: expected a whole number >= {low}")
        return v
    except UserError as e:
        raise UserError(f"{where}: {loc} = {e}") from None

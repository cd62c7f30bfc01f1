"""Quantities with units in hardware TOML files: ``460e9`` or ``"460 GB/s"`` for a bytes/s field.

A field's unit comes from its name suffix (``clock_hz`` is in Hz, ``hbm_bytes_per_s`` in
bytes/s). A string value may carry an SI or binary prefix; a unit of the wrong dimension is an
error that names the field and what it expects.
"""

from __future__ import annotations

import re

__all__ = ["UNIT_OF_SUFFIX", "parse_quantity", "unit_of_field"]

# field-name suffix -> (unit shown to users, accepted unit spellings after the prefix)
UNIT_OF_SUFFIX: dict[str, tuple[str, tuple[str, ...]]] = {
    "_bytes_per_s": ("bytes/s", ("B/s", "bytes/s", "byte/s")),
    "_flops_per_s": ("FLOP/s", ("FLOP/s", "FLOPS", "flop/s", "flops")),
    "_ops_per_s": ("op/s", ("OP/s", "OPS", "op/s", "ops")),
    "_hz": ("Hz", ("Hz", "hz")),
    "_bytes": ("bytes", ("B", "bytes", "byte")),
    "_w": ("W", ("W", "w")),
    "_usd": ("USD", ("USD", "$", "usd")),
    "_s": ("s", ("s",)),
}

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_QTY = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?)"
                  r"\s*(Ki|Mi|Gi|Ti|[kKMGTPmun]?)\s*(\S*)\s*$")


def unit_of_field(name: str) -> tuple[str, tuple[str, ...]] | None:
    for suffix, unit in UNIT_OF_SUFFIX.items():
        if name.endswith(suffix):
            return unit
    return None


def parse_quantity(field: str, value: object) -> float:
    """A number for ``field`` from a TOML value; ValueError with the reason otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{field} = {value!r}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{field} = {value!r}: expected a number or a string like '460 GB/s'")
    unit = unit_of_field(field)
    m = _QTY.match(value)
    if m is None:
        raise ValueError(f"{field} = {value!r}: not a quantity; write a number"
                         + (f" in {unit[0]}, or e.g. '2.5 G{unit[1][0]}'" if unit else ""))
    number, prefix, written = float(m.group(1)), m.group(2), m.group(3)
    if unit is None:
        if written:
            raise ValueError(f"{field} = {value!r}: this field takes a plain number, no unit")
        return number * _PREFIX[prefix]
    if not written and not prefix:
        return number
    if written not in unit[1]:
        # "460 G" with no unit word, or a unit of another dimension
        if not written:
            written = prefix
        raise ValueError(f"{field} = {value!r}: unit {written!r} is not {unit[0]}; "
                         f"this field is in {unit[0]} (e.g. {_example(unit)})")
    return number * _PREFIX[prefix]


def _example(unit: tuple[str, tuple[str, ...]]) -> str:
    return f"'1.5 G{unit[1][0]}'" if unit[0] != "USD" else "12000"

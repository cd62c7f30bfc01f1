"""Pack nested Python values into the flat integers of Amaranth layouts, and back.

Fast pure-Python helpers (no per-value Amaranth objects) so that 10,000-vector runs stay cheap.
A struct is a dict, an array a list, a leaf an int; signedness comes from the layout.
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack", "width"]


def width(layout) -> int:
    """Bit width of a layout or shape."""
    return Shape.cast(layout).width


def pack(layout, value) -> int:
    """Pack ``value`` (dict / list / int) into an unsigned int following ``layout``."""
    if isinstance(layout, data.Layout):
        out = 0
        for key, field in layout:
            out |= pack(field.shape, value[key]) << field.offset
        return out
    shape = Shape.cast(layout)
    v = int(value)
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit {shape}")
    return v & ((1 << shape.width) - 1)


def unpack(layout, raw: int):
    """Inverse of :func:`pack`: dicts for structs, lists for arrays, ints for leaves."""
    if isinstance(layout, data.ArrayLayout):
        return [unpack(f.shape, raw >> f.offset) for _, f in layout]
    if isinstance(layout, data.Layout):
        return {k: unpack(f.shape, raw >> f.offset) for k, f in layout}
    shape = Shape.cast(layout)
    v = raw & ((1 << shape.width) - 1)
    if shape.signed and v >> (shape.width - 1):
        v -= 1 << shape.width
    return v

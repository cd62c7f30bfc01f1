"""Number formatting for tables (engineering prefixes) and parsing for flags; no modelling."""

from __future__ import annotations

import argparse

__all__ = ["eng", "ms", "whole"]


def whole(text: str) -> int:
    """argparse ``type=`` for counts: the range checks are the commands' own."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def eng(value: float | None, unit: str = "", digits: int = 3) -> str:
    """``eng(4.6e11, 'B/s') == '460 GB/s'``."""
    if value is None:
        return "-"
    if value == 0:
        return f"0 {unit}".strip()
    for exp, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(value) >= exp:
            return f"{value / exp:.{digits}g} {prefix}{unit}".strip()
    return f"{value:.{digits}g} {unit}".strip()


def ms(value: float) -> str:
    return f"{value:,.3f}" if value < 100 else f"{value:,.1f}"

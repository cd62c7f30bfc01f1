"""The error type for mistakes a user can make; the CLI prints its message and exits 2."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

__all__ = ["UserError", "read_toml"]


class UserError(ValueError):
    """Bad input: the message names the input and what is allowed."""


def read_toml(path: str | Path, what: str, error: type[UserError] = UserError) -> dict[str, Any]:
    """A user's TOML file as a dict; ``error`` naming ``what`` and the path otherwise."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {str(p)!r} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{p}: malformed TOML: {e}") from None

"""The error type for mistakes a user can make; the CLI prints its message and exits 2."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

__all__ = ["UserError", "empty", "read_text", "read_toml"]


class UserError(ValueError):
    """Bad input: the message names the input and what is allowed."""


def read_toml(path: str | Path, what: str, error: type[UserError] = UserError, *,
              expected: str = "") -> dict[str, Any]:
    """A user's TOML file as a dict; ``error`` naming ``what`` and the path otherwise.

    An empty file (no keys) is an error too: every TOML input of llmcosim needs some key, and
    an empty one would run as the defaults without a word; ``expected`` says what it holds.
    """
    p = Path(path)
    try:
        data = tomllib.loads(read_text(p, what, error, kind="TOML"))
    except tomllib.TOMLDecodeError as e:
        raise error(f"{p}: malformed TOML: {e}") from None
    if not data:
        raise error(empty(what, p, expected))
    return data


def read_text(path: str | Path, what: str, error: type[UserError] = UserError, *,
              kind: str = "text") -> str:
    """A user's text file; ``error`` naming ``what`` and the path if it cannot be read."""
    p = Path(path)
    try:
        return p.read_text()
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {str(p)!r} is a directory, not a {kind} file") from None
    except UnicodeDecodeError:
        raise error(f"{what} {str(p)!r} is not a text ({kind}) file") from None


def empty(what: str, path: str | Path, expected: str) -> str:
    """The message for an input file with nothing in it (one wording for every input)."""
    return f"{what} {str(path)!r} is empty" + (f": expected {expected}" if expected else "")

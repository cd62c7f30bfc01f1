"""The error type for mistakes a user can make; the CLI prints its message and exits 2."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input: the message names the input and what is allowed."""

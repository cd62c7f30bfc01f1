"""Safe arithmetic/boolean expressions for constraints (``cores * mm_macs_per_cycle <= 12690``).

Only literals, names, arithmetic, comparisons, ``and``/``or``/``not`` and a few functions
(``min``, ``max``, ``abs``, ``log2``) are allowed; anything else is a :class:`UserError` naming
the expression. Validated expressions are compiled once and evaluated against a dict of names.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.errors import UserError

__all__ = ["Expr", "parse_expr"]

_FUNCS: dict[str, Any] = {"min": min, "max": max, "abs": abs, "log2": math.log2}
_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
            ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
            ast.Pow, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In,
            ast.NotIn, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Call,
            ast.IfExp)


class _Missing(NameError):
    pass


@dataclass(frozen=True)
class Expr:
    """A validated expression; ``names`` are the free variables it reads."""

    text: str
    names: frozenset[str]
    _code: Any = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        missing = self.names - env.keys()
        if missing:
            raise _Missing(", ".join(sorted(missing)))
        # No builtins, and parse_expr admitted only whitelisted nodes and names.
        return eval(self._code, {"__builtins__": {}}, {**_FUNCS, **env})

    def holds(self, env: Mapping[str, Any]) -> bool | None:
        """True/False, or None when a name is not defined for this point (rule does not apply)."""
        try:
            return bool(self.evaluate(env))
        except _Missing:
            return None


def parse_expr(text: str, where: str, known: Iterable[str] | None = None) -> Expr:
    """Parse ``text``; UserError (naming ``where``) on syntax, forbidden constructs or names."""
    if not isinstance(text, str):
        raise UserError(f"{where}: expected an expression string, got {text!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise UserError(f"{where}: {text!r} is not a valid expression ({e.msg})") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise UserError(f"{where}: {text!r}: {type(node).__name__} is not allowed; use "
                            "numbers, names, + - * / // % **, comparisons, and/or/not, "
                            f"{', '.join(_FUNCS)}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                               and node.func.id in _FUNCS):
            raise UserError(f"{where}: {text!r}: only {', '.join(_FUNCS)} may be called")
        if isinstance(node, ast.Name) and node.id not in _FUNCS:
            names.add(node.id)
    if known is not None:
        known = set(known)
        unknown = sorted(names - known)
        if unknown:
            raise UserError(f"{where}: {text!r}: unknown name {unknown[0]!r}; allowed names: "
                            f"{', '.join(sorted(known))}")
    return Expr(text, frozenset(names), compile(tree, f"<{where}>", "eval"))

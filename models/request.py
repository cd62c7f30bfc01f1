"""A validated trace request (torch-free, so bad input fails before torch is imported)."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import UserError, read_toml
from models.graph import Phase
from models.zoo import ModelEntry

__all__ = ["DTYPES", "TraceRequest", "check_tree", "parse_tree", "tree_depths"]

DTYPES = ("float16", "bfloat16", "float32")


@dataclass(frozen=True)
class TraceRequest:
    phase: Phase
    tokens: int        # new tokens per sequence in this pass
    context: int       # tokens already in the KV cache
    batch: int = 1
    dtype: str = "float16"
    tree: tuple[int, ...] | None = None   # verify: parent of each draft token (-1: the root)

    @classmethod
    def make(cls, entry: ModelEntry, phase: str | Phase, *, tokens: int | None = None,
             context: int = 0, batch: int = 1, dtype: str = "float16",
             tree: tuple[int, ...] | None = None) -> TraceRequest:
        """Validate a user's request; UserError names the bad argument and the allowed range."""
        try:
            ph = Phase(phase)
        except ValueError:
            raise UserError(f"unknown phase {phase!r}; allowed: "
                            f"{', '.join(p.value for p in Phase)}") from None
        if tokens is None and tree:
            tokens = len(tree)
        if tokens is None:
            tokens = 1 if ph is Phase.DECODE else 128 if ph is Phase.PREFILL else 4
        if ph is Phase.DECODE and tokens != 1:
            raise UserError(f"decode processes exactly 1 token per pass, got --tokens {tokens}; "
                            "use --phase verify for several query tokens")
        if ph is Phase.PREFILL and context != 0:
            raise UserError("prefill starts from an empty KV cache: --context must be 0 "
                            f"(got {context}); use --tokens for the prompt length")
        if tokens < 1:
            raise UserError(f"--tokens must be >= 1, got {tokens}")
        if context < 0:
            raise UserError(f"--context must be >= 0, got {context}")
        if ph is not Phase.PREFILL and context < 1:
            raise UserError(f"{ph.value} needs a non-empty KV cache: --context must be >= 1")
        if batch < 1:
            raise UserError(f"--batch must be >= 1, got {batch}")
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
        if tree is not None:
            tree = tuple(int(p) for p in tree)
            if ph is not Phase.VERIFY:
                raise UserError("a token tree (--tree) only applies to --phase verify")
            check_tree(tree)
            if tokens != len(tree):
                raise UserError(f"--tree has {len(tree)} nodes but --tokens is {tokens}")
        limit = entry.max_positions
        if limit is not None and context + tokens > limit:
            raise UserError(f"context {context} + {tokens} new tokens = {context + tokens} exceeds "
                            f"{entry.name}'s maximum of {limit} positions")
        return cls(ph, tokens, context, batch, dtype, tree)


def check_tree(parents: tuple[int, ...]) -> None:
    """A token tree: node i's parent is -1 (it extends the verified prefix) or an earlier node."""
    if not parents:
        raise UserError("--tree is empty; give the parent of each draft token, e.g. -1,0,0,1")
    for i, p in enumerate(parents):
        if not -1 <= p < i:
            raise UserError(f"--tree node {i} has parent {p}; a parent must be -1 (the root) "
                            f"or an earlier node 0..{i - 1}")


def tree_depths(parents: tuple[int, ...]) -> list[int]:
    """Depth of each tree node (1 for children of the root), i.e. its position offset."""
    depth: list[int] = []
    for p in parents:
        depth.append(1 if p < 0 else depth[p] + 1)
    return depth


def parse_tree(text: str, what: str = "--tree") -> tuple[int, ...]:
    """Parents inline (``"-1,0,0,1"``) or a TOML file with ``parents = [...]``; ``what`` names
    the input in errors. Structure is checked by :func:`check_tree` where the tree is used."""
    if text.endswith(".toml"):
        data = read_toml(text, f"{what}: tree file",
                         expected="parents = [-1, 0, 0, 1, ...] (configs/trees/)")
        parents = data.get("parents")
        if not isinstance(parents, list) or not all(isinstance(p, int) for p in parents):
            raise UserError(f"{what}: tree file {text!r} needs 'parents = [ints]'")
        return tuple(parents)
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise UserError(f"{what} {text!r}: expected comma-separated parent indices such as "
                        "-1,0,0,1, or a .toml file") from None

"""The modelling code's version: what cached results (sweep points, serving tables) are keyed on.

llmcosim's version plus a hash of every source file of ``models/``, ``mapping/`` and ``sim/``
and the torch and transformers versions: any change to the code that produces a number makes
a new key, so a cache never serves a result of other code.
"""

from __future__ import annotations

import contextlib
import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["code_version"]


@lru_cache(maxsize=1)
def code_version() -> str:
    """llmcosim version + a hash of the modelling code (models, mapping, sim)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("models", "mapping", "sim"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    for dist in ("torch", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            h.update(metadata.version(dist).encode())
    try:
        version = metadata.version("llmcosim")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"{version}+{h.hexdigest()[:12]}"

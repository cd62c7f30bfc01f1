"""Files a sweep spec names: where a relative path is found, and content digests.

A relative path in a sweep file (a model's ``config.json`` or its folder, a
``*.workload.json`` file, a hardware preset ``.toml``, a sparsity config, a tree file, a
requests file) is looked for, first hit wins, in:

1. the folder of the sweep file, so a spec and its files move together;
2. the current working directory (the committed specs under ``configs/sweeps/`` name files
   from the repository root, e.g. ``"configs/sparsity/flightllm_qk70.toml"``);
3. the fallbacks the tools always had: a bare sparsity name in ``configs/sparsity/``; then the
   repository root (the folder holding ``configs/``), so the committed specs also run from
   another directory.

A file found in the working directory (or a bare sparsity name in ``configs/sparsity/``) keeps
its text as written, so points and their content hashes are those of older releases
(``--resume`` and the result cache keep working); a file found elsewhere becomes its absolute
path. Absolute paths are used as given. When no candidate exists the :class:`UserError` names
the sweep file, the key and every path tried.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from models.errors import UserError
from models.request import parse_tree

__all__ = ["PATH_KEYS", "file_digest", "resolve_inputs", "resolve_path", "sparsity_digest",
           "tree_parents"]

ROOT = Path(__file__).resolve().parent.parent   # the repository root: configs/ lives here
# Inputs that may name a file (key -> what the error calls it)
PATH_KEYS = {"hw": "hardware preset file", "model": "model config or workload file",
             "sparsity": "sparsity config", "tree": "tree file", "requests": "requests file"}


def resolve_path(text: str, loc: str, *, base: Path | None, where: str, what: str = "file",
                 fallback_dir: Path | None = None, strict: bool = True) -> str:
    """The path ``text`` as the point should hold it (see the module docstring); not found:
    UserError if ``strict``, else ``text`` unchanged."""
    if Path(text).is_absolute():
        return text
    # found here, the text as written still finds it (the tools' own lookup)
    as_written = [Path.cwd() / text]
    if fallback_dir is not None and Path(text).parent == Path("."):
        as_written.append(fallback_dir / text)
    tried = [base.absolute() / text] if base is not None else []
    tried = list(dict.fromkeys([*tried, *as_written, ROOT / text]))
    for p in tried:
        if p.exists():
            return text if p in as_written else str(p.resolve())
    if not strict:
        return text
    raise UserError(f"{where}: {loc}: {what} {text!r} does not exist; tried "
                    f"{', '.join(map(str, tried))}")


def _names_file(key: str, v: Any) -> bool | None:
    """Whether value ``v`` of input ``key`` is a path: True, False (a zoo name, a preset,
    "none", inline parents), or None for a bare model name that is not in the zoo (a folder
    if one is found, else left for the zoo's error, which lists the zoo)."""
    if not isinstance(v, str) or key not in PATH_KEYS or v in ("none", "chain"):
        return False
    if key == "hw":          # as sim.spec.load_preset tells a path from a preset name
        return v.endswith(".toml") or "/" in v
    if key == "tree":        # otherwise inline parents "-1,0,0"
        return v.endswith(".toml")
    if key == "model":
        from models.zoo import ZOO

        if v.lower() in {n.lower() for e in ZOO.values() for n in (e.name, *e.aliases)}:
            return False
        return True if v.endswith(".json") or "/" in v else None
    return True


def _resolve_value(key: str, v: Any, loc: str, base: Path | None, where: str) -> Any:
    if isinstance(v, list):
        return [_resolve_value(key, x, loc, base, where) for x in v]
    if isinstance(v, dict) and isinstance(v.get("values"), list):
        return {**v, "values": _resolve_value(key, v["values"], loc, base, where)}
    path = _names_file(key, v)
    if path is False:
        return v
    from mapping.flightllm.compression import CONFIG_DIR

    return resolve_path(v, loc, base=base, where=where, what=PATH_KEYS[key], strict=path is True,
                        fallback_dir=CONFIG_DIR if key == "sparsity" else None)


def resolve_inputs(raw: dict[str, Any], loc: Any, base: Path | None,
                   where: str) -> dict[str, Any]:
    """``raw`` (input -> value, list or range table) with every file path resolved;
    ``loc(key)`` names the key in errors."""
    return {k: _resolve_value(k, v, loc(k), base, where) for k, v in raw.items()}


def file_digest(path: str, suffix: str = ".json") -> str:
    """Content hash of ``path`` if it is a ``suffix`` file (a model directory: its
    config.json); "" otherwise (a zoo name, an inline tree)."""
    p = Path(path)
    if suffix == ".json" and p.is_dir() and (p / "config.json").is_file():
        p, path = p / "config.json", str(p / "config.json")  # a model directory
    if path.endswith(suffix) and p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return ""


def sparsity_digest(path: str) -> str:
    """Content hash of a compression file, found as ``load_config`` finds it (a bare name
    falls back to configs/sparsity/)."""
    from mapping.flightllm.compression import CONFIG_DIR

    p = Path(path)
    if not p.exists() and p.parent == Path(".") and (CONFIG_DIR / p.name).exists():
        p = CONFIG_DIR / p.name
    return file_digest(str(p), ".toml")


def tree_parents(loc: str, text: str, where: str = "") -> tuple[int, ...]:
    """A token tree: a ``.toml`` file with ``parents = [...]`` or inline "-1,0,0,1"."""
    if text.endswith(".toml"):
        return parse_tree(text, f"{where}{loc}")
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise UserError(f"{where}{loc} = {text!r}: expected \"chain\", a .toml tree file "
                        "(configs/trees/) or comma-separated parent indices such as -1,0,0,1"
                        ) from None

"""Serving pass tables kept on disk, so a second ``serve``/``compare``/``demo`` run of the same
device, model and grid skips the simulator runs (FlightLLM's cycle-level table takes ~40 s).

A table is stored as ``$LLMCOSIM_CACHE/serving-tables/<key>.npz`` (default
``~/.cache/llmcosim``), keyed by everything that sets its numbers: the resolved hardware spec
(every field), the model's config, the fidelity, storage, grid bounds and
:func:`sim.version.code_version` (the modelling code and the torch/transformers versions).
Deleting the directory is always safe; ``LLMCOSIM_SERVING_CACHE=0`` turns it off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sim.serving.passes import PassTable
from sim.version import code_version

__all__ = ["load_table", "save_table", "table_path"]

_ARRAYS = ("tokens", "dense_s", "dense_j", "pre_attn_s", "pre_attn_j", "dec_attn_s",
           "dec_attn_j", "batches", "contexts")


def _root() -> Path | None:
    if os.environ.get("LLMCOSIM_SERVING_CACHE", "1") == "0":
        return None
    base = os.environ.get("LLMCOSIM_CACHE") or Path.home() / ".cache" / "llmcosim"
    return Path(base) / "serving-tables"


def table_path(spec: Any, model_config: dict[str, Any], **grid: Any) -> Path | None:
    """Where the table of these inputs lives (None: the disk cache is off)."""
    root = _root()
    if root is None:
        return None
    what = {"spec": dataclasses.asdict(spec), "model": model_config, "grid": grid,
            "code": code_version()}
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return root / f"{key[:32]}.npz"


def save_table(path: Path, table: PassTable) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: np.asarray(getattr(table, k)) for k in _ARRAYS}
    data |= {"hw": np.str_(table.hw), "fidelity": np.str_(table.fidelity),
             "scalars": np.array([table.weight_bytes, table.kv_bytes_per_token,
                                  float(table.has_energy), float(table.separate)])}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **data)
    os.replace(tmp, path)


def load_table(path: Path) -> PassTable | None:
    """The stored table, or None when absent or unreadable (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            w, kv, energy, separate = (float(x) for x in z["scalars"])
            return PassTable(str(z["hw"]), str(z["fidelity"]), z["tokens"], z["dense_s"],
                             z["dense_j"], z["pre_attn_s"], z["pre_attn_j"],
                             tuple(int(b) for b in z["batches"]),
                             tuple(int(c) for c in z["contexts"]), z["dec_attn_s"],
                             z["dec_attn_j"], w, kv, bool(energy), bool(separate))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None

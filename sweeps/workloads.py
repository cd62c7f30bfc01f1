"""Workload files (``*.workload.json``): prefill and decode graphs saved together, torch-free.

They let a sweep run a workload that is not in the zoo (a synthetic graph, a graph traced on
another machine) and keep tests free of torch. The file fixes prefill, decode and batch; a
sweep point asking for others is an error naming the file's values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.errors import UserError, empty
from models.graph import Graph
from models.workload import Workload

__all__ = ["load_workload_file", "save_workload_file"]

_FORMAT = "llmcosim-workload-1"


def save_workload_file(w: Workload, path: str | Path) -> Path:
    def g(x: Graph | None) -> Any:
        return None if x is None else x.to_dict()

    data = {"format": _FORMAT, "model": w.model, "batch": w.batch, "prefill": w.prefill_tokens,
            "decode": w.decode_tokens, "prefill_graph": g(w.prefill),
            "decode_first": g(w.decode_first),
            "decode_last": None if w.decode_last is w.decode_first else g(w.decode_last)}
    p = Path(path)
    p.write_text(json.dumps(data, separators=(",", ":")))
    return p


def load_workload_file(path: str | Path, *, prefill: int | None = None,
                       decode: int | None = None, batch: int | None = None) -> Workload:
    p = Path(path)
    try:
        text = p.read_text()
        data = json.loads(text) if text.strip() else None
    except FileNotFoundError:
        raise UserError(f"workload file {str(p)!r} does not exist") from None
    except ValueError as e:
        raise UserError(f"workload file {str(p)!r}: not JSON ({e})") from None
    if not data:
        raise UserError(empty("workload file", p, f"a JSON object of format {_FORMAT!r} "
                              "(written by sweeps.workloads.save_workload_file)"))
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise UserError(f"{p}: not a workload file (format "
                        f"{data.get('format') if isinstance(data, dict) else None!r}, "
                        f"expected {_FORMAT!r})")
    for name, want in (("prefill", prefill), ("decode", decode), ("batch", batch)):
        if want is not None and want != data[name]:
            raise UserError(f"{p} holds {name} = {data[name]}; the point asks for {want} "
                            f"(set workload.{name} = {data[name]} or use a zoo model)")

    def g(x: Any) -> Graph | None:
        return None if x is None else Graph.from_dict(x)

    first = g(data["decode_first"])
    last = g(data["decode_last"]) if data["decode_last"] is not None else first
    return Workload(data["model"], data["batch"], data["prefill"], data["decode"],
                    g(data["prefill_graph"]), first, last)

"""Traced graphs cached on disk as JSON, so repeated runs skip torch entirely.

The key covers everything the graph depends on: model config, phase, shapes, dtype, the IR
format and the versions of torch/transformers/llmcosim. The directory is
``$LLMCOSIM_CACHE`` or ``~/.cache/llmcosim``; deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path

from models.errors import UserError
from models.graph import FORMAT, Graph, Phase
from models.request import TraceRequest
from models.workload import Workload
from models.zoo import ModelEntry, get_model

__all__ = ["cache_dir", "get_graph", "get_workload"]


def cache_dir() -> Path:
    root = os.environ.get("LLMCOSIM_CACHE") or Path.home() / ".cache" / "llmcosim"
    return Path(root) / "graphs"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "none"


def _key(entry: ModelEntry, req: TraceRequest) -> str:
    blob = json.dumps([FORMAT, entry.name, entry.config_class, dict(entry.config), req.phase.value,
                       req.tokens, req.context, req.batch, req.dtype, req.tree,
                       _version("torch"),
                       _version("transformers"), _version("llmcosim"), _code_stamp()],
                      sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    tree = "-tree" if req.tree else ""
    # a config's name may be a hub path or hold spaces ("google/gemma-2-2b", "m (llama)"):
    # one flat file name (the digest keeps names that map alike apart)
    name = re.sub(r"[^\w.+-]+", "_", entry.name)
    return (f"{name}-{req.phase.value}{tree}-b{req.batch}-t{req.tokens}-c{req.context}-"
            f"{req.dtype}-{digest}")


def _code_stamp() -> str:
    """The lowering code's own hash: editing the tracer invalidates old graphs."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in ("trace.py", "lower.py", "replicate.py", "graph.py", "request.py",
                 "host_calls.py", "moe.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def get_graph(model: str | ModelEntry, phase: str | Phase, *, tokens: int | None = None,
              context: int = 0, batch: int = 1, dtype: str = "float16",
              tree: tuple[int, ...] | None = None, use_cache: bool = True) -> Graph:
    """The IR graph, from the cache or traced (importing torch only then)."""
    entry = get_model(model) if isinstance(model, str) else model
    req = TraceRequest.make(entry, phase, tokens=tokens, context=context, batch=batch,
                            dtype=dtype, tree=tree)
    path = cache_dir() / f"{_key(entry, req)}.json"
    if use_cache and path.exists():
        try:
            return Graph.from_json(path)
        except (ValueError, KeyError, json.JSONDecodeError):
            path.unlink(missing_ok=True)  # a damaged cache entry is re-traced
    from models.trace import trace  # torch is imported only when a trace is needed

    graph = trace(entry, req.phase, tokens=req.tokens, context=req.context, batch=req.batch,
                  dtype=req.dtype, tree=req.tree)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            f.write(graph.to_json())
        os.replace(f.name, path)  # atomic: concurrent runs never see half a file
    return graph


def get_workload(model: str | ModelEntry, *, prefill: int, decode: int, batch: int = 1,
                 dtype: str = "float16", use_cache: bool = True) -> Workload:
    """Prefill of ``prefill`` tokens then ``decode`` decode passes, validated."""
    entry = get_model(model) if isinstance(model, str) else model
    if prefill < 0 or decode < 0:
        raise UserError(f"--prefill and --decode must be >= 0 (got {prefill} and {decode})")
    if prefill == 0 and decode == 0:
        raise UserError("nothing to simulate: --prefill and --decode are both 0")
    if decode and prefill == 0:
        raise UserError("decode needs a prompt: --prefill must be >= 1 when --decode > 0")
    if entry.max_positions is not None and prefill + decode > entry.max_positions:
        raise UserError(f"--prefill {prefill} + --decode {decode} = {prefill + decode} exceeds "
                        f"{entry.name}'s maximum of {entry.max_positions} positions")
    kw = {"batch": batch, "dtype": dtype, "use_cache": use_cache}
    pre = get_graph(entry, Phase.PREFILL, tokens=prefill, **kw) if prefill else None
    first = last = None
    if decode:
        first = get_graph(entry, Phase.DECODE, context=prefill, **kw)
        last = first if decode == 1 else get_graph(entry, Phase.DECODE,
                                                   context=prefill + decode - 1, **kw)
    return Workload(entry.name, batch, prefill, decode, pre, first, last)

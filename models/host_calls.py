"""The host work of one eager PyTorch forward: how many torch API calls it makes.

HF PyTorch without CUDA graphs is host-bound for small batches: every torch call (a function,
a tensor method, a property read) crosses from Python into C++ and the dispatcher, whether or
not it launches a GPU kernel. So the time of an eager step is close to its number of torch
calls times one call's host cost (``sim.gpu.model``; the cost is fitted per machine). Counted
here with a ``TorchFunctionMode`` over one forward of the model on ``meta``, built with SDPA
attention as the GPU measurements run it (``kernels.measure_model``).

Evidence (CPU probe, 2026-11-27): the measured eager steps of OPT-6.7B and LLaMA-2-7B relate
as their torch calls do (1,215 vs 2,217: 0.55; measured 0.49 and 0.55 on the H200 and H100
machines), not as their GPU kernels (501 vs 1,311: 0.38).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
import transformers
from torch.overrides import TorchFunctionMode

from models.errors import UserError
from models.request import TraceRequest
from models.zoo import ModelEntry

__all__ = ["eager_torch_calls"]

log = logging.getLogger(__name__)


class _Count(TorchFunctionMode):
    """Counts torch calls, and apart those made inside the KV cache's ``update``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = self.in_cache = 0
        self.caching = False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.calls += 1
        self.in_cache += self.caching
        return func(*args, **(kwargs or {}))

    def watch(self, cache: transformers.DynamicCache) -> None:
        update = cache.update

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.caching = True
            try:
                return update(*args, **kwargs)
            finally:
                self.caching = False

        cache.update = counted  # type: ignore[method-assign]


def _calls(entry: ModelEntry, req: TraceRequest, layers: int | None) -> tuple[int, int]:
    from models.trace import _DTYPES, _past_shapes, _tree_inputs, build_model

    model = build_model(entry, req.dtype, layers=layers, attn="sdpa")
    keep = req.tokens if req.phase.value == "verify" else 1
    ids = torch.zeros(req.batch, req.tokens, dtype=torch.long, device="meta")
    kw: dict[str, Any] = {"use_cache": True, "logits_to_keep": keep}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        cache = transformers.DynamicCache(config=model.config)
        if req.context:
            past = _past_shapes(model, req.batch, req.context, _DTYPES[req.dtype])
            for i in range(len(past) // 2):
                cache.update(past[2 * i], past[2 * i + 1], i)
        if req.tree is not None:
            mask, positions = _tree_inputs(req, _DTYPES[req.dtype])
            kw |= {"attention_mask": mask, "position_ids": positions}
        count = _Count()
        count.watch(cache)
        with count:
            model(input_ids=ids, past_key_values=cache, **kw)
    return count.calls, count.in_cache


def eager_torch_calls(entry: ModelEntry, req: TraceRequest,
                      layers: int | None = None) -> tuple[int, int]:
    """Torch calls of one eager forward as ``req`` asks (with a KV cache, as ``generate()``
    runs), and how many of them the cache's ``update`` makes: a prefill run without a cache
    (``use_cache=False``) makes the difference, within a dozen calls (its packed-sequence
    check; ``tests/torch/test_trace.py``). ``layers``: the model's decoder layer count when all
    layers are alike: one- and two-layer copies are counted and the difference repeated (every
    alike layer makes the same calls)."""
    try:
        if layers is None:
            return _calls(entry, req, None)
        one, two = _calls(entry, req, 1), _calls(entry, req, 2)
    except (RuntimeError, TypeError, ValueError, NotImplementedError, UserError) as e:
        # a model HF cannot run with SDPA on meta still traces; its graph just has no count
        # (0), and only the hf-eager GPU stack, which needs it, says so
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        log.warning("no eager torch-call count for %s: %s", entry.name, why)
        return 0, 0
    return (two[0] + (layers - 2) * (two[0] - one[0]),
            two[1] + (layers - 2) * (two[1] - one[1]))

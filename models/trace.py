"""Trace zoo models at ATen level with ``torch.export`` on the ``meta`` device.

No weights exist: the model is built from its config on ``meta``, so a 7B model costs a few
hundred MB and a few seconds. Every phase runs through one wrapper that owns a
``DynamicCache``: prefill starts from an empty cache, decode/verify fill it from flat past K/V
tensors (``torch.export`` rejects a ``DynamicCache`` argument; see shared/ENVIRONMENT.md).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, ever

import torch  # noqa: E402  (HF_HUB_OFFLINE must be set before transformers is imported)
import transformers  # noqa: E402

from models.errors import UserError  # noqa: E402
from models.graph import Graph, Phase  # noqa: E402
from models.lower import lower  # noqa: E402
from models.replicate import replicate_layers  # noqa: E402
from models.zoo import ModelEntry, get_model  # noqa: E402

__all__ = ["TraceRequest", "build_model", "decoder_layers", "export", "replicable_layers", "trace"]

log = logging.getLogger(__name__)
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class TraceRequest:
    phase: Phase
    tokens: int        # new tokens per sequence in this pass
    context: int       # tokens already in the KV cache
    batch: int = 1
    dtype: str = "float16"

    @classmethod
    def make(cls, entry: ModelEntry, phase: str | Phase, *, tokens: int | None = None,
             context: int = 0, batch: int = 1, dtype: str = "float16") -> TraceRequest:
        """Validate a user's request; UserError names the bad argument and the allowed range."""
        try:
            ph = Phase(phase)
        except ValueError:
            raise UserError(f"unknown phase {phase!r}; allowed: "
                            f"{', '.join(p.value for p in Phase)}") from None
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
        if dtype not in _DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; allowed: {', '.join(_DTYPES)}")
        limit = entry.max_positions
        if context + tokens > limit:
            raise UserError(f"context {context} + {tokens} new tokens = {context + tokens} exceeds "
                            f"{entry.name}'s maximum of {limit} positions")
        return cls(ph, tokens, context, batch, dtype)


def _config(entry: ModelEntry) -> transformers.PretrainedConfig:
    kwargs = dict(entry.config)
    if entry.config_class.startswith("auto:"):
        try:
            return transformers.AutoConfig.for_model(entry.config_class[5:], **kwargs)
        except (ValueError, KeyError) as e:
            raise UserError(f"transformers {transformers.__version__} has no model type "
                            f"{entry.config_class[5:]!r}: {e}") from None
    return getattr(transformers, entry.config_class)(**kwargs)


def build_model(entry: ModelEntry, dtype: str = "float16", *,
                layers: int | None = None) -> torch.nn.Module:
    """The causal-LM model of ``entry`` on ``meta``, eager attention (FLOPs visible as matmuls).

    ``layers`` builds a shallower copy (the first ``layers`` decoder layers).
    """
    cfg = _config(entry)
    if layers is not None:
        text = cfg.get_text_config()
        text.num_hidden_layers = layers
        if getattr(text, "layer_types", None):
            text.layer_types = text.layer_types[:layers]
    with torch.device("meta"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(
                cfg, attn_implementation="eager", dtype=_DTYPES[dtype])
        except ValueError as e:
            raise UserError(f"model {entry.name!r} is not a decoder-only causal LM that "
                            f"transformers can build: {e}") from None
    return model.eval()


class _CachedForward(torch.nn.Module):
    """forward(ids, *past_kv) -> logits, with the cache built inside (export-friendly)."""

    def __init__(self, model: torch.nn.Module, logits_to_keep: int):
        super().__init__()
        self.m = model
        self.logits_to_keep = logits_to_keep

    def forward(self, ids: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        cache = transformers.DynamicCache(config=self.m.config)
        for i in range(len(past) // 2):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.m(input_ids=ids, past_key_values=cache, use_cache=True,
                     logits_to_keep=self.logits_to_keep)
        return out.logits


def _kv_shape(cfg: Any, batch: int, context: int) -> tuple[int, int, int, int]:
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return (batch, kv_heads, context, head_dim)  # (batch, kv_heads, kv_len, head_dim)


def decoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    """The ModuleList holding the decoder layers, and its path in ``model``."""
    n = model.config.get_text_config().num_hidden_layers
    for path, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n and n > 0:
            return path, mod
    return None


def _signature(layer: torch.nn.Module) -> list[tuple[Any, ...]]:
    """What makes two decoder layers trace alike: classes, parameter shapes, attention type."""
    return [(name, type(m).__name__,
             tuple((p, tuple(t.shape), t.dtype) for p, t in m.named_parameters(recurse=False)),
             getattr(m, "layer_type", None), getattr(m, "sliding_window", None),
             getattr(m, "is_sliding", None), getattr(m, "attention_type", None))
            for name, m in layer.named_modules()]


def replicable_layers(entry: ModelEntry, dtype: str) -> tuple[str, int] | None:
    """(container path, layer count) when all decoder layers are alike, else None."""
    model = build_model(entry, dtype)
    found = decoder_layers(model)
    if found is None or len(found[1]) <= 2:
        return None
    path, layers = found
    types = getattr(model.config.get_text_config(), "layer_types", None)
    if types and len(set(types)) > 1:
        return None
    first = _signature(layers[0])
    if any(_signature(layer) != first for layer in layers[1:]):
        return None
    return path, len(layers)


def export(entry: ModelEntry, req: TraceRequest, *,
           layers: int | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of one forward pass of ``entry`` as ``req`` asks, on ``meta``."""
    model = build_model(entry, req.dtype, layers=layers)
    # Prefill/decode only need the last position's logits (as generate() does); verify needs all.
    keep = req.tokens if req.phase is Phase.VERIFY else 1
    wrapper = _CachedForward(model, keep)
    ids = torch.zeros(req.batch, req.tokens, dtype=torch.long, device="meta")
    past: list[torch.Tensor] = []
    if req.context:
        shape = _kv_shape(model.config, req.batch, req.context)
        layers = model.config.get_text_config().num_hidden_layers
        past = [torch.zeros(shape, dtype=_DTYPES[req.dtype], device="meta")
                for _ in range(2 * layers)]
    # Stack traces per node cost ~2 s on a 7B model and the IR does not use them.
    import torch.fx.config as fx_config

    saved = fx_config.do_not_emit_stack_traces
    fx_config.do_not_emit_stack_traces = True
    try:
        with torch.no_grad():
            return torch.export.export(wrapper, (ids, *past), strict=False)
    finally:
        fx_config.do_not_emit_stack_traces = saved


def trace(model: str | ModelEntry, phase: str | Phase = Phase.DECODE, *,
          tokens: int | None = None, context: int = 0, batch: int = 1,
          dtype: str = "float16", full: bool = False) -> Graph:
    """Trace ``model`` and lower it to the IR. ``model`` is a zoo name or a ModelEntry.

    When all decoder layers are alike, a two-layer copy is exported and its layer repeated
    (``models.replicate``); ``full=True`` exports every layer instead (same result, slower).
    """
    entry = get_model(model) if isinstance(model, str) else model
    req = TraceRequest.make(entry, phase, tokens=tokens, context=context, batch=batch,
                            dtype=dtype)
    t0 = time.perf_counter()
    stack = None if full else replicable_layers(entry, req.dtype)
    ep = export(entry, req, layers=2 if stack else None)
    meta = {"source": entry.source, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "layers_exported": 2 if stack else "all"}
    graph = lower(ep, entry.name, req.phase, batch=req.batch, tokens=req.tokens,
                  context=req.context, dtype=req.dtype, meta=meta)
    if stack:
        graph = replicate_layers(graph, stack[1], stack[0])
    log.debug("traced %s %s in %.2f s", entry.name, req.phase.value, time.perf_counter() - t0)
    return graph

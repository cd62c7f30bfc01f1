"""Whole-model decode/verify steps on a GPU: q = 1..16 new tokens over a KV cache of c.

This is the speculation verification cost curve (one target pass over q tokens). Random
weights, a model built from the zoo config directly on the device, SDPA attention (what HF
runs by default). Each step is timed as a CUDA-graph replay over a StaticCache when capture
works, else eagerly over a DynamicCache cropped back after every step; each record says which.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import transformers

from kernels.measure import _DTYPES, _record, time_fn

__all__ = ["measure_decode_steps"]


def _model(name: str, dtype: torch.dtype, device: torch.device, layers: int | None):
    from models.zoo import get_model

    entry = get_model(name)
    kwargs = dict(entry.config)
    if layers is not None:
        kwargs["num_hidden_layers"] = layers
    cfg = getattr(transformers, entry.config_class)(**kwargs)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, attn_implementation="sdpa", dtype=dtype)
    return model.eval()


def _eager_step(model, q: int, c: int, device: torch.device, dtype: torch.dtype, **kw: Any):
    cfg = model.config
    cache = transformers.DynamicCache(config=cfg)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for layer in range(cfg.num_hidden_layers):
        k = torch.randn(1, kv_heads, c, head_dim, device=device, dtype=dtype)
        cache.update(k, torch.randn_like(k), layer)
    ids = torch.randint(0, cfg.vocab_size, (1, q), device=device)

    def step(_: int) -> None:
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=q)
        for layer in cache.layers:  # drop the q new rows again (crop's sign varies by version)
            layer.keys = layer.keys[:, :, :c]
            layer.values = layer.values[:, :, :c]

    return time_fn(step, device, **kw)


def _graph_step(model, q: int, c: int, device: torch.device, **kw: Any):
    cfg = model.config
    cache = transformers.StaticCache(config=cfg, max_cache_len=c + q)
    if c:
        prompt = torch.randint(0, cfg.vocab_size, (1, c), device=device)
        model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
    ids = torch.randint(0, cfg.vocab_size, (1, q), device=device)
    pos = torch.arange(c, c + q, device=device)
    call = lambda: model(input_ids=ids, past_key_values=cache, cache_position=pos,  # noqa: E731
                         use_cache=True, logits_to_keep=q)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return time_fn(lambda _: graph.replay(), device, **kw)


def measure_decode_steps(device: torch.device, model_name: str, *, dtype: str = "float16",
                         dry_run: bool = False, **kw: Any) -> list[dict[str, Any]]:
    dt = _DTYPES[dtype]
    model = _model(model_name, dt, device, layers=2 if dry_run else None)
    contexts = (16, 48) if dry_run else (128, 512, 2048)
    qs = (1, 2, 4) if dry_run else (1, 2, 3, 4, 6, 8, 12, 16)
    out = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        for c in contexts:
            for q in qs:
                shape = {"q": q, "context": c, "layers": model.config.num_hidden_layers}
                how, error = "eager", None
                times = None
                if device.type == "cuda":
                    try:
                        times, how = _graph_step(model, q, c, device, **kw), "cuda_graph"
                    except Exception as e:  # capture is best effort; the record says so
                        error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                if times is None:
                    times = _eager_step(model, q, c, device, dt, **kw)
                out.append(_record("decode_step", shape, dtype, times, model=model_name,
                                   mode=how, graph_error=error))
    return out

"""Whole-model steps on a GPU: decode/verify over a KV cache, prefill, power while decoding.

Decode/verify steps (q = 1..16 new tokens over a cache of c) are the speculation verification
cost curve. Random weights, a model built from the zoo config directly on the device, SDPA
attention (what HF runs by default). A step is timed as a CUDA-graph replay over a StaticCache
when capture works, else eagerly over a DynamicCache cropped back after every step (what
HF PyTorch without graphs costs); each record says which (``mode``).
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import transformers

from kernels.measure import _DTYPES, _record, time_fn

__all__ = ["EAGER_WARMUP", "build_model", "measure_decode_steps", "measure_model_steps",
           "measure_other_models", "measure_power", "static_step"]

_OTHER_MODELS = ("opt-6.7b", "llama2-13b", "tinyllama-1.1b", "qwen2-0.5b")
EAGER_WARMUP = 10  # warm-up calls before timing an eager (host-bound) step
_HELD: dict[str, Any] = {}  # one model kept between sections (building 7B costs seconds)


def build_model(name: str, dtype: torch.dtype, device: torch.device, layers: int | None = None):
    """The zoo model with random weights on ``device`` (one kept cached for the next call)."""
    key = f"{name}/{dtype}/{device}/{layers}"
    if key in _HELD:
        return _HELD[key]
    _HELD.clear()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    from models.zoo import get_model

    entry = get_model(name)
    kwargs = dict(entry.config)
    if layers is not None:
        kwargs["num_hidden_layers"] = layers
    cfg = getattr(transformers, entry.config_class)(**kwargs)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, attn_implementation="sdpa", dtype=dtype)
    _HELD[key] = model.eval()
    return _HELD[key]


@contextmanager
def _quiet() -> Iterator[None]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        yield


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


def static_step(model, q: int, c: int, device: torch.device, prompt: torch.Tensor | None = None,
                ids: torch.Tensor | None = None, batch: int = 1) -> Callable[[], Any]:
    """A step of q tokens (``ids``, [batch, q]) over a StaticCache already holding c
    (``prompt``, [batch, c]), with no data-dependent host work inside (explicit positions and a
    prepared 4D mask), so it can be graph-captured. Random tokens where not given."""
    cfg, dtype = model.config, model.dtype
    cache = transformers.StaticCache(config=cfg, max_cache_len=c + q)
    if c:
        if prompt is None:
            prompt = torch.randint(0, cfg.vocab_size, (batch, c), device=device)
        model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1,
              cache_position=torch.arange(c, device=device))
    if ids is None:
        ids = torch.randint(0, cfg.vocab_size, (batch, q), device=device)
    pos = torch.arange(c, c + q, device=device)
    keep = torch.ones(q, c + q, device=device, dtype=torch.bool).tril(diagonal=c)
    mask = torch.zeros(ids.shape[0], 1, q, c + q, device=device, dtype=dtype)
    mask.masked_fill_(~keep, torch.finfo(dtype).min)
    # transformers 5.x static layers write at a device-side running length; rewind it to c on
    # every step (two fused kernels) so a replayed step always writes rows c..c+q-1.
    lengths = [layer.cumulative_length for layer in cache.layers
               if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor)]

    def call():
        if lengths:
            torch._foreach_zero_(lengths)
            torch._foreach_add_(lengths, c)
        return model(input_ids=ids, past_key_values=cache, cache_position=pos,
                     position_ids=pos[None].expand(ids.shape[0], -1), attention_mask=mask,
                     use_cache=True, logits_to_keep=q)

    return call


def _graph(model, q: int, c: int, device: torch.device, batch: int = 1) -> Callable[[], None]:
    """Replay of a captured step; the closure keeps the cache and inputs it writes alive."""
    call = static_step(model, q, c, device, batch=batch)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()

    def replay() -> None:
        assert call is not None  # the captured kernels write into call's cache tensors
        graph.replay()

    return replay


def _steps(model, name: str, dtype: str, device: torch.device, contexts, qs,
           eager_qs=(), **kw: Any) -> list[dict[str, Any]]:
    dt = _DTYPES[dtype]
    out = []
    for c in contexts:
        for q in qs:
            shape = {"q": q, "context": c, "layers": model.config.num_hidden_layers}
            times, error = None, None
            if device.type == "cuda":
                try:
                    replay = _graph(model, q, c, device)
                    times = time_fn(lambda _, replay=replay: replay(), device, **kw)
                    del replay
                except Exception as e:  # capture is best effort; the record says so
                    error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            if times is not None:
                out.append(_record("decode_step", shape, dtype, times, model=name,
                                   mode="cuda_graph"))
            if times is None or q in eager_qs:
                # eager steps are host-bound: warm Python, the allocator and cuBLAS's
                # heuristics up longer (the first one measured on the H200 machine, 3
                # warm-ups, took 1.6x the others)
                ekw = {**kw, "warmup": max(kw.get("warmup", 3), EAGER_WARMUP)}
                out.append(_record("decode_step", shape, dtype,
                                   _eager_step(model, q, c, device, dt, **ekw), model=name,
                                   mode="eager", graph_error=error, warmup=ekw["warmup"]))
    return out


def measure_decode_steps(device: torch.device, model_name: str, *, dtype: str = "float16",
                         dry_run: bool = False, **kw: Any) -> list[dict[str, Any]]:
    """The main model's q x context grid (graph replay), plus eager HF steps at q = 1, 4."""
    model = build_model(model_name, _DTYPES[dtype], device, layers=2 if dry_run else None)
    contexts = (16, 48) if dry_run else (128, 512, 1024, 2048)
    qs = (1, 2, 4) if dry_run else (1, 2, 3, 4, 6, 8, 12, 16)
    with _quiet():
        return _steps(model, model_name, dtype, device, contexts, qs, eager_qs=(1, 4), **kw)


def measure_model_steps(device: torch.device, model_name: str, *, dtype: str = "float16",
                        dry_run: bool = False, **kw: Any) -> list[dict[str, Any]]:
    """Whole-model prefill of p tokens (eager; last-token logits and a fresh KV cache, as
    ``generate()`` runs it; files before 2026-11-27 05:20 UTC ran without a cache,
    ``use_cache`` false)."""
    model = build_model(model_name, _DTYPES[dtype], device, layers=2 if dry_run else None)
    lengths = (8, 32) if dry_run else (128, 512, 1024, 2048)
    out = []
    with _quiet():
        for p in lengths:
            ids = torch.randint(0, model.config.vocab_size, (1, p), device=device)

            def prefill(_: int, ids=ids) -> None:
                cache = transformers.DynamicCache(config=model.config)
                model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)

            times = time_fn(prefill, device, **kw)
            out.append(_record("prefill", {"tokens": p,
                                           "layers": model.config.num_hidden_layers},
                               dtype, times, model=model_name, mode="eager", use_cache=True))
    return out


def _energy_mj(handle) -> float:
    import pynvml

    return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))


def measure_power(device: torch.device, model_name: str, *, dtype: str = "float16",
                  dry_run: bool = False, seconds: float = 4.0) -> dict[str, Any]:
    """Board energy per token from NVML's energy counter: idle, graph-replayed decode at
    context 512, and prefill of 512 tokens, each run back to back for ``seconds``."""
    if device.type != "cuda":
        return {"available": False, "reason": "no CUDA device"}
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        _energy_mj(handle)
    except Exception as e:  # NVML missing or the counter unsupported: say so
        return {"available": False, "reason": f"{type(e).__name__}: {e}"}
    model = build_model(model_name, _DTYPES[dtype], device)
    result: dict[str, Any] = {"available": True, "model": model_name, "seconds": seconds}

    def run(fn: Callable[[], Any], per_call_tokens: int) -> dict[str, float]:
        torch.cuda.synchronize(device)
        e0, t0, n = _energy_mj(handle), time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
            if n % 16 == 0:
                torch.cuda.synchronize(device)
        torch.cuda.synchronize(device)
        dt, joules = time.perf_counter() - t0, (_energy_mj(handle) - e0) / 1e3
        return {"calls": n, "wall_s": dt, "avg_power_w": joules / dt,
                "joules_per_token": joules / (n * per_call_tokens),
                "tokens_per_s": n * per_call_tokens / dt}

    result["idle"] = run(lambda: time.sleep(0.05), 1)
    with _quiet():
        replay = _graph(model, 1, 512, device)
        result["decode_q1_c512_graph"] = run(replay, 1)
        del replay
        ids = torch.randint(0, model.config.vocab_size, (1, 512), device=device)
        result["prefill_512"] = run(lambda: model(input_ids=ids, use_cache=False,
                                                  logits_to_keep=1), 512)
    result["clocks_mhz_after"] = _smi_clocks()
    return result


def _smi_clocks() -> str | None:
    from kernels.measure import _nvidia_smi

    return _nvidia_smi("clocks.sm,clocks.mem")


def measure_other_models(device: torch.device, *, dtype: str = "float16",
                         dry_run: bool = False, deadline: float | None = None,
                         **kw: Any) -> list[dict[str, Any]]:
    """Held-out models: graph-replayed steps at q = 1, 4, 16 and context 512, 1536 (OPT's
    learned positions stop at 2048, so 2048 + q would index past its table)."""
    names = ("llama-68m",) if dry_run else _OTHER_MODELS
    out: list[dict[str, Any]] = []
    with _quiet():
        for name in names:
            if deadline is not None and time.monotonic() > deadline:
                break
            model = build_model(name, _DTYPES[dtype], device, layers=2 if dry_run else None)
            contexts, qs = ((16,), (1, 2)) if dry_run else ((512, 1536), (1, 4, 16))
            out += _steps(model, name, dtype, device, contexts, qs, eager_qs=(1,), **kw)
    _HELD.clear()
    return out

"""Test layers: markers `torch`, `hdl`, `gpu`, `slow` (declared in pyproject.toml).

`make test` runs everything but `gpu` (auto-skipped without CUDA) and `slow`
(`make test-slow`). Tests under tests/torch/ are marked `torch`, tests/hdl/ `hdl` and
tests/slow/ `slow` by directory, so a file cannot forget its layer.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

# Hermetic runs: traced graphs go to a fresh cache, and nothing is ever downloaded.
os.environ.setdefault("LLMCOSIM_CACHE", tempfile.mkdtemp(prefix="llmcosim-test-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"

_LAYER_BY_DIR = {"torch": "torch", "hdl": "hdl", "slow": "slow", "gpu": "gpu"}


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    skip_gpu = None
    for item in items:
        try:
            rel = Path(item.fspath).relative_to(root)
        except ValueError:
            continue
        layer = _LAYER_BY_DIR.get(rel.parts[0]) if len(rel.parts) > 1 else None
        if layer is not None:
            item.add_marker(getattr(pytest.mark, layer))
        if item.get_closest_marker("gpu") is not None:
            if skip_gpu is None:
                no_gpu = not _cuda_available()
                skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU") if no_gpu else False
            if skip_gpu:
                item.add_marker(skip_gpu)

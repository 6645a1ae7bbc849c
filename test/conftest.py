"""Markers that depend on the machine: `gpu` tests skip with the reason where CUDA is absent."""

from __future__ import annotations

import pytest


def _cuda_reason() -> str:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover
        return f"torch not importable: {exc}"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (run on a GPU machine: pytest -m gpu)"
    return ""


def pytest_collection_modifyitems(config, items):
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if not gpu_items:
        return
    reason = _cuda_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))

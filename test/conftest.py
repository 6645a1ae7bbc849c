"""Markers that depend on the machine: `gpu` / `tensorrt` tests skip with the reason where CUDA / TensorRT is absent."""

from __future__ import annotations

import importlib.util

import pytest

from person_search.core.gallery.milvus import no_grpc_fork_support

no_grpc_fork_support()  # this process talks gRPC (Milvus tests) and starts node processes: before gRPC loads


def _cuda_reason() -> str:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover
        return f"torch not importable: {exc}"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (run on a GPU machine: pytest -m gpu)"
    return ""


def pytest_collection_modifyitems(config, items):
    trt_items = [i for i in items if "tensorrt" in i.keywords]
    if trt_items and importlib.util.find_spec("tensorrt") is None:
        for item in trt_items:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed (GPU machines: "
                                                    "pip install -r requirements-gpu.txt; JetPack ships it)"))
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if not gpu_items:
        return
    reason = _cuda_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))

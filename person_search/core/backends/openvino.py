"""OpenVINO backend for the CLIP image tower on x86 CPUs (fp32).

The tower goes through the same ONNX export as the ONNX Runtime backend (``export.py``:
opset 17, dynamic batch, attention kernels in their export form; the cache of
``ExportedBackend``), is converted with ``openvino.convert_model`` and saved as OpenVINO IR
(``.xml`` + ``.bin``, weights kept in fp32) under
``<cache_dir>/openvino/<model_id>_<H>x<W>_fp32_<fingerprint>.xml``. The ONNX metadata (arch,
model_id, input size, mean/std, dim, weights fingerprint) is stored in the IR's ``rt_info``
and checked on load; a file that does not match is converted again.

Compiled for the CPU with the latency hint, ``encoder.threads`` inference threads (0 =
OpenVINO's default) and fp32 inference precision (no silent bf16 on CPUs that have it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict

import numpy as np

from person_search.core.backends.export import ExportedBackend, check_metadata, export_image_tower

logger = logging.getLogger(__name__)

RT_SECTION = "person_search"


def convert_to_ir(tower, path: Path, image_size, metadata: Dict[str, str]) -> None:
    """Export ``tower`` to ONNX, convert it to OpenVINO IR at ``path`` with ``metadata`` in rt_info."""
    import openvino as ov

    onnx_path = path.with_suffix(".onnx")
    try:
        export_image_tower(tower, onnx_path, image_size, metadata)
        model = ov.convert_model(str(onnx_path))
        for k, v in metadata.items():
            model.set_rt_info(str(v), [RT_SECTION, k])
        tmp = path.with_name(path.stem + ".tmp.xml")
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
    finally:
        onnx_path.unlink(missing_ok=True)


def _read_checked(core, path: Path, expected: Dict[str, str]):
    model = core.read_model(str(path))
    found = {k: model.get_rt_info([RT_SECTION, k]).astype(str) for k in expected if model.has_rt_info([RT_SECTION, k])}
    check_metadata(path, found, expected)
    return model


class OpenVinoBackend(ExportedBackend):
    """OpenVINO fp32 on the CPU, from a cached IR of the torch tower."""

    name = "openvino"
    devices = ("cpu",)
    folder, suffix = "openvino", "xml"

    def __init__(self, tower, facts, ctx):
        import openvino  # noqa: F401 - a missing runtime fails here, before any export
        super().__init__(tower, facts, ctx)

    def convert(self, tower, path: Path, image_size, metadata: Dict[str, str]) -> None:
        convert_to_ir(tower, path, image_size, metadata)

    def load(self, path: Path, expected: Dict[str, str]) -> None:
        import openvino as ov

        core = ov.Core()
        model = _read_checked(core, path, expected)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if self.ctx.threads > 0:
            config["INFERENCE_NUM_THREADS"] = int(self.ctx.threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)

    def describe(self):
        return {**super().describe(), "precision": "fp32", "file": str(self.path)}

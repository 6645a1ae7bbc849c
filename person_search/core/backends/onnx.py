"""ONNX Runtime backends for the CLIP image tower (CPU): fp32 and dynamic int8.

The tower is exported by :mod:`person_search.core.backends.export` (opset 17, dynamic batch,
attention kernels in their export form; int8: dynamic quantisation of the MatMul/Gemm
weights, activations quantised per call) and cached under
``<cache_dir>/onnx/<model_id>_<H>x<W>_<fp32|int8>_<fingerprint>.onnx``; the file's metadata
are checked on load and a file that does not match is exported again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from person_search.core.backends.export import (INPUT_NAME, OUTPUT_NAME, ExportedBackend, check_metadata,
                                                export_image_tower)


def _session(path: Path, expected: Dict[str, str], threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # no busy-waiting between runs: the embedder shares the CPU with the detector (torch),
    # and spinning ORT workers starve torch's OpenMP threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    check_metadata(path, session.get_modelmeta().custom_metadata_map, expected)
    return session


class OnnxBackend(ExportedBackend):
    """ONNX Runtime fp32 on the CPU, from a cached export of the torch tower."""

    name = "onnx"
    devices = ("cpu",)
    folder, suffix = "onnx", "onnx"
    int8 = False

    def convert(self, tower, path: Path, image_size, metadata: Dict[str, str]) -> None:
        export_image_tower(tower, path, image_size, metadata, self.int8)

    def load(self, path: Path, expected: Dict[str, str]) -> None:
        self.session = _session(path, expected, self.ctx.threads)

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def describe(self):
        return {**super().describe(), "precision": "int8 (dynamic)" if self.int8 else "fp32", "file": str(self.path)}


class OnnxInt8Backend(OnnxBackend):
    """ONNX Runtime with dynamically quantised int8 MatMul/Gemm weights (CPU)."""

    name = "onnx-int8"
    int8 = True

"""ONNX Runtime backends for the CLIP image tower (CPU): fp32 and dynamic int8.

The torch image tower (already resized to the input shape and with its weights loaded) is
exported once to ONNX (opset 17, dynamic batch, attention kernels in their plain export
form), optionally quantised to int8 (dynamic quantisation of the MatMul/Gemm weights,
activations quantised per call), and cached under
``<cache_dir>/onnx/<model_id>_<H>x<W>_<fp32|int8>_<fingerprint>.onnx``. The file carries
metadata (arch, model_id, input H/W, mean/std, dim, weights fingerprint, precision) that is
checked on load; a file that does not match is exported again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from person_search.core.attention.patch import export_kernels
from person_search.core.backends.base import ImageBackend
from person_search.core.models.weights import module_fingerprint

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


class _Tower(nn.Module):
    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x):
        out = self.visual(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def export_image_tower(visual: nn.Module, path: Path, image_size, metadata: Dict[str, str], int8: bool = False,
                       *, half: bool = False, opset: int = 17) -> None:
    """Export ``visual`` to ONNX at ``path`` (atomically), with ``metadata``.

    Args:
        visual: the torch image tower (its weights, input size and attention variant).
        path: the ``.onnx`` file to write.
        image_size: (H, W) of the input; the batch axis is dynamic.
        metadata: written into the file's ``metadata_props`` (checked on load).
        int8: quantise the MatMul/Gemm weights dynamically (ONNX Runtime, CPU).
        half: export in FP16 (input, weights and output), as strongly typed TensorRT 11
            needs; traced on the tower's device (a GPU, or the CPU where torch has the ops).
            Without it the tower is exported in FP32 (it is converted in place).
        opset: ONNX opset (>= 17 keeps LayerNorm one op).
    """
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = image_size
    tower = _Tower(visual).eval()
    tower = tower.half() if half else tower.float()
    device = next(iter(tower.parameters())).device
    dummy = torch.zeros(2, 3, h, w, dtype=torch.float16 if half else torch.float32, device=device)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=str(path.parent))
    os.close(fd)
    tmp_q = tmp + ".q.onnx"
    try:
        # plain MatMul/Softmax attention: quantisable by ORT, and the pattern TensorRT fuses
        with export_kernels(tower), warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(tower, (dummy,), tmp, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"},
                                                                        OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        src = tmp
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # MatMul/Gemm only: ORT's ConvInteger is far slower than fp32 conv (MobileCLIP)
                quantize_dynamic(tmp, tmp_q, weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm"])
            src = tmp_q
        model = onnx.load(src)
        del model.metadata_props[:]
        for k, v in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, str(v)
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        for p in (tmp, tmp_q):
            if os.path.exists(p):
                os.remove(p)


def metadata_for(facts, int8: bool, fingerprint: str) -> Dict[str, str]:
    """Return the metadata an exported file of this model must carry."""
    return {
        "person_search_format": FORMAT_VERSION,
        "arch": facts.arch,
        "model_id": facts.model_id,
        "input_height": str(int(facts.image_size[0])),
        "input_width": str(int(facts.image_size[1])),
        "mean": json.dumps([round(float(v), 8) for v in facts.mean]),
        "std": json.dumps([round(float(v), 8) for v in facts.std]),
        "dim": str(int(facts.dim)),
        "precision": "int8" if int8 else "fp32",
        "weights_fingerprint": fingerprint,
    }


def expected_metadata(path: Path) -> Optional[Dict[str, str]]:
    """Return the person_search metadata of an exported file (None if it has none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    return meta if "person_search_format" in meta else None


def check_metadata(path: Path, found: Dict[str, Optional[str]], expected: Dict[str, str]) -> None:
    """Raise ValueError naming every key whose stored value is not the expected one."""
    bad = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if bad:
        raise ValueError(f"{path}: metadata mismatch {bad}")


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


class OnnxBackend(ImageBackend):
    """ONNX Runtime fp32 on the CPU, from a cached export of the torch tower."""

    name = "onnx"
    devices = ("cpu",)
    int8 = False

    def __init__(self, tower, facts, ctx):
        super().__init__(tower, facts, ctx)
        fingerprint = module_fingerprint(tower)
        meta = metadata_for(facts, self.int8, fingerprint)
        h, w = facts.image_size
        name = f"{_safe(facts.model_id)}_{h}x{w}_{meta['precision']}_{fingerprint[:8]}.onnx"
        self.path = Path(ctx.cache_dir) / "onnx" / name
        self.session = None
        if self.path.is_file():
            try:
                self.session = _session(self.path, meta, ctx.threads)
                logger.info("ONNX image tower loaded from cache %s", self.path)
            except Exception as e:  # noqa: BLE001 - stale / corrupt cache: export again
                logger.warning("ONNX cache %s unusable (%s); exporting again", self.path, e)
        if self.session is None:
            logger.info("exporting the %s image tower to ONNX (%s) at %s", facts.arch, meta["precision"], self.path)
            export_image_tower(tower, self.path, facts.image_size, meta, self.int8)
            self.session = _session(self.path, meta, ctx.threads)

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def describe(self):
        return {**super().describe(), "precision": "int8 (dynamic)" if self.int8 else "fp32", "file": str(self.path)}


class OnnxInt8Backend(OnnxBackend):
    """ONNX Runtime with dynamically quantised int8 MatMul/Gemm weights (CPU)."""

    name = "onnx-int8"
    int8 = True

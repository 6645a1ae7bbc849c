"""The export of the CLIP image tower, which every exporting backend extends.

:func:`export_image_tower` writes the torch image tower (already resized to the input
shape and with its weights loaded) to ONNX (opset 17, dynamic batch, attention kernels in
their plain export form), optionally quantised to int8 (dynamic quantisation of the
MatMul/Gemm weights) or in FP16. The file carries metadata (:func:`metadata_for`: arch,
model_id, input H/W, mean/std, dim, weights fingerprint, precision) that is checked on load
(:func:`check_metadata`).

:class:`ExportedBackend` is the cache around it: ``<cache_dir>/<folder>/<model_id>_<H>x<W>_
<precision>_<fingerprint>.<suffix>``, loaded when its metadata match, else exported again.
``onnx.py`` (ONNX Runtime) and ``openvino.py`` (OpenVINO IR) extend it; ``tensorrt.py``
builds its engine from :func:`export_image_tower` with a cache of its own (the engine
depends on the GPU and TensorRT version too). ``person-search export`` uses the same functions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional

import torch
from torch import nn

from person_search.core.attention.patch import export_kernels
from person_search.core.backends.base import BackendContext, ImageBackend
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


def safe_name(name: str) -> str:
    """Return ``name`` usable in a file name (a model id has ``@``, ``/``, ``+``)."""
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


class ExportedBackend(ImageBackend):
    """A backend that runs an exported, cached file of the torch tower.

    Subclasses set ``folder`` (under ``ctx.cache_dir``), ``suffix`` and ``int8``, and define
    :meth:`convert` (write the file from the tower, with the metadata) and :meth:`load`
    (open it and check its metadata; any exception means "export again").
    """

    folder: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    int8: ClassVar[bool] = False

    def __init__(self, tower: nn.Module, facts: Any, ctx: BackendContext):
        super().__init__(tower, facts, ctx)
        fingerprint = module_fingerprint(tower)
        meta = metadata_for(facts, self.int8, fingerprint)
        h, w = facts.image_size
        name = f"{safe_name(facts.model_id)}_{h}x{w}_{meta['precision']}_{fingerprint[:8]}.{self.suffix}"
        self.path = Path(ctx.cache_dir) / self.folder / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loaded = False
        if self.path.is_file():
            try:
                self.load(self.path, meta)
                loaded = True
                logger.info("%s image tower loaded from cache %s", self.name, self.path)
            except Exception as e:  # noqa: BLE001 - stale / corrupt cache: export again
                logger.warning("%s cache %s unusable (%s); exporting again", self.name, self.path, e)
        if not loaded:
            logger.info("exporting the %s image tower for %s (%s) at %s", facts.arch, self.name, meta["precision"],
                        self.path)
            self.convert(tower, self.path, facts.image_size, meta)
            self.load(self.path, meta)

    def convert(self, tower: nn.Module, path: Path, image_size, metadata: Dict[str, str]) -> None:
        """Write the runtime's file of ``tower`` at ``path`` with ``metadata``."""
        raise TypeError(f"{type(self).__name__} must define convert(): every exported backend does")

    def load(self, path: Path, expected: Dict[str, str]) -> None:
        """Open ``path`` for :meth:`run`; raise when its metadata are not ``expected``."""
        raise TypeError(f"{type(self).__name__} must define load(): every exported backend does")

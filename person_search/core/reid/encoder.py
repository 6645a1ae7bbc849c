"""The re-id stage: BGR person crops -> L2-normalised OSNet appearance features (512-d).

``ReidEncoder(cfg)`` reads ``reid.model``:

* an ``.onnx`` file runs as is with backend ``onnx`` (ONNX Runtime) or ``openvino``
  (converted in memory by OpenVINO);
* a Torchreid ``.pth`` state dict is built into :class:`~person_search.core.reid.osnet.OSNet`
  and runs through the image-backend registry (``backends/registry.py``: ``torch``,
  ``onnx``, ``openvino``, ``tensorrt`` export and cache it like the CLIP tower). Backends
  ``torch`` and ``tensorrt`` need the ``.pth``; next to an ``.onnx`` a ``.pth`` of the same
  stem is used.

Preprocessing is the model zoo's: RGB, ``cv2.resize`` to 128x256 (INTER_LINEAR), scaled
to [0, 1], ImageNet mean/std. Missing weights raise :class:`ReidUnavailable` (one line);
callers that can run without identities use :func:`maybe_reid_encoder`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import cv2
import numpy as np

from person_search.core.config import ReidConfig
from person_search.core.errors import ConfigError
from person_search.core.paths import model_dirs, resolve_model_path

logger = logging.getLogger(__name__)

IMAGE_SIZE = (256, 128)  # H, W
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
HOW_TO_GET = "see models/README.md (Re-identification) for how to get osnet_x0_25_msmt17"


class ReidUnavailable(ConfigError):
    """The re-id weights are missing or unreadable: the graph runs on without person identities."""


@dataclass(frozen=True)
class ReidFacts:
    """What a backend needs to know about the re-id model (the ``ModelFacts`` fields it reads)."""

    model_id: str
    arch: str
    image_size: Tuple[int, int] = IMAGE_SIZE
    mean: Tuple[float, float, float] = MEAN
    std: Tuple[float, float, float] = STD
    dim: int = 512
    pretrained: bool = True
    attention: str = "none"  # (the TensorRT engine spec records the CLIP tower's attention kernel)


def preprocess_reid(crops: Sequence[np.ndarray], size: Tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """BGR uint8 crops (any sizes) -> float32 (N, 3, H, W) normalised RGB, as the model zoo prepares them."""
    h, w = size
    out = np.empty((len(crops), h, w, 3), np.float32)
    for i, crop in enumerate(crops):
        img = np.asarray(crop)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape[:2]:
            raise ValueError(f"crop {i}: expected a non-empty (H, W, 3) uint8 BGR image, got {img.dtype} {img.shape}")
        out[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    out *= 1.0 / 255.0
    out -= np.asarray(MEAN, np.float32)
    out /= np.asarray(STD, np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


class _OnnxFile:
    """An ``.onnx`` re-id model run as is by ONNX Runtime (CPU)."""

    name = "onnx"

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads > 0:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shares the CPU with CLIP
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.path = path

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input: batch})[0], np.float32)

    def describe(self):
        return {"backend": "onnx", "file": str(self.path)}


class _OpenVinoFile:
    """An ``.onnx`` re-id model read and compiled by OpenVINO (CPU, fp32)."""

    name = "openvino"

    def __init__(self, path: Path, threads: int):
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.path = path

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return np.array(self.request.get_output_tensor(0).data, np.float32)

    def describe(self):
        return {"backend": "openvino", "file": str(self.path)}


def resolve_reid_model(cfg: ReidConfig) -> Path:
    """Return the model file of ``reid.model`` or raise ReidUnavailable naming where it was looked for."""
    path = resolve_model_path(cfg.model)
    if path is None:
        where = ", ".join(str(d) for d in model_dirs()[:4])
        raise ReidUnavailable(f"re-id weights {cfg.model!r} not found (looked in the working directory, {where}, "
                              f"...); {HOW_TO_GET}")
    if path.suffix.lower() not in (".onnx", ".pth", ".pt"):
        raise ReidUnavailable(f"reid.model {path} must be an .onnx or a Torchreid .pth file")
    return path


class ReidEncoder:
    """OSNet appearance features of person crops.

    Args:
        cfg: the ``reid`` section.
        cache_dir: root of exported files for ``.pth`` models (None = ``paths.cache_dir()``).

    Attributes:
        model_id: ``"<arch>@<file stem>"``: features of two model ids are never compared.
        dim: feature size (512).
        backend: the runtime object (``run(batch) -> (N, dim)``, ``describe()``).
    """

    def __init__(self, cfg: ReidConfig, *, cache_dir: Optional[str] = None):
        cfg.validate()
        self.cfg = cfg
        path = resolve_reid_model(cfg)
        self.path = path
        self.model_id = f"{cfg.arch}@{path.stem}"
        self.dim = 512
        onnx_file = path.suffix.lower() == ".onnx"
        pth = path if not onnx_file else next((p for p in (path.with_suffix(".pth"), path.with_suffix(".pt"))
                                               if p.is_file()), None)
        try:
            if onnx_file and cfg.backend == "onnx":
                self.backend: Any = _OnnxFile(path, cfg.threads)
            elif onnx_file and cfg.backend == "openvino":
                self.backend = _OpenVinoFile(path, cfg.threads)
            elif pth is None:
                raise ReidUnavailable(f"reid.backend {cfg.backend} needs the Torchreid .pth of the model; "
                                      f"{path} is an ONNX file with no .pth beside it ({HOW_TO_GET})")
            else:
                self.backend = self._registry_backend(cfg, pth, cache_dir)
        except ReidUnavailable:
            raise
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ReidUnavailable(f"re-id model {path} could not be loaded with backend {cfg.backend}: "
                                  f"{first[:300]}") from None
        logger.info("ReidEncoder: model_id=%s %s", self.model_id, self.describe())

    @staticmethod
    def _registry_backend(cfg: ReidConfig, pth: Path, cache_dir: Optional[str]):
        import torch

        from person_search.core.backends.base import BackendContext
        from person_search.core.backends.registry import BACKENDS
        from person_search.core.paths import cache_dir as paths_cache_dir
        from person_search.core.reid.osnet import load_osnet

        device = torch.device(cfg.device if not cfg.device.isdigit() else f"cuda:{cfg.device}")
        cls = BACKENDS.get(cfg.backend)
        cls.check_device(device)
        model = load_osnet(pth, cfg.arch).to(device)
        facts = ReidFacts(model_id=f"{cfg.arch}@{pth.stem}", arch=cfg.arch)
        root = Path(cache_dir).expanduser() if cache_dir else paths_cache_dir()
        ctx = BackendContext(device=device, dtype=torch.float32, threads=cfg.threads, max_batch=cfg.batch_size,
                             cache_dir=root / "reid", batch_profile=(1, min(8, cfg.batch_size), cfg.batch_size),
                             workspace_mb=512)
        return cls(model, facts, ctx)

    def describe(self):
        """Return the backend, device and file, for the start-up log."""
        return self.backend.describe()

    def encode(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops -> (N, dim) float32 L2-normalised features."""
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        bs = self.cfg.batch_size
        outs = [self.backend.run(preprocess_reid(crops[i:i + bs])) for i in range(0, len(crops), bs)]
        feats = np.concatenate(outs, axis=0).astype(np.float32, copy=False)
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def maybe_reid_encoder(cfg: ReidConfig, warn: Callable[[str], Any] = logger.warning) -> Optional[ReidEncoder]:
    """Return a ReidEncoder, or None (after one ``warn`` line) when re-id is off or its weights are missing."""
    if not cfg.enabled:
        return None
    try:
        return ReidEncoder(cfg)
    except ReidUnavailable as exc:
        warn(f"re-id off, running without person identities: {exc}")
        return None

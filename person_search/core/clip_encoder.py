"""The CLIP model at runtime (:class:`ClipEncoder`): person crops -> image embeddings, text -> text embeddings.

Which crops it sees, and when, is the embed stage's business (:mod:`person_search.core.embed_stage`).

``ClipEncoder(cfg)`` gets its model from :func:`~person_search.core.models.factory.build_clip`
(weights, input size, attention kernel); ``ClipEncoder.over(built)`` wraps a model built
already (one under training, the attention study's). It is the one encoder over a built
model: serving, training-time validation, ``person-search eval`` and the study use it. It
runs the image tower through the backend named by ``encoder.backend`` (see ``backends/``),
preprocesses crops (``preprocess.py``) and L2-normalises. The text tower always runs in torch (fp32, or fp16 on CUDA).

``model_id`` (``"<arch>@<weights id>"``, plus the attention variant when it changes the
function) identifies the embedding space: embeddings of different model ids are never
compared. The image size, backend and precision do not enter it (same space, numbers that
differ only slightly).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from person_search.core.backends.base import BackendContext
from person_search.core.backends.registry import BACKENDS
from person_search.core.config import EncoderConfig
from person_search.core.errors import ConfigError
from person_search.core.models.factory import TOWERS, BuiltModel, build_clip, parse_device
from person_search.core.paths import cache_dir as paths_cache_dir
from person_search.core.preprocess import RESIZE_MODES, preprocess_crops

logger = logging.getLogger(__name__)


class ClipEncoder:
    """open_clip CLIP model: person crops -> image embeddings, text -> text embeddings.

    Args:
        cfg: the encoder section of the pipeline config.
        towers: which towers to keep, ("image",), ("text",) or both.
        backend: image-tower backend name (``backends/registry.py``); None = ``cfg.backend``.
        resize_mode: "squash" (default, direct resize) or "letterbox".
        cache_dir: the root of exported files (a backend keeps its own under it, e.g.
            ``onnx/``); None = $PERSON_SEARCH_CACHE or ~/.cache/person_search (``paths.cache_dir``).

    Attributes:
        model_id: "<arch>@<random-seed0 | tag | sha256-xxxxxxxxxxxx>[+<attention variant>]".
        dim: embedding dimension.
        pretrained: True when real weights were loaded.
        image_size: (H, W) of the image tower input.
        mean, std: RGB normalisation (0..1 scale).
        backend: the image backend object (None without an image tower).
    """

    def __init__(self, cfg: EncoderConfig, *, towers: Sequence[str] = TOWERS,
                 backend: Optional[str] = None, resize_mode: str = "squash",
                 cache_dir: Optional[str] = None):
        cfg.validate()
        backend_name = backend or cfg.backend
        backend_cls = BACKENDS.get(backend_name)
        if resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, not {resize_mode!r}")
        if "image" in tuple(towers):
            backend_cls.check_device(parse_device(cfg.device))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        built = build_clip(cfg, towers=towers)
        self.cfg = cfg
        root = Path(cache_dir).expanduser() if cache_dir else paths_cache_dir()
        self._attach(built, backend_cls, batch_size=cfg.batch_size, resize_mode=resize_mode, ctx=BackendContext(
            device=built.device, dtype=built.dtype, threads=cfg.threads, max_batch=cfg.batch_size, cache_dir=root,
            batch_profile=(cfg.trt_min_batch, cfg.trt_opt_batch, cfg.trt_max_batch),
            workspace_mb=cfg.trt_workspace_mb))
        logger.info("ClipEncoder: arch=%s weights=%s model_id=%s image=%dx%d device=%s precision=%s "
                    "attention=%s (%d modules) backend=%s towers=%s dim=%d", cfg.arch, cfg.weights or "(random)",
                    self.model_id, self.image_size[0], self.image_size[1], self.device, cfg.precision,
                    self.facts.attention, self.facts.attention_modules,
                    self.backend.describe() if self.backend else "-", ",".join(self.towers), self.dim)

    @classmethod
    def over(cls, built: BuiltModel, *, batch_size: int = 64, model_id: Optional[str] = None,
             autocast_dtype: Optional[torch.dtype] = None, resize_mode: str = "squash") -> "ClipEncoder":
        """Return an encoder over a model already built (and maybe under training): torch backend, no copy.

        Training-time validation, ``person-search eval`` of a live model and the attention study
        score a model through this, so they score it exactly as serving does (same preprocessing,
        same normalisation). The model must be in eval mode while it encodes.

        Args:
            built: the model (``build_clip``'s result, or a training model with its facts).
            batch_size: crops / captions per forward pass.
            model_id: the embedding space's id instead of ``built.facts.model_id`` (e.g. a training step).
            autocast_dtype: run both towers under ``torch.autocast`` with this dtype (training on a GPU).
            resize_mode: as for the constructor.
        """
        self = cls.__new__(cls)
        self.cfg = None
        self._attach(built, BACKENDS.get("torch"), batch_size=batch_size, resize_mode=resize_mode,
                     ctx=BackendContext(device=built.device, dtype=torch.float32 if autocast_dtype else built.dtype,
                                        threads=0, max_batch=batch_size, cache_dir=paths_cache_dir()),
                     autocast_dtype=autocast_dtype)
        if model_id:
            self.model_id = model_id
        return self

    def _attach(self, built: BuiltModel, backend_cls, *, batch_size: int, resize_mode: str, ctx: BackendContext,
                autocast_dtype: Optional[torch.dtype] = None) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, not {resize_mode!r}")
        facts = built.facts
        self.facts = facts
        self.arch = facts.arch
        self.towers = built.towers
        self.resize_mode = resize_mode
        self.device = built.device
        self.batch_size = int(batch_size)
        self.autocast_dtype = autocast_dtype
        self.model_id = facts.model_id
        self.dim = facts.dim
        self.pretrained = facts.pretrained
        self.image_size = facts.image_size
        self.mean = facts.mean
        self.std = facts.std
        self.text_templates = facts.text_templates  # how its weights expect a description
        self.backend = backend_cls(built.image_tower, facts, ctx) if built.image_tower is not None else None
        self._text_model = built.text_model
        self._tokenizer = built.tokenizer

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @property
    def has_image_tower(self) -> bool:
        return self.backend is not None

    @property
    def has_text_tower(self) -> bool:
        return self._text_model is not None

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops -> float32 (N, 3, H, W) model input (see preprocess_crops)."""
        return preprocess_crops(crops, self.image_size, self.mean, self.std, self.resize_mode)

    def encode_images(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops (any sizes) -> (N, dim) float32 L2-normalised embeddings."""
        if not self.has_image_tower:
            raise RuntimeError(f"this ClipEncoder was built with towers={self.towers}: no image tower "
                               f"(build it with towers=('image',) to encode images)")
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = self.batch_size
        outs = [self.encode_preprocessed(self.preprocess(crops[i:i + bs])) for i in range(0, len(crops), bs)]
        return np.concatenate(outs, axis=0)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N, 3, H, W) preprocessed batch -> (N, dim) float32 L2-normalised."""
        if self.backend is None:
            raise RuntimeError("no image tower")
        with self._autocast():
            feats = self.backend.run(np.asarray(batch, dtype=np.float32))
        norm = np.linalg.norm(feats, axis=1, keepdims=True)
        return (feats / np.maximum(norm, 1e-12)).astype(np.float32, copy=False)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 L2-normalised embeddings (open_clip tokenizer of the arch)."""
        if self._text_model is None:
            raise RuntimeError(f"this ClipEncoder was built with towers={self.towers}: no text tower "
                               f"(build it with towers=('text',) to encode text)")
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("encode_text expects a list of str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = max(self.batch_size, 32)
        outs = []
        with torch.inference_mode(), self._autocast():
            for i in range(0, len(texts), bs):
                tokens = self._tokenizer(texts[i:i + bs]).to(self.device)
                feats = self._text_model.encode_text(tokens)
                outs.append(F.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(outs, axis=0)

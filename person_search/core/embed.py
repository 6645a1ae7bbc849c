"""The embedding stage: crop budget, batching through the CLIP image tower, JPEG crops."""

from __future__ import annotations

import logging
from typing import Dict, Optional, Tuple

import numpy as np

from person_search.core.config import EncoderConfig
from person_search.core.gallery.thumbs import crop_thumbnail, frame_thumbnail
from person_search.core.types import EmbeddingBatch, FrameDetections

log = logging.getLogger(__name__)


class CropBudget:
    """At most ``per_track_s`` crops of one track per second (0 = no limit).

    On a CPU the image tower bounds the pipeline; a person standing still for a minute does
    not need 900 embeddings. A crop that is clearly better (quality x1.5) than the last one
    embedded for its track passes anyway.
    """

    def __init__(self, per_track_s: float, horizon_s: float = 120.0):
        self.per_track_s = float(per_track_s)
        self._last: Dict[Tuple[str, int], Tuple[int, float]] = {}
        self._horizon_ns = int(horizon_s * 1e9)

    def allow(self, source_id: str, track_id: int, stamp_ns: int, quality: float) -> bool:
        if self.per_track_s <= 0:
            return True
        key = (source_id, int(track_id))
        last = self._last.get(key)
        min_gap = int(1e9 / self.per_track_s)
        if last is None or stamp_ns - last[0] >= min_gap or stamp_ns < last[0] or quality > 1.5 * last[1]:
            self._last[key] = (stamp_ns, quality)
            if len(self._last) > 10_000:
                self._forget(stamp_ns)
            return True
        return False

    def _forget(self, now_ns: int) -> None:
        self._last = {k: v for k, v in self._last.items() if now_ns - v[0] < self._horizon_ns}


class Embedder:
    """FrameDetections -> EmbeddingBatch through a ClipEncoder's image tower."""

    def __init__(self, cfg: EncoderConfig, encoder=None):
        if encoder is None:
            from person_search.core.encoders import ClipEncoder
            encoder = ClipEncoder(cfg, towers=("image",))
        self.encoder = encoder
        self.budget = CropBudget(cfg.max_crops_per_track_s)
        self.skipped = 0

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed(self, det: FrameDetections, *, frame: Optional[np.ndarray] = None,
              frame_jpeg: bytes = b"") -> Optional[EmbeddingBatch]:
        """Embed the people of one frame that the crop budget lets through (None if none)."""
        people = [p for p in det.people if self.budget.allow(det.source_id, p.track_id, det.stamp_ns, p.quality)]
        self.skipped += len(det.people) - len(people)
        if not people:
            return None
        vectors = self.encoder.encode_images([p.crop for p in people])
        if not frame_jpeg and frame is not None:
            frame_jpeg = frame_thumbnail(frame)
        return EmbeddingBatch(
            model_id=self.encoder.model_id,
            vectors=np.asarray(vectors, np.float32),
            track_ids=np.array([p.track_id for p in people], np.int64),
            boxes=np.array([p.box for p in people], np.float32).reshape(-1, 4),
            scores=np.array([p.score for p in people], np.float32),
            stamp_ns=det.stamp_ns,
            source_id=det.source_id,
            crops_jpeg=[crop_thumbnail(p.crop) for p in people],
            qualities=np.array([p.quality for p in people], np.float32),
            frame_jpeg=frame_jpeg,
        )

"""The embed stage (what the embedder node runs): the crop budget, batching through the CLIP image tower, JPEG crops.

The model itself is :class:`~person_search.core.clip_encoder.ClipEncoder`; this module decides
which crops it sees and packs what comes out.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Optional

import numpy as np

from person_search.core.budget import CropBudget, parse_crop_budget
from person_search.core.config import EncoderConfig
from person_search.core.gallery.thumbs import crop_thumbnail, frame_thumbnail
from person_search.core.types import EmbeddingBatch, FrameDetections

log = logging.getLogger(__name__)


class Embedder:
    """FrameDetections -> EmbeddingBatch through a ClipEncoder's image tower.

    Crops pass the global `CropBudget` first (``encoder.crop_budget``,
    ``encoder.max_crops_per_track_s``); the time each embed call takes feeds the budget's
    measured throughput. ``clock`` (seconds, monotonic) is injectable for tests.

    ``reid`` (a :class:`~person_search.core.reid.encoder.ReidEncoder`, or None) adds re-id
    features of the same admitted crops to each batch; ``timing`` sums the seconds spent in
    the CLIP tower and in re-id, and the crops embedded.
    """

    def __init__(self, cfg: EncoderConfig, encoder=None, *, reid=None, frame_jpeg_max_side: int = 480,
                 clock: Callable[[], float] = time.perf_counter):
        if encoder is None:
            from person_search.core.clip_encoder import ClipEncoder
            encoder = ClipEncoder(cfg, towers=("image",))
        self.encoder = encoder
        self.budget = CropBudget(parse_crop_budget(cfg.crop_budget), per_track_s=cfg.max_crops_per_track_s)
        self.frame_jpeg_max_side = frame_jpeg_max_side
        self.clock = clock
        self.reid = reid
        self.timing = {"clip_s": 0.0, "reid_s": 0.0, "crops": 0}

    @property
    def skipped(self) -> int:
        """Crops the budget dropped so far."""
        return self.budget.counts["crops_dropped"]

    def budget_state(self) -> Dict[str, object]:
        """Return the crop budget's counters and rate (published on /diagnostics by the node)."""
        return self.budget.state()

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed(self, det: FrameDetections, *, frame: Optional[np.ndarray] = None, frame_jpeg: bytes = b"",
              arrived_ns: Optional[int] = None) -> Optional[EmbeddingBatch]:
        """Embed the people of one frame that the crop budget lets through (None if none).

        ``arrived_ns`` (live graphs: the wall time the frame's crops arrived) lets the budget
        see a backlog upstream; offline runs leave it None.
        """
        t0 = self.clock()
        people = self.budget.select(det.source_id, det.stamp_ns, det.people, arrived_ns)
        if not people:
            self.budget.observe(0, self.clock() - t0)
            return None
        crops = [p.crop for p in people]
        t1 = self.clock()
        vectors = self.encoder.encode_images(crops)
        t2 = self.clock()
        reid = self.reid.encode(crops) if self.reid is not None else None
        self.timing["clip_s"] += t2 - t1
        self.timing["reid_s"] += self.clock() - t2
        self.timing["crops"] += len(crops)
        if not frame_jpeg and frame is not None:
            frame_jpeg = frame_thumbnail(frame, max_side=self.frame_jpeg_max_side, people=det.people)
        crops_jpeg = [crop_thumbnail(p.crop) for p in people]
        self.budget.observe(len(people), self.clock() - t0)
        return EmbeddingBatch(
            model_id=self.encoder.model_id,
            vectors=np.asarray(vectors, np.float32),
            track_ids=np.array([p.track_id for p in people], np.int64),
            boxes=np.array([p.box for p in people], np.float32).reshape(-1, 4),
            scores=np.array([p.score for p in people], np.float32),
            stamp_ns=det.stamp_ns,
            source_id=det.source_id,
            crops_jpeg=crops_jpeg,
            qualities=np.array([p.quality for p in people], np.float32),
            frame_jpeg=frame_jpeg,
            reid_vectors=reid,
            reid_model_id=self.reid.model_id if self.reid is not None else "",
        )

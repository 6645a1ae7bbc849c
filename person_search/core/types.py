"""Data types shared by the core stages (video -> detection -> embedding -> gallery -> query)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

Box = Tuple[float, float, float, float]
"""Pixel box in the source frame: (x1, y1, x2, y2)."""


@dataclass
class Frame:
    """One decoded video frame.

    Attributes:
        image: BGR uint8 array (H, W, 3).
        stamp_ns: time of the frame in ns, comparable with ROS time and never going
            backwards: live sources (and files played live) stamp at capture on a monotonic
            clock anchored to the wall clock at open; files read offline stamp start +
            position in the video.
        source_id: camera / source name; becomes the ROS frame_id.
        index: frame counter of the source, from 0.
        pos_ms: position in the media (files), or -1 for live sources.
    """

    image: np.ndarray
    stamp_ns: int
    source_id: str
    index: int
    pos_ms: float = -1.0


@dataclass
class PersonDetection:
    """One tracked person in one frame."""

    track_id: int
    box: Box
    score: float
    crop: np.ndarray  # BGR uint8 crop (with padding applied)
    quality: float = 0.0  # size x sharpness x score, higher is better


@dataclass
class FrameDetections:
    """The tracked people of one frame."""

    stamp_ns: int
    source_id: str
    frame_index: int
    frame_size: Tuple[int, int]  # (width, height)
    people: List[PersonDetection] = field(default_factory=list)


@dataclass
class EmbeddingBatch:
    """L2-normalised image embeddings of the people of one frame."""

    model_id: str
    vectors: np.ndarray  # (N, D) float32, rows L2-normalised
    track_ids: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32 detector scores
    stamp_ns: int
    source_id: str
    crops_jpeg: List[bytes] = field(default_factory=list)  # per row, may be empty
    qualities: Optional[np.ndarray] = None  # (N,) float32
    frame_jpeg: bytes = b""  # thumbnail of the whole frame, may be empty
    reid_vectors: Optional[np.ndarray] = None  # (N, R) float32 unit re-id features of the same rows, or None
    reid_model_id: str = ""

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


@dataclass
class TrackMatch:
    """One track returned by a gallery search."""

    track_id: int
    score: float
    source_id: str
    first_seen_ns: int
    last_seen_ns: int
    box: Box  # box of the best-matching / best crop observation
    crop_jpeg: bytes = b""
    frame_jpeg: bytes = b""
    num_embeddings: int = 0

"""Thumbnails: the sizes and quality of stored crops and frames, and the gallery's thumbnail budget.

Person crops and frame thumbnails go through :func:`crop_thumbnail` / :func:`frame_thumbnail`
(JPEG by :func:`person_search.core.imaging.encode_jpeg`, the one encoder), so the detector
node and the offline embedder send the gallery the same sizes and quality.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Tuple

import cv2
import numpy as np

from person_search.core.imaging import encode_jpeg

CROP_MAX_SIDE = 256  # px, longer side of a stored person crop
CROP_QUALITY = 85
FRAME_MAX_SIDE = 480  # px, longer side of a frame thumbnail
FRAME_QUALITY = 75
LRU_ENTRY_BYTES = 110  # one OrderedDict entry, measured with tracemalloc


def crop_thumbnail(crop: np.ndarray) -> bytes:
    """JPEG of a person crop as the gallery keeps it."""
    return encode_jpeg(crop, quality=CROP_QUALITY, max_side=CROP_MAX_SIDE)


def frame_thumbnail(frame: np.ndarray, max_side: int = FRAME_MAX_SIDE, people: Iterable = ()) -> bytes:
    """JPEG thumbnail of a whole frame as the gallery keeps it.

    ``people`` (objects with ``box`` in frame pixels and ``track_id``) are drawn on it, each box
    labelled with its track id: one thumbnail serves every person of the frame, so a match is
    found in it by its track id.
    """
    people = list(people)
    if not people:
        return encode_jpeg(frame, quality=FRAME_QUALITY, max_side=max_side)
    s = min(1.0, max_side / max(frame.shape[:2])) if max_side else 1.0
    img = (cv2.resize(frame, (max(1, round(frame.shape[1] * s)), max(1, round(frame.shape[0] * s))),
                      interpolation=cv2.INTER_AREA) if s < 1.0 else frame.copy())
    font = cv2.FONT_HERSHEY_SIMPLEX
    for p in people:
        x1, y1, x2, y2 = (int(round(float(v) * s)) for v in p.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
        label = f"#{int(p.track_id)}"
        (tw, th), _ = cv2.getTextSize(label, font, 0.35, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(img, (x1, ty - th - 2), (x1 + tw + 2, ty), (0, 0, 0), -1)
        cv2.putText(img, label, (x1 + 1, ty - 2), font, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return encode_jpeg(img, quality=FRAME_QUALITY)


class ThumbBudget:
    """JPEG crops and frame thumbnails of the tracks within ``budget`` bytes.

    Over budget, frame thumbnails of the least recently seen tracks go first, then crops
    (least recently seen first). Tracks are any objects with ``tidx``, ``crop_jpeg`` and
    ``frame_jpeg`` attributes.
    """

    KINDS = ("frame_jpeg", "crop_jpeg")  # dropped in this order

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.bytes = 0
        self.lru = {k: OrderedDict() for k in self.KINDS}

    def touch(self, tidx: int) -> None:
        """Mark a track as just seen."""
        for lru in self.lru.values():
            if tidx in lru:
                lru.move_to_end(tidx)

    def set(self, tr, kind: str, data: bytes) -> None:
        """Give a track a new thumbnail of one kind."""
        self.bytes += len(data) - len(getattr(tr, kind))
        setattr(tr, kind, data)
        lru = self.lru[kind]
        lru[tr.tidx] = None
        lru.move_to_end(tr.tidx)

    def enforce(self, tracks) -> None:
        """Drop thumbnails until the budget holds; ``tracks[tidx]`` gives a track."""
        for kind in self.KINDS:
            lru = self.lru[kind]
            while self.bytes > self.budget and lru:
                tidx, _ = lru.popitem(last=False)
                tr = tracks[tidx]
                self.bytes -= len(getattr(tr, kind))
                setattr(tr, kind, b"")

    def drop(self, tr) -> None:
        """Release a removed track's thumbnails."""
        self.bytes -= len(tr.crop_jpeg) + len(tr.frame_jpeg)
        tr.crop_jpeg = tr.frame_jpeg = b""
        for lru in self.lru.values():
            lru.pop(tr.tidx, None)

    def order(self, kind: str) -> Iterator[int]:
        """Track indices holding a thumbnail of this kind, least recently seen first."""
        return iter(self.lru[kind])

    def restore(self, tracks, orders: Iterable[Tuple[str, Iterable[int]]]) -> None:
        """Rebuild the byte count and the LRU orders of restored tracks."""
        self.bytes = sum(len(t.crop_jpeg) + len(t.frame_jpeg) for t in tracks)
        for kind, order in orders:
            for tidx in order:
                self.lru[kind][int(tidx)] = None

    def memory_bytes(self) -> int:
        return self.bytes + sum(len(lru) for lru in self.lru.values()) * LRU_ENTRY_BYTES

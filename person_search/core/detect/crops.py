"""Crop policy: the padded crop of a box and its quality score (size x sharpness x score)."""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

PERSON_CLASS = 0  # COCO's person: the one class the detectors keep
SIZE_REF_PX = 256.0  # a box this tall (or taller) gets the full size score
SHARPNESS_REF = 300.0  # variance of Laplacian giving a sharpness score of 0.5
SHARPNESS_HEIGHT = 224  # crops are resized to this height (~ encoder input) before measuring sharpness


def crop_box(image: np.ndarray, box: Sequence[float], pad: float) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Crop ``box`` (x1, y1, x2, y2) padded by ``pad`` x its width/height on each side.

    The crop is clipped to the image. Returns (crop copy, (x1, y1, x2, y2) of the crop
    in ints).
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(0.0, x2 - x1), max(0.0, y2 - y1)
    px, py = pad * bw, pad * bh
    cx1 = int(np.clip(np.floor(x1 - px), 0, w))
    cy1 = int(np.clip(np.floor(y1 - py), 0, h))
    cx2 = int(np.clip(np.ceil(x2 + px), 0, w))
    cy2 = int(np.clip(np.ceil(y2 + py), 0, h))
    return image[cy1:cy2, cx1:cx2].copy(), (cx1, cy1, cx2, cy2)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop (gray, resized to SHARPNESS_HEIGHT rows)."""
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    h, w = gray.shape[:2]
    if h != SHARPNESS_HEIGHT and h > 0:
        nw = max(1, int(round(w * SHARPNESS_HEIGHT / h)))
        gray = cv2.resize(gray, (nw, SHARPNESS_HEIGHT), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def crop_quality(crop: np.ndarray, box_h: float, score: float) -> float:
    """Quality in [0, 1]: normalised size x saturating sharpness x detector score."""
    size = min(1.0, max(0.0, float(box_h)) / SIZE_REF_PX)
    s = sharpness(crop)
    sharp = s / (s + SHARPNESS_REF)
    return float(size * sharp * float(np.clip(score, 0.0, 1.0)))

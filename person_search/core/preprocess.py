"""Person crops -> the image tower's input batch (numpy / OpenCV only, no torch)."""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

RESIZE_MODES = ("squash", "letterbox")


def preprocess_crops(crops: Sequence[np.ndarray], size: Tuple[int, int], mean: Sequence[float],
                     std: Sequence[float], mode: str = "squash") -> np.ndarray:
    """BGR uint8 crops of any sizes -> float32 (N, 3, H, W) normalised RGB batch.

    mode "squash": direct cv2.resize to (H, W) (INTER_AREA when shrinking, else INTER_LINEAR);
    "letterbox": resize keeping the aspect ratio, centred, padded with the mean colour
    (zeros after normalisation).
    """
    h, w = size
    out = np.empty((len(crops), h, w, 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        img = np.asarray(crop)
        if img.dtype != np.uint8:
            raise TypeError(f"crop {i}: expected a uint8 BGR image, got dtype {img.dtype}")
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        elif img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"crop {i}: expected an (H, W, 3) BGR image, got shape {img.shape}")
        ch, cw = img.shape[:2]
        if ch == 0 or cw == 0:
            raise ValueError(f"crop {i}: empty image of shape {img.shape}")
        if mode == "squash":
            interp = cv2.INTER_AREA if (ch >= h and cw >= w) else cv2.INTER_LINEAR
            out[i] = cv2.resize(img, (w, h), interpolation=interp)
        elif mode == "letterbox":
            s = min(h / ch, w / cw)
            nh, nw = max(1, min(h, round(ch * s))), max(1, min(w, round(cw * s)))
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            r = cv2.resize(img, (nw, nh), interpolation=interp)
            fill = np.clip(np.round(np.asarray(mean)[::-1] * 255), 0, 255).astype(np.uint8)  # BGR mean
            out[i] = fill
            y0, x0 = (h - nh) // 2, (w - nw) // 2
            out[i, y0:y0 + nh, x0:x0 + nw] = r
        else:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")
    mean_a = np.asarray(mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)
    x = out[..., ::-1].astype(np.float32)  # BGR -> RGB
    x -= mean_a
    x *= inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

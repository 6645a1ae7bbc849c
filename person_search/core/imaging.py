"""Small image helpers shared by stages: the BGR uint8 check, JPEG encoding and decoding, the overlay, contact sheets.

Every JPEG the package makes goes through :func:`encode_jpeg`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import cv2
import numpy as np

from person_search.core.types import FrameDetections


def is_bgr(img: Any, *, empty_ok: bool = False) -> bool:
    """Return True if ``img`` is a BGR uint8 (H, W, 3) numpy array (non-empty unless ``empty_ok``)."""
    return (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
            and (empty_ok or img.size > 0))


def check_image(image: Any) -> np.ndarray:
    """Return ``image`` if it is a BGR uint8 (H, W, 3) array, else raise a clear ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame image must be a numpy BGR uint8 (H, W, 3) array, got {type(image).__name__}")
    if not is_bgr(image):
        raise ValueError(f"frame image must be BGR uint8 (H, W, 3), got shape {tuple(image.shape)} dtype {image.dtype} "
                         "(convert gray/RGBA/float frames first)")
    return image


def to_bgr(img: Any) -> Optional[np.ndarray]:
    """Convert a decoded image (gray, BGRA, 16-bit) to BGR uint8 (H, W, 3); None if it cannot be."""
    if not isinstance(img, np.ndarray) or img.size == 0:
        return None
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:
            return None
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img if is_bgr(img) else None


def encode_jpeg(img: np.ndarray, *, quality: int = 85, max_side: int = 0) -> bytes:
    """Encode a BGR image as JPEG, downscaled so that its longer side is at most max_side."""
    if max_side and max(img.shape[:2]) > max_side:
        s = max_side / max(img.shape[:2])
        img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> Optional[np.ndarray]:
    """Decode JPEG/PNG bytes to BGR, or None when empty or undecodable."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _color(track_id: int) -> Tuple[int, int, int]:
    rng = np.random.default_rng(int(track_id) * 7919 + 17)
    return tuple(int(c) for c in rng.integers(64, 256, 3))


def draw_overlay(image: np.ndarray, det: FrameDetections,
                 highlights: Optional[Mapping[int, float]] = None, query: str = "") -> np.ndarray:
    """Draw boxes and track ids; tracks matched by the last query in thick red with their score.

    Args:
        image: BGR frame (not modified).
        det: the tracked people of that frame.
        highlights: track id -> score of the last query's matches on this camera.
        query: the last query's description, written at the top.
    """
    out = image.copy()
    highlights = highlights or {}
    for p in det.people:
        x1, y1, x2, y2 = (int(round(v)) for v in p.box)
        hit = p.track_id in highlights
        color = (0, 0, 255) if hit else _color(p.track_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 4 if hit else 2)
        label = f"#{p.track_id} {p.score:.2f}"
        if hit:
            label += f"  match {highlights[p.track_id]:.3f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(th + 4, y1)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), color, -1)
        cv2.putText(out, label, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if query:
        text = f"query: {query[:80]}"
        cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(rows, *, cell=(96, 192), title: str = "", row_titles=None) -> np.ndarray:
    """Tile match crops in rank order with their track, camera and score.

    Args:
        rows: sequence of (label, crop_jpeg_bytes) per match; one row of the sheet per query
            when given as a list of such sequences (an empty row stays, as a gap).
        cell: (width, height) of each crop cell.
        title: written above the first row.
        row_titles: one line written above each row (e.g. the query that row answers).
    """
    if rows and isinstance(rows[0], tuple):
        rows = [rows]
    titles = list(row_titles or [])
    cw, ch = cell
    ncols = max([len(r) for r in rows] + [1])
    header = 28 if title else 4
    band = 22 if titles else 0  # the row's own title line
    row_h = band + ch + 24
    width = max(ncols * (cw + 8) + 8, 480 if titles else 0)
    sheet = np.full((header + len(rows) * row_h, width, 3), 255, np.uint8)
    if title:
        cv2.putText(sheet, title[:120], (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for r, row in enumerate(rows):
        y0 = header + r * row_h
        if r < len(titles):
            cv2.putText(sheet, f"{r + 1}. {titles[r]}"[:90], (8, y0 + 16), font, 0.5, (120, 0, 0), 1, cv2.LINE_AA)
            if not row:
                cv2.putText(sheet, "no matches", (8, y0 + band + 20), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
        y0 += band
        for c, (label, jpeg) in enumerate(row):
            x0 = 8 + c * (cw + 8)
            img = decode_jpeg(jpeg)
            if img is not None:
                s = min(cw / img.shape[1], ch / img.shape[0])
                img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))))
                sheet[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
            cv2.putText(sheet, label[:18], (x0, y0 + ch + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet

"""A crowded street scene made from the people in the bundled photos (no download needed).

``make_crowd_video`` cuts the people out of ultralytics' ``bus.jpg`` (three full-body
pedestrians) and ``zidane.jpg`` (one man, upper body) with fixed boxes (found once by the
pretrained YOLO11n; a feathered elliptical mask hides most of the photo around them), makes
variants (mirrored, scaled, re-coloured clothes) and lets ``people`` of them walk across a
drawn street at 720p or 1080p, each on its own depth lane: far ones small and high, near
ones large and low, drawn back to front so near people occlude far ones. A person who
leaves the frame re-enters at the other side (a new track), so a run sees a steady stream
of new people while >= ``people`` are in view. Everything is seeded: the same arguments
give the same video.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from person_search.demo.sample import sample_images

# (photo, x1, y1, x2, y2, height relative to a full-body walker) of each person cut out
CUTOUTS = (
    ("bus.jpg", 48, 396, 242, 903, 1.0),
    ("bus.jpg", 221, 405, 345, 859, 1.0),
    ("bus.jpg", 669, 391, 810, 880, 1.0),
    ("zidane.jpg", 749, 42, 1150, 710, 0.55),  # upper body
)
HORIZON = 0.42  # share of the height where the buildings meet the pavement


@dataclass
class _Walker:
    sprite: np.ndarray  # BGR
    alpha: np.ndarray  # float32 (h, w) in [0, 1]
    feet_y: float  # px
    x: float  # left edge, px
    speed: float  # px per second, signed
    phase: float
    ident: int = 0  # ground-truth person (the walker's index before drawing order)
    cut: int = 0  # which real cut-out person it was made from


def _cutouts() -> List[Tuple[np.ndarray, np.ndarray, float]]:
    photos = {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sample_images()}
    out = []
    for name, x1, y1, x2, y2, rel in CUTOUTS:
        img = photos[name]
        if img is None:
            raise FileNotFoundError(f"cannot decode bundled photo {name}")
        crop = img[y1:y2, x1:x2].copy()
        h, w = crop.shape[:2]
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.42), int(h * 0.49)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(2.0, w * 0.04))
        out.append((crop, mask, rel))
    return out


def street_background(size: Tuple[int, int], seed: int = 0) -> np.ndarray:
    """Draw a street: sky, a row of building facades with windows, pavement, a road."""
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    hz = int(h * HORIZON)
    for y in range(hz):  # sky gradient
        img[y] = (230 - 60 * y // max(1, hz), 200 - 40 * y // max(1, hz), 170)
    x = 0
    while x < w:  # facades
        bw = int(rng.integers(w // 10, w // 5))
        top = int(rng.integers(0, hz // 2))
        color = tuple(int(c) for c in rng.integers(70, 190, 3))
        cv2.rectangle(img, (x, top), (x + bw, hz), color, -1)
        win = max(8, bw // 8)
        for wy in range(top + win, hz - win, 2 * win):
            for wx in range(x + win // 2, x + bw - win, 2 * win):
                shade = int(rng.integers(30, 90))
                cv2.rectangle(img, (wx, wy), (wx + win, wy + int(win * 1.3)), (shade, shade + 10, shade + 20), -1)
        x += bw
    road = int(h * 0.93)
    img[hz:road] = (150, 152, 156)  # pavement with tile joints in perspective
    for i in range(1, 12):
        y = hz + int((road - hz) * (i / 12) ** 1.5)
        cv2.line(img, (0, y), (w, y), (120, 122, 126), 1)
    img[road:] = (70, 70, 74)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _variant(crop: np.ndarray, mask: np.ndarray, height: int, rng) -> Tuple[np.ndarray, np.ndarray]:
    s = height / crop.shape[0]
    size = (max(8, int(crop.shape[1] * s)), max(16, int(height)))
    sprite = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    alpha = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        sprite, alpha = sprite[:, ::-1].copy(), alpha[:, ::-1].copy()
    hsv = cv2.cvtColor(sprite, cv2.COLOR_BGR2HSV).astype(np.int16)
    sat = hsv[..., 1] > 60  # re-colour saturated parts (clothes, bags), keep skin-ish greys
    hsv[..., 0] = np.where(sat, (hsv[..., 0] + int(rng.integers(0, 180))) % 180, hsv[..., 0])
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.15), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR), alpha


def _paste(frame: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = sprite.shape[:2]
    fh, fw = frame.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x2 <= x1 or y2 <= y1:
        return
    sp = sprite[y1 - y:y2 - y, x1 - x:x2 - x].astype(np.float32)
    a = alpha[y1 - y:y2 - y, x1 - x:x2 - x, None]
    roi = frame[y1:y2, x1:x2].astype(np.float32)
    frame[y1:y2, x1:x2] = (a * sp + (1 - a) * roi).astype(np.uint8)


def make_crowd_video(path, *, people: int = 12, seconds: float = 10.0, fps: int = 15,
                     size: Tuple[int, int] = (1920, 1080), seed: int = 0, truth: Optional[list] = None) -> Path:
    """Write an mp4 (mp4v) of ``people`` pedestrians walking across a street.

    Args:
        path: output file (parent folders are created).
        people: walkers in the scene (each in view most of the time; leaving ones re-enter).
        seconds: duration.
        fps: frame rate.
        size: (width, height); 1920x1080 or 1280x720 are typical.
        seed: the scene (lanes, speeds, looks) is a function of it.
        truth: a list that receives, per frame, the ground truth: a list of
            ``(person, cut_out, x1, y1, x2, y2)`` (sprite boxes clipped to the frame, ``person``
            the walker, ``cut_out`` the real photo person it was made from). Occlusion is not
            taken out: a box may be partly hidden by a nearer walker.

    Returns:
        The path written.

    Raises:
        ValueError: bad arguments. FileNotFoundError: the bundled photos are missing.
        RuntimeError: OpenCV cannot write mp4v here.
    """
    if people < 1 or seconds <= 0 or fps <= 0:
        raise ValueError(f"people, seconds and fps must be > 0, got {people}, {seconds}, {fps}")
    w, h = int(size[0]), int(size[1])
    if w < 320 or h < 240:
        raise ValueError(f"size too small for a crowd: {size} (at least 320x240)")
    rng = np.random.default_rng(seed)
    cut = _cutouts()
    bg = street_background((w, h), seed)
    hz, road = h * HORIZON, h * 0.93
    walkers = []
    for i in range(people):
        depth = (i + rng.uniform(0.1, 0.9)) / people  # spread over the pavement, far to near
        feet = hz + 0.12 * h + depth * (road - hz - 0.12 * h)
        height = h * (0.22 + 0.33 * depth)
        crop, mask, rel = cut[i % len(cut)]
        sprite, alpha = _variant(crop, mask, int(height * rel), rng)
        speed = rng.uniform(0.04, 0.09) * w * rng.choice([-1.0, 1.0])
        walkers.append(_Walker(sprite, alpha, feet, rng.uniform(0, w - sprite.shape[1]), speed,
                               rng.uniform(0, 2 * np.pi), ident=i, cut=i % len(cut)))
    walkers.sort(key=lambda k: k.feet_y)  # far first: near people are drawn over them

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {out}")
    try:
        for k in range(max(1, int(round(seconds * fps)))):
            t = k / fps
            frame = bg.copy()
            seen = []
            for p in walkers:
                sw = p.sprite.shape[1]
                span = w + sw
                x = (p.x + sw + p.speed * t) % span - sw  # leaves one side, re-enters at the other
                bob = 0.01 * p.sprite.shape[0] * np.sin(2 * np.pi * 1.8 * t + p.phase)
                px, py = int(round(x)), int(round(p.feet_y - p.sprite.shape[0] + bob))
                _paste(frame, p.sprite, p.alpha, px, py)
                sh, sw2 = p.sprite.shape[:2]
                box = (max(0, px), max(0, py), min(w, px + sw2), min(h, py + sh))
                if box[2] > box[0] and box[3] > box[1]:
                    seen.append((p.ident, p.cut) + box)
            if truth is not None:
                truth.append(seen)
            writer.write(frame)
    finally:
        writer.release()
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"OpenCV wrote nothing to {out} (mp4v encoder missing?)")
    return out

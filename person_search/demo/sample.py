"""A sample video made from real photos that ship with ultralytics (no download needed).

``make_sample_video`` writes an mp4 (mp4v) in which a virtual camera pans and zooms
slowly over ``bus.jpg`` (two people walking past a bus, full body: the OpenCV HOG people
detector finds them) and then over ``zidane.jpg`` (two men, upper body: found by YOLO,
rarely by HOG). The motion is smooth, so a tracker keeps each person's id across the
frames of a scene; the cut between scenes starts new tracks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

BACKGROUND = (96, 96, 96)  # BGR fill where the virtual camera sees past the photo

# One scene per photo: (file, share of the video, camera path as
# ((center_x, center_y, source_height) at start, (...) at end)) in photo pixels.
# bus.jpg is 810x1080; its two full-body people stand in x 48-344, y 398-902.
_SCENES: Tuple[Tuple[str, float, Tuple[Tuple[float, float, float], Tuple[float, float, float]]], ...] = (
    ("bus.jpg", 0.7, ((380.0, 650.0, 740.0), (220.0, 650.0, 700.0))),
    ("zidane.jpg", 0.3, ((640.0, 360.0, 720.0), (680.0, 380.0, 860.0))),
)


def _assets_dir() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.origin:
        raise FileNotFoundError("sample photos need the ultralytics package (pip install ultralytics): "
                                "it ships assets/bus.jpg and assets/zidane.jpg")
    return Path(spec.origin).parent / "assets"


def sample_images() -> List[Path]:
    """Return the real photos with people bundled with ultralytics: [bus.jpg, zidane.jpg].

    Raises:
        FileNotFoundError: ultralytics or its assets are missing (names what was looked for).
    """
    d = _assets_dir()
    paths = [d / "bus.jpg", d / "zidane.jpg"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"bundled sample photos missing: {', '.join(missing)} "
                                "(reinstall ultralytics; its package ships them under ultralytics/assets)")
    return paths


def _smooth(t: float) -> float:
    """Ease-in-out in [0, 1] so the camera starts and stops gently."""
    return t * t * (3.0 - 2.0 * t)


def render_view(photo: np.ndarray, center: Tuple[float, float], source_height: float,
                size: Tuple[int, int]) -> np.ndarray:
    """Render the (width, height) = size view of a virtual camera centred on ``center``.

    ``center`` is in photo pixels; the camera sees ``source_height`` photo pixels
    vertically (sub-pixel, no jitter).
    """
    w, h = size
    s = h / float(source_height)
    cx, cy = center
    m = np.array([[s, 0.0, w / 2.0 - s * cx], [0.0, s, h / 2.0 - s * cy]], dtype=np.float64)
    interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(photo, m, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND)


def make_sample_video(path, *, seconds: float = 6.0, fps: int = 15, size: Tuple[int, int] = (960, 540),
                      scenes: Sequence = _SCENES) -> Path:
    """Write a sample mp4 (mp4v) of people from the bundled photos, moving smoothly.

    Args:
        path: output file (parent folders are created).
        seconds: duration.
        fps: frame rate.
        size: (width, height) of the frames.
        scenes: the camera script (default: bus.jpg then zidane.jpg).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: the bundled photos are missing.
        RuntimeError: OpenCV cannot write mp4v here.
    """
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be > 0, got seconds={seconds}, fps={fps}")
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16:
        raise ValueError(f"size too small: {size}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    photos = {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sample_images()}
    for name, img in photos.items():
        if img is None:
            raise FileNotFoundError(f"cannot decode bundled photo {name}")
    total = max(1, int(round(seconds * fps)))
    shares = np.array([s[1] for s in scenes], dtype=np.float64)
    counts = np.floor(shares / shares.sum() * total).astype(int)
    counts[0] += total - counts.sum()

    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {out}")
    try:
        for (name, _share, (start, end)), n in zip(scenes, counts):
            photo = photos[name]
            for i in range(int(n)):
                t = _smooth(i / max(1, n - 1))
                cx, cy, sh = (a + (b - a) * t for a, b in zip(start, end))
                writer.write(render_view(photo, (cx, cy), sh, (w, h)))
    finally:
        writer.release()
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"OpenCV wrote nothing to {out} (mp4v encoder missing?)")
    return out


if __name__ == "__main__":  # python -m person_search.demo.sample out.mp4
    import sys

    print(make_sample_video(sys.argv[1] if len(sys.argv) > 1 else "sample.mp4"))

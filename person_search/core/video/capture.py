"""What a video source string names, and how a capture for it is opened."""

from __future__ import annotations

import os
from typing import Any, Callable, Union

import cv2
import numpy as np

CaptureTarget = Union[int, str]
CaptureFactory = Callable[[CaptureTarget], Any]


class SourceError(RuntimeError):
    """A video source cannot be opened, or a live source was lost for good."""


def source_kind(source: str) -> str:
    """Classify a source string: "device", "url", "folder" or "file"."""
    s = source.strip()
    if s.isdigit() or s.startswith("/dev/video"):
        return "device"
    if "://" in s:
        return "url"
    if os.path.isdir(s):
        return "folder"
    return "file"


def capture_target(source: str) -> CaptureTarget:
    """Return the ``cv2.VideoCapture`` argument for ``source``: a camera index as int, else the string."""
    s = source.strip()
    return int(s) if s.isdigit() else s


def default_capture_factory(read_timeout_s: float = 5.0) -> CaptureFactory:
    """Make ``cv2.VideoCapture`` factories with open/read timeouts for network streams.

    A dead server then does not hang the grabber for FFmpeg's default (minutes).
    """
    ms = int(max(read_timeout_s, 0.5) * 1000)

    def make(target: CaptureTarget):
        if isinstance(target, str) and "://" in target:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(target)

    return make


def drop_cap(cap: Any) -> None:
    """Release a capture, ignoring the errors of a broken one."""
    if cap is not None:
        try:
            cap.release()
        except Exception:  # noqa: BLE001 - a broken capture may fail to release too
            pass


def capture_fps(cap: Any, default: float) -> float:
    """Return the frame rate a capture reports, or ``default`` where it reports none usable."""
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and 0 < fps <= 1000 else default

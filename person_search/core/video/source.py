"""`VideoSource`: one source's public API and shared state; `open_source`."""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional

import cv2
import numpy as np

from person_search.core.config import VideoConfig
from person_search.core.types import Frame
from person_search.core.video.capture import (CaptureFactory, SourceError, capture_target, default_capture_factory,
                                              drop_cap, source_kind)
from person_search.core.video.files import FOLDER_DEFAULT_FPS, MediaReader
from person_search.core.video.live import LiveReader

log = logging.getLogger(__name__)


class VideoSource(MediaReader, LiveReader):
    """Frames from one source. Use `open_source`; iterate, or call `read()` in a loop.

    Not thread-safe for concurrent ``read()`` calls (one consumer per source).
    """

    def __init__(self, cfg: VideoConfig, capture_factory: Optional[CaptureFactory] = None):
        cfg.validate()
        if not str(cfg.source).strip():
            raise SourceError("video.source is empty: give a file, a folder, a camera index or /dev/videoN, or a URL")
        self.cfg = cfg
        self.source = str(cfg.source).strip()
        self.kind = source_kind(self.source)
        self._factory: CaptureFactory = capture_factory or default_capture_factory(cfg.read_timeout_s)
        self._wall_at_open_ns = time.time_ns()
        self._mono_at_open_ns = time.monotonic_ns()
        self._last_stamp = 0
        self._stamp_lock = threading.Lock()
        self._index = 0
        self._frames = 0
        self._dropped = 0
        self._corrupt = 0
        self._reconnects = 0
        self._reconnect_attempts = 0
        self._loops = 0
        self._closed = False
        self._ended = False
        self._lock = threading.Condition(threading.Lock())
        self._native_fps = 0.0
        self._frame_count = 0
        # file / folder state
        self._cap: Any = None
        self._pending: Optional[tuple] = None  # first frame, read at open to validate the file
        self._files: List[Path] = []
        self._file_pos = 0
        self._pace_t0 = 0.0  # realtime files: monotonic time when video time _pace_v0_ms is due
        self._pace_v0_ms = -1.0
        self._start_ns: Optional[int] = None  # wall time of video time 0 (set at the first frame)
        self._seen_loops = 0
        self._loop_base_ms = 0.0  # video time where the current pass of a looping file starts
        self._pass_last_ms = -1.0
        self._last_t_ms = 0.0
        self._last_bucket = -1  # fps sampling of files: the last (video second x fps) slot kept
        self._sampled_out = 0
        self._late = 0  # realtime files: frames found late (the next one already due) and dropped
        self._reanchors = 0  # realtime files: the decoder fell a second behind; the video clock moved on
        # live state
        self._latest: Optional[tuple] = None  # (image, stamp_ns)
        self._latest_seq = 0
        self._taken_seq = 0
        self._gen = 0
        self._state = "reading"
        self._failure: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._next_due = 0.0
        self.backoff_history: Deque[float] = collections.deque(maxlen=64)  # delays actually waited, s

        if self.kind == "folder":
            self._open_folder()
        elif self.kind == "file":
            self._open_file()
        else:
            self._open_live()
        log.info("video source %r opened: %s, %.1f fps%s%s", self.source, self.kind, self.fps,
                 ", loop" if cfg.loop and self.kind in ("file", "folder") else "",
                 ", realtime" if cfg.realtime and self.kind in ("file", "folder") else "")

    # ------------------------------------------------------------------ public API
    @property
    def fps(self) -> float:
        """Return the delivery rate.

        cfg.fps if set, else the source's own (30 for folders; 0 if a live source does
        not report one).
        """
        if self.kind == "file" and self.cfg.fps > 0 and self._native_fps > 0:
            return min(float(self.cfg.fps), self._native_fps)
        if self.cfg.fps > 0:
            return float(self.cfg.fps)
        if self.kind == "folder":
            return FOLDER_DEFAULT_FPS
        return self._native_fps

    @property
    def frame_count(self) -> int:
        """Frames in a file (as the container reports it) or images in a folder; 0 for live."""
        if self.kind == "folder":
            return len(self._files)
        if self.kind == "file":
            return self._frame_count
        return 0

    @property
    def duration_s(self) -> float:
        """Length of a file (frame count / its rate) or folder (images / fps) in seconds; 0 if unknown or live."""
        rate = self._native_fps if self.kind == "file" else self.fps
        return self.frame_count / rate if rate > 0 and self.frame_count > 0 else 0.0

    @property
    def ended(self) -> bool:
        """True once a non-looping file/folder is exhausted or the source is closed."""
        return self._ended or self._closed

    @property
    def is_live(self) -> bool:
        return self.kind in ("device", "url")

    def stats(self) -> Dict[str, Any]:
        """Return the counters.

        Frames delivered, dropped (all frames not delivered: live, grabbed but never taken;
        files, sampled out by ``fps`` or late), late (realtime files: not deliverable in
        time), reanchors, corrupt (undecodable frames skipped), reconnects (successful),
        reconnect_attempts, loops.
        """
        with self._lock:
            return {
                "frames": self._frames,
                "dropped": self._dropped + self._sampled_out + self._late,
                "late": self._late,
                "reanchors": self._reanchors,
                "corrupt": self._corrupt,
                "reconnects": self._reconnects,
                "reconnect_attempts": self._reconnect_attempts,
                "loops": self._loops,
                "state": "closed" if self._closed else ("ended" if self._ended else self._state),
            }

    def read(self) -> Optional[Frame]:
        """Return the next frame.

        Returns:
            A `Frame`; None at the end of a non-looping file/folder (then ``ended`` is True),
            or, for a live source, when no frame came within ``read_timeout_s`` (the stream is
            then treated as lost and reconnects in the background; call again).

        Raises:
            SourceError: a live source that gave up reconnecting (``max_reconnects``), or
                reading a closed source.
        """
        if self._closed:
            raise SourceError(f"video source {self.source!r} is closed")
        if self._ended:
            return None
        if self.is_live:
            return self._read_live()
        return self._read_media()

    def close(self) -> None:
        """Stop the grabber and release the capture. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._lock:
            self._gen += 1
            self._lock.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        self._release_cap()

    def __iter__(self):
        return self

    def __next__(self) -> Frame:
        while True:
            if self.ended:
                raise StopIteration
            frame = self.read()
            if frame is not None:
                return frame

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ helpers
    def _stamp(self) -> int:
        with self._stamp_lock:
            s = self._wall_at_open_ns + (time.monotonic_ns() - self._mono_at_open_ns)
            if s <= self._last_stamp:
                s = self._last_stamp + 1
            self._last_stamp = s
            return s

    def _make_frame(self, image: np.ndarray, stamp: int, pos_ms: float = -1.0) -> Frame:
        image = downscale(image, self.cfg.max_width)
        f = Frame(image=image, stamp_ns=stamp, source_id=self.cfg.source_id, index=self._index, pos_ms=pos_ms)
        self._index += 1
        with self._lock:
            self._frames += 1
        return f

    def _release_cap(self) -> None:
        cap, self._cap = self._cap, None
        drop_cap(cap)

    def _open_cap(self):
        try:
            cap = self._factory(capture_target(self.source))
        except Exception as e:  # noqa: BLE001 - any backend error means "cannot open"
            log.debug("capture factory failed for %r: %s", self.source, e)
            return None
        if cap is None or not cap.isOpened():
            drop_cap(cap)
            return None
        return cap


def downscale(image: np.ndarray, max_width: int) -> np.ndarray:
    """Shrink ``image`` to at most ``max_width`` pixels wide, keeping its aspect (0 = as is)."""
    h, w = image.shape[:2]
    if max_width <= 0 or w <= max_width:
        return image
    size = (int(max_width), max(1, int(round(h * max_width / w))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def open_source(cfg: VideoConfig, capture_factory: Optional[CaptureFactory] = None) -> VideoSource:
    """Open a video source.

    Args:
        cfg: the video section of the config (``source`` is a file, image folder, camera
            index "0" or /dev/videoN, or an rtsp:// / http:// URL).
        capture_factory: makes a ``cv2.VideoCapture``-like object from an int index or a
            string (tests inject failures here); default ``cv2.VideoCapture`` with timeouts.

    Raises:
        SourceError: the source cannot be opened or decoded (the message names it).
    """
    return VideoSource(cfg, capture_factory=capture_factory)

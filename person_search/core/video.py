"""Video sources: files, V4L2 cameras, RTSP/HTTP streams and image folders, as `Frame`s.

All sources go through OpenCV (``cv2.VideoCapture``; folders through ``cv2.imread``).

* Files and folders are read on the caller's thread and run on the video's own clock: a
  frame is stamped ``start + its position in the video`` (``CAP_PROP_POS_MSEC``, or index /
  fps where the container gives no usable time; a loop continues after the last frame),
  where ``start`` is the wall time when the first frame is read. Results and time windows
  then name times in the video, and every rate budget downstream counts video seconds,
  whether the file is read as fast as possible or paced. ``fps`` (when below the file's
  rate) samples a file: at most ``fps`` frames per video second are kept, the rest dropped
  (an image folder plays at ``fps``, default 30). ``realtime=True`` paces frames so that
  each is delivered at ``start + position`` (live-like); ``loop=True`` restarts them at
  the end. A frame that does not decode is skipped with a warning and counted
  (``stats()["corrupt"]``).
* Live sources (cameras, URLs) are read by a background grabber thread that keeps only
  the latest frame (frames the caller did not take in time are dropped, never queued).
  ``read()`` waits at most ``read_timeout_s``; after that the stream is treated as lost
  and the grabber reconnects with exponential backoff (``reconnect_initial_s`` doubling up
  to ``reconnect_max_s``, at most ``max_reconnects`` attempts in a row; -1 = forever).
  The frame index keeps counting across reconnects.

Live frames are stamped at capture on a monotonic clock anchored to the wall clock at open:
``wall_at_open_ns + (time.monotonic_ns() - mono_at_open_ns)``. Stamps strictly increase.

A source that cannot be opened (missing file, undecodable file, empty folder, camera or
URL that does not answer) raises `SourceError` naming it, at open time.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Union

import cv2
import numpy as np

from .config import VideoConfig
from .types import Frame

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
FOLDER_DEFAULT_FPS = 30.0  # pacing rate of an image folder when realtime and fps == 0
FILE_DEFAULT_FPS = 30.0  # when a file does not report a usable rate
MAX_CONSECUTIVE_CORRUPT = 50  # a file with this many undecodable frames in a row has ended

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


def _capture_target(source: str) -> CaptureTarget:
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


def _valid_image(img: Any) -> bool:
    return (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.size > 0
            and img.dtype == np.uint8)


def _to_bgr(img: Any) -> Optional[np.ndarray]:
    """Convert decoded images to BGR uint8 (H, W, 3); None if they cannot be."""
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
    return img if _valid_image(img) else None


class VideoSource:
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
        self._pace_t0 = 0.0  # monotonic time when video time _pace_v0_ms is due
        self._pace_v0_ms = -1.0
        self._start_ns: Optional[int] = None  # wall time of video time 0 (set at the first frame)
        self._seen_loops = 0
        self._loop_base_ms = 0.0  # video time where the current pass of a looping file starts
        self._pass_last_ms = -1.0
        self._last_t_ms = 0.0
        self._last_bucket = -1  # fps sampling of files: the last (video second x fps) slot kept
        self._sampled_out = 0
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

        Frames delivered, dropped (live: grabbed but never taken; files: sampled out by
        ``fps``), corrupt (undecodable frames skipped), reconnects (successful),
        reconnect_attempts, loops.
        """
        with self._lock:
            return {
                "frames": self._frames,
                "dropped": self._dropped + self._sampled_out,
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
        f = Frame(image=image, stamp_ns=stamp, source_id=self.cfg.source_id, index=self._index, pos_ms=pos_ms)
        self._index += 1
        with self._lock:
            self._frames += 1
        return f

    def _release_cap(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:
                pass

    # ------------------------------------------------------------------ files and folders
    def _open_folder(self) -> None:
        folder = Path(self.source)
        self._files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self._files:
            raise SourceError(f"video source {self.source!r}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        self._native_fps = FOLDER_DEFAULT_FPS

    def _open_file(self) -> None:
        path = Path(self.source)
        if not path.exists():
            raise SourceError(f"video source {self.source!r}: file not found")
        if not path.is_file():
            raise SourceError(f"video source {self.source!r}: not a regular file")
        if not os.access(path, os.R_OK):
            raise SourceError(f"video source {self.source!r}: file not readable (permissions)")
        self._cap = self._open_cap()
        if self._cap is None:
            raise SourceError(f"video source {self.source!r}: OpenCV cannot open it (not a video, or no codec)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._native_fps = fps if np.isfinite(fps) and 0 < fps <= 1000 else FILE_DEFAULT_FPS
        count = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self._frame_count = int(count) if np.isfinite(count) and count > 0 else 0
        first = self._next_file_frame(at_open=True)
        if first is None:
            self._release_cap()
            raise SourceError(f"video source {self.source!r}: no decodable frame (corrupt or empty video)")
        self._pending = first

    def _open_cap(self):
        try:
            cap = self._factory(_capture_target(self.source))
        except Exception as e:  # noqa: BLE001 - any backend error means "cannot open"
            log.debug("capture factory failed for %r: %s", self.source, e)
            return None
        if cap is None or not cap.isOpened():
            self._drop_cap(cap)
            return None
        return cap

    def _next_file_frame(self, at_open: bool = False) -> Optional[tuple]:
        """(image, pos_ms) of the next decodable frame of the file, or None at its end."""
        bad = 0
        while bad < MAX_CONSECUTIVE_CORRUPT:
            ok, img = self._cap.read()
            img = _to_bgr(img) if ok else None
            if img is not None:
                pos = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
                return img, pos
            if not ok and not self._file_has_more():
                return None
            bad += 1
            if not at_open:
                with self._lock:
                    self._corrupt += 1
                log.warning("video source %r: undecodable frame near %.0f ms skipped", self.source,
                            float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0))
        log.warning("video source %r: %d undecodable frames in a row; treating as the end", self.source, bad)
        return None

    def _file_has_more(self) -> bool:
        try:
            count = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
            pos = float(self._cap.get(cv2.CAP_PROP_POS_FRAMES) or 0.0)
        except Exception:
            return False
        return count > 0 and pos < count - 1

    def _restart_file(self) -> bool:
        self._release_cap()
        self._cap = self._open_cap()
        return self._cap is not None

    def _media_next(self) -> Optional[tuple]:
        """(image, pos_ms) of the next file/folder frame, handling loop; None at the end."""
        for _attempt in range(2):  # at most one restart per call
            if self.kind == "folder":
                while self._file_pos < len(self._files):
                    p = self._files[self._file_pos]
                    i = self._file_pos
                    self._file_pos += 1
                    img = _to_bgr(cv2.imread(str(p), cv2.IMREAD_UNCHANGED))
                    if img is not None:
                        return img, i * 1000.0 / self.fps
                    with self._lock:
                        self._corrupt += 1
                    log.warning("video source %r: cannot decode image %s; skipped", self.source, p.name)
                got = None
            else:
                if self._pending is not None:
                    got, self._pending = self._pending, None
                    return got
                got = self._next_file_frame() if self._cap is not None else None
            if got is not None:
                return got
            if not self.cfg.loop:
                return None
            with self._lock:
                self._loops += 1
            if self.kind == "folder":
                self._file_pos = 0
            elif not self._restart_file():
                log.warning("video source %r: cannot reopen for looping", self.source)
                return None
        return None

    def _read_media(self) -> Optional[Frame]:
        while True:
            got = self._media_next()
            if got is None:
                self._ended = True
                self._release_cap()
                return None
            img, pos_ms = got
            t_ms = self._video_time_ms(pos_ms)
            if self._keep(t_ms):
                break
        if self.cfg.realtime:
            self._pace(t_ms)
        if self._start_ns is None:
            self._start_ns = time.time_ns() - int(t_ms * 1e6)
        stamp = max(self._start_ns + int(round(t_ms * 1e6)), self._last_stamp + 1)
        self._last_stamp = stamp
        return self._make_frame(img, stamp, pos_ms)

    def _frame_period_ms(self) -> float:
        rate = self._native_fps if self.kind == "file" else self.fps
        return 1000.0 / (rate if rate > 0 else FILE_DEFAULT_FPS)

    def _video_time_ms(self, pos_ms: float) -> float:
        """Video time of a file/folder frame: its position, continued across loops, strictly increasing."""
        period = self._frame_period_ms()
        if self._loops != self._seen_loops:  # restarted: the new pass follows the last frame
            self._seen_loops = self._loops
            self._loop_base_ms = self._last_t_ms + period
            self._pass_last_ms = -1.0
        if not np.isfinite(pos_ms) or pos_ms < 0 or (self._pass_last_ms >= 0 and pos_ms <= self._pass_last_ms):
            pos_ms = self._pass_last_ms + period if self._pass_last_ms >= 0 else 0.0  # no usable container time
        self._pass_last_ms = pos_ms
        self._last_t_ms = self._loop_base_ms + pos_ms
        return self._last_t_ms

    def _keep(self, t_ms: float) -> bool:
        """Sample a file to at most ``fps`` frames per video second (True = deliver)."""
        if self.kind != "file" or self.cfg.fps <= 0:
            return True
        bucket = int(np.floor(t_ms * self.cfg.fps / 1000.0 + 1e-3))
        if bucket <= self._last_bucket:
            with self._lock:
                self._sampled_out += 1
            return False
        self._last_bucket = bucket
        return True

    def _pace(self, t_ms: float) -> None:
        """Sleep until video time ``t_ms`` is due (start + position); re-anchor when far behind."""
        now = time.monotonic()
        if self._pace_v0_ms < 0:
            self._pace_t0, self._pace_v0_ms = now, t_ms
        due = self._pace_t0 + (t_ms - self._pace_v0_ms) / 1000.0
        if due > now:
            time.sleep(due - now)
        elif now - due > 4 * self._frame_period_ms() / 1000.0:  # far behind (slow consumer): don't burst
            self._pace_t0 = now - (t_ms - self._pace_v0_ms) / 1000.0

    # ------------------------------------------------------------------ live
    def _open_live(self) -> None:
        cap = self._open_cap()
        if cap is None:
            raise SourceError(f"video source {self.source!r}: cannot open {self.kind} (not connected, "
                              f"no permission, or server not answering)")
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._native_fps = fps if np.isfinite(fps) and 0 < fps <= 1000 else 0.0
        self._start_grabber(cap, reconnect_first=False)

    def _start_grabber(self, cap: Any, reconnect_first: bool) -> None:
        with self._lock:
            self._gen += 1
            gen = self._gen
            self._state = "reconnecting" if reconnect_first else "reading"
        self._cap = None  # the grabber owns its capture
        t = threading.Thread(target=self._grab_loop, args=(gen, cap), name=f"grab[{self.cfg.source_id}]", daemon=True)
        self._thread = t
        t.start()

    def _current(self, gen: int) -> bool:
        return gen == self._gen and not self._stop.is_set()

    def _grab_loop(self, gen: int, cap: Any) -> None:
        try:
            while self._current(gen):
                if cap is None:
                    cap = self._reconnect(gen)
                    if cap is None:
                        return
                try:
                    ok, img = cap.read()
                except Exception as e:  # noqa: BLE001
                    log.warning("video source %r: read raised %s", self.source, e)
                    ok, img = False, None
                stamp = self._stamp()
                if not self._current(gen):
                    return
                img = _to_bgr(img) if ok else None
                if img is None:
                    log.warning("video source %r: stream lost (read failed); reconnecting", self.source)
                    cap = self._drop_cap(cap)
                    continue
                with self._lock:
                    if not self._current(gen):
                        return
                    if self._latest is not None and self._latest_seq > self._taken_seq:
                        self._dropped += 1
                    self._latest = (img, stamp)
                    self._latest_seq += 1
                    self._state = "reading"
                    self._lock.notify_all()
        finally:
            self._drop_cap(cap)

    @staticmethod
    def _drop_cap(cap: Any) -> None:
        if cap is not None:
            try:
                cap.release()
            except Exception:  # noqa: BLE001 - a broken capture may fail to release too
                pass

    def _reconnect(self, gen: int) -> Any:
        """Reopen the stream with exponential backoff. None when told to stop or out of attempts."""
        with self._lock:
            self._state = "reconnecting"
        delay = self.cfg.reconnect_initial_s
        attempt = 0
        while self._current(gen):
            if 0 <= self.cfg.max_reconnects <= attempt:
                msg = (f"video source {self.source!r}: lost, gave up after {attempt} reconnect attempt(s) "
                       f"(video.max_reconnects={self.cfg.max_reconnects})")
                log.error(msg)
                with self._lock:
                    if self._current(gen):
                        self._failure = msg
                        self._state = "failed"
                    self._lock.notify_all()
                return None
            self.backoff_history.append(delay)
            if self._stop.wait(delay):
                return None
            attempt += 1
            with self._lock:
                self._reconnect_attempts += 1
            cap = self._open_cap()
            if cap is not None:
                if not self._current(gen):
                    return self._drop_cap(cap)
                with self._lock:
                    self._reconnects += 1
                log.info("video source %r: reconnected (attempt %d)", self.source, attempt)
                return cap
            log.warning("video source %r: reconnect attempt %d failed; next in %.2f s", self.source, attempt,
                        min(delay * 2, self.cfg.reconnect_max_s))
            delay = min(delay * 2, self.cfg.reconnect_max_s)
        return None

    def _read_live(self) -> Optional[Frame]:
        if self.cfg.fps > 0 and self._next_due > 0:
            wait = self._next_due - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # frames grabbed meanwhile are overwritten: drop, not queue
        deadline = time.monotonic() + self.cfg.read_timeout_s
        img: Optional[np.ndarray] = None
        stamp = 0
        with self._lock:
            while True:
                if self._failure is not None:
                    raise SourceError(self._failure)
                if self._closed:
                    return None
                if self._latest_seq > self._taken_seq:
                    img, stamp = self._latest
                    self._taken_seq = self._latest_seq
                    self._latest = None
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
        return self._after_live_wait(img, stamp)

    def _after_live_wait(self, img: Optional[np.ndarray], stamp: int) -> Optional[Frame]:
        if img is None:
            self._declare_lost()
            return None
        if self.cfg.fps > 0:
            now = time.monotonic()
            period = 1.0 / self.cfg.fps
            nxt = self._next_due + period if self._next_due > 0 else now + period
            self._next_due = nxt if nxt >= now else now + period
        return self._make_frame(img, stamp, -1.0)

    def _declare_lost(self) -> None:
        """Handle no frame within read_timeout_s.

        If the grabber is (maybe stuck) reading, replace it by a fresh one that
        reconnects; a stuck ``cap.read()`` is abandoned, not awaited.
        """
        with self._lock:
            if self._state != "reading" or self._closed:
                return
        log.warning("video source %r: no frame for %.1f s; treating the stream as lost", self.source,
                    self.cfg.read_timeout_s)
        self._start_grabber(None, reconnect_first=True)


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

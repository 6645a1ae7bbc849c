"""Files and image folders, read on the caller's thread: on the video's clock (offline) or played like a camera."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from person_search.core.imaging import to_bgr
from person_search.core.types import Frame
from person_search.core.video.capture import SourceError, capture_fps

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
FOLDER_DEFAULT_FPS = 30.0  # pacing rate of an image folder when realtime and fps == 0
FILE_DEFAULT_FPS = 30.0  # when a file does not report a usable rate
MAX_CONSECUTIVE_CORRUPT = 50  # a file with this many undecodable frames in a row has ended


class MediaReader:
    """The file / folder half of `VideoSource` (a mixin: the state lives in `VideoSource`)."""

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
        self._native_fps = capture_fps(self._cap, FILE_DEFAULT_FPS)
        count = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self._frame_count = int(count) if np.isfinite(count) and count > 0 else 0
        first = self._next_file_frame(at_open=True)
        if first is None:
            self._release_cap()
            raise SourceError(f"video source {self.source!r}: no decodable frame (corrupt or empty video)")
        self._pending = first

    def _next_file_frame(self, at_open: bool = False) -> Optional[tuple]:
        """(image, pos_ms) of the next decodable frame of the file, or None at its end."""
        bad = 0
        while bad < MAX_CONSECUTIVE_CORRUPT:
            ok, img = self._cap.read()
            img = to_bgr(img) if ok else None
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
                    img = to_bgr(cv2.imread(str(p), cv2.IMREAD_UNCHANGED))
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

    def _next_kept(self) -> Optional[tuple]:
        """(image, pos_ms, video time ms) of the next frame that ``fps`` sampling keeps; None at the end."""
        while True:
            got = self._media_next()
            if got is None:
                self._ended = True
                self._release_cap()
                return None
            img, pos_ms = got
            t_ms = self._video_time_ms(pos_ms)
            if self._keep(t_ms):
                return img, pos_ms, t_ms

    def _read_media(self) -> Optional[Frame]:
        if self.cfg.realtime:
            return self._read_media_live()
        got = self._next_kept()
        if got is None:
            return None
        img, pos_ms, t_ms = got
        if self._start_ns is None:
            self._start_ns = time.time_ns() - int(t_ms * 1e6)
        stamp = max(self._start_ns + int(round(t_ms * 1e6)), self._last_stamp + 1)
        self._last_stamp = stamp
        return self._make_frame(img, stamp, pos_ms)

    def _read_media_live(self) -> Optional[Frame]:
        """Play the file like a camera: frame at video time v is due at t0 + v on the wall clock.

        A frame is delivered when it is due (sleeping until then), stamped at that moment on
        the capture clock (as a camera's grabber stamps). A frame found late, when the next
        one is already due, is dropped and counted (``late``): frames are never queued, so
        the stamps never fall behind the wall clock whatever the decoder or the consumer
        manage. Where dropping does not catch up (the decoder itself is slower than the
        video: a frame is later than the one dropped before it), or after ``rate`` drops in
        a row, the frame is delivered and the video clock re-anchored (``reanchors``): the
        file then plays at the rate the decoder manages, like a slow camera.
        """
        period_s = 1.0 / max(self.fps, 1e-9)
        late_run = 0
        prev_late = None
        while True:
            got = self._next_kept()
            if got is None:
                return None
            img, pos_ms, t_ms = got
            now = time.monotonic()
            if self._pace_v0_ms < 0:
                self._pace_t0, self._pace_v0_ms = now, t_ms
            due = self._pace_t0 + (t_ms - self._pace_v0_ms) / 1000.0
            if due > now:
                time.sleep(due - now)
                break
            if now < due + period_s:  # late, but the next frame is not due yet: still the newest
                break
            lateness = now - due
            if late_run >= max(1, int(round(self.fps))) or (prev_late is not None and lateness >= prev_late):
                self._pace_t0 = now - (t_ms - self._pace_v0_ms) / 1000.0  # dropping does not catch up
                with self._lock:
                    self._reanchors += 1
                break
            late_run += 1
            prev_late = lateness
            with self._lock:
                self._late += 1
        return self._make_frame(img, self._stamp(), pos_ms)

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

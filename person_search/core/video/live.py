"""Live sources (cameras, URLs): a grabber thread keeping the latest frame, reconnect with backoff."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

import numpy as np

from person_search.core.imaging import to_bgr
from person_search.core.types import Frame
from person_search.core.video.capture import SourceError, capture_fps, drop_cap

log = logging.getLogger(__name__)


class LiveReader:
    """The live half of `VideoSource` (a mixin: the state lives in `VideoSource`)."""

    def _open_live(self) -> None:
        cap = self._open_cap()
        if cap is None:
            raise SourceError(f"video source {self.source!r}: cannot open {self.kind} (not connected, "
                              f"no permission, or server not answering)")
        self._cap = cap
        self._native_fps = capture_fps(cap, 0.0)
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
                img = to_bgr(img) if ok else None
                if img is None:
                    log.warning("video source %r: stream lost (read failed); reconnecting", self.source)
                    cap = drop_cap(cap)
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
            drop_cap(cap)

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
                    return drop_cap(cap)
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

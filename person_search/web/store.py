"""What the console keeps in memory: images by opaque id, track timelines, stage health (ROS-free).

Images are only ever served from :class:`ImageStore`, under random ids handed out when an
answer of the graph arrives: no route takes a path, so there is nothing to traverse.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

ID_CHARS = 16  # secrets.token_urlsafe(12) -> 16 characters of [A-Za-z0-9_-]


class ImageStore:
    """JPEG bytes under opaque ids, least recently used first out, within a byte budget.

    Thread-safe: the ROS thread puts, the HTTP thread gets.
    """

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self._items: "OrderedDict[str, bytes]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its new id ("" when it is empty or larger than the budget)."""
        if not data or len(data) > self.budget:
            return ""
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = bytes(data)
            self._bytes += len(data)
            while self._bytes > self.budget:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return key

    def get(self, key: str) -> Optional[bytes]:
        """Return the bytes under ``key`` (None when unknown or evicted)."""
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes


@dataclass
class TimelinePoint:
    """One moment of a track: its crop (and the frame thumbnail) at ``stamp_ns``."""

    stamp_ns: int
    crop_id: str
    frame_id: str
    box: Tuple[float, float, float, float]
    frame_size: Tuple[int, int]  # width, height of the source frame (the box's pixels)


@dataclass
class _Line:
    points: List[TimelinePoint] = field(default_factory=list)
    gap_ns: int = 0


class Timelines:
    """A few crops per track spread over its life, as the detectors published them.

    A point is kept at most every ``gap`` of source time; when a track holds ``max_points``,
    every other point goes and the gap doubles, so the points stay spread from the first
    sighting to the last. At most ``max_tracks`` tracks (least recently seen out first).
    """

    def __init__(self, images: ImageStore, *, max_points: int = 16, max_tracks: int = 2000,
                 min_gap_s: float = 0.5):
        self.images = images
        self.max_points = max(2, int(max_points))
        self.max_tracks = int(max_tracks)
        self.min_gap_ns = int(min_gap_s * 1e9)
        self._lines: "OrderedDict[Tuple[str, int], _Line]" = OrderedDict()
        self._lock = threading.Lock()

    def wants(self, camera: str, track_id: int, stamp_ns: int) -> bool:
        """Return True when a crop of this track at ``stamp_ns`` would be kept (saves storing it otherwise)."""
        with self._lock:
            line = self._lines.get((camera, track_id))
            return line is None or not line.points or stamp_ns - line.points[-1].stamp_ns >= max(
                line.gap_ns, self.min_gap_ns)

    def add(self, camera: str, track_id: int, point: TimelinePoint) -> None:
        """Append ``point`` to the track's line (thinning it when full)."""
        with self._lock:
            key = (camera, int(track_id))
            line = self._lines.get(key)
            if line is None:
                line = self._lines[key] = _Line(gap_ns=self.min_gap_ns)
            self._lines.move_to_end(key)
            if line.points and point.stamp_ns - line.points[-1].stamp_ns < line.gap_ns:
                return
            line.points.append(point)
            if len(line.points) > self.max_points:
                line.points = line.points[::2] if len(line.points) % 2 else line.points[::2] + [line.points[-1]]
                line.gap_ns *= 2
            while len(self._lines) > self.max_tracks:
                self._lines.popitem(last=False)

    def points(self, camera: str, track_id: int) -> List[TimelinePoint]:
        """Return the track's points whose crops are still in memory, oldest first."""
        with self._lock:
            line = self._lines.get((camera, int(track_id)))
            pts = list(line.points) if line else []
        return [p for p in pts if p.crop_id in self.images]

    def __len__(self) -> int:
        return len(self._lines)


def _ns(t) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def match_row(m, images: ImageStore) -> dict:
    """Return the JSON row of one PersonMatch; its crop and frame go into ``images`` under new ids.

    The re-identification fields (``person_id``, ``person_track_ids``, ``cameras``) are
    read where the message has them (graphs with re-id) and left out elsewhere.
    """
    crop, frame = images.put(bytes(m.crop.data)), images.put(bytes(m.frame.data))
    row = {"track_id": int(m.track_id), "camera": str(m.camera_frame_id), "score": round(float(m.score), 4),
           "first_seen_ns": _ns(m.first_seen), "last_seen_ns": _ns(m.last_seen),
           "box": [round(float(v), 1) for v in m.box],
           "crop_url": f"/api/images/{crop}" if crop else None,
           "frame_url": f"/api/images/{frame}" if frame else None}
    pid = getattr(m, "person_id", None)
    if pid is not None:
        row["person_id"] = int(pid) if int(pid) >= 0 else None  # -1: not linked to a person (yet)
        row["person_track_ids"] = [int(t) for t in getattr(m, "person_track_ids", [])]
        row["cameras"] = [str(c) for c in getattr(m, "cameras", [])]
    return row


OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: "ok", WARN: "warn", ERROR: "error", STALE: "stale"}
SHOWN_KEYS = ("rate_hz", "count", "drops", "errors", "latency_p50_ms", "age_p50_ms", "age_p95_ms", "gallery_size",
              "people", "model_id")


class HealthBoard:
    """The last /diagnostics status of every stage, and whether it is still coming.

    A stage that stops reporting for ``stale_s`` (a dead or hung node) is shown as
    ``stalled``; a status of level ERROR or STALE as ``error``; WARN, or drops or errors
    counted since the previous report, as ``warn``.
    """

    def __init__(self, stale_s: float = 6.0, prefix: str = ""):
        self.stale_s = float(stale_s)
        self.prefix = prefix  # only statuses named "<prefix>/..." (the graph namespace)
        self._stages: Dict[str, dict] = {}
        self._lock = threading.Lock()

    def update(self, name: str, level: int, message: str, values: Dict[str, str],
               now: Optional[float] = None) -> None:
        """Record one DiagnosticStatus."""
        if self.prefix and not name.startswith(self.prefix + "/"):
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            old = self._stages.get(name)
            self._stages[name] = {"level": int(level), "message": message, "values": dict(values), "t": now,
                                  "prev": old["values"] if old else {}}

    def snapshot(self, now: Optional[float] = None) -> dict:
        """Return ``{"status": ok|warn|bad|unknown, "gallery_size": n|None, "stages": [...]}`` for the page."""
        now = time.monotonic() if now is None else now
        with self._lock:
            items = sorted(self._stages.items())
        stages = []
        gallery: Optional[int] = None
        for name, st in items:
            age = now - st["t"]
            values = st["values"]
            grew = any(_int(values.get(k)) > _int(st["prev"].get(k)) for k in ("drops", "errors")) if st["prev"] \
                else False
            if age > self.stale_s:
                status, why = "stalled", f"no report for {age:.0f} s"
            elif st["level"] >= ERROR:
                status, why = "error", st["message"]
            elif st["level"] == WARN or grew:
                status, why = "warn", st["message"] if st["level"] == WARN else "dropping"
            else:
                status, why = "ok", st["message"]
            if "gallery_size" in values and status != "stalled":
                gallery = (gallery or 0) + _int(values["gallery_size"])
            stages.append({"name": name, "status": status, "message": why, "level": LEVEL_NAMES.get(st["level"], "?"),
                           "report_age_s": round(age, 2),
                           "values": {k: values[k] for k in SHOWN_KEYS if k in values}})
        if not stages:
            overall = "unknown"
        elif any(s["status"] in ("stalled", "error") for s in stages):
            overall = "bad"
        elif any(s["status"] == "warn" for s in stages):
            overall = "warn"
        else:
            overall = "ok"
        return {"status": overall, "gallery_size": gallery, "stale_s": self.stale_s, "stages": stages}


def _int(text) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return 0

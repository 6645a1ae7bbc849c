"""The API's query parameters: parsed, range-checked, turned into one typed request (ROS-free)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Optional

MAX_QUERY_CHARS = 1000  # QueryPerson's own limit (query.max_chars default)
MAX_TOP_K = 100  # query.max_top_k default
DEFAULT_TOP_K = 12
MAX_LAST_MIN = 366 * 24 * 60
MIN_EPOCH_S, MAX_EPOCH_S = 946684800.0, 4102444800.0  # 2000-01-01 .. 2100-01-01
CAMERA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class RequestError(ValueError):
    """A parameter is missing, malformed or out of range (HTTP 400; the message names it)."""


@dataclass(frozen=True)
class SearchParams:
    """One validated search."""

    q: str
    top_k: int = DEFAULT_TOP_K
    min_score: float = 0.0
    camera: str = ""
    last_s: float = 0.0
    since_ns: int = 0
    until_ns: int = 0
    frames: bool = True
    by: str = ""  # "", "track" or "person" (re-id graphs only)


def _number(args: Mapping[str, str], name: str, lo: float, hi: float, default: float) -> float:
    text = args.get(name, "")
    if text is None or str(text).strip() == "":
        return default
    try:
        v = float(str(text).strip())
    except ValueError:
        raise RequestError(f"{name} must be a number, got {str(text)[:40]!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise RequestError(f"{name} must be in [{lo:g}, {hi:g}], got {str(text)[:40]}")
    return v


def _integer(args: Mapping[str, str], name: str, lo: int, hi: int, default: int) -> int:
    v = _number(args, name, lo, hi, default)
    if v != int(v):
        raise RequestError(f"{name} must be a whole number, got {args.get(name)!r}")
    return int(v)


def flag(args: Mapping[str, str], name: str, default: bool) -> bool:
    """Return a boolean parameter (1/0, true/false, yes/no, on/off)."""
    text = args.get(name)
    if text is None:
        return default
    t = str(text).strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise RequestError(f"{name} must be true or false, got {str(text)[:20]!r}")


def _time_ns(args: Mapping[str, str], name: str) -> int:
    """Return a time parameter (epoch seconds or ISO 8601; naive ISO = local time) in ns, 0 when absent."""
    text = str(args.get(name, "") or "").strip()
    if not text:
        return 0
    try:
        t = float(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            raise RequestError(f"{name} must be epoch seconds or an ISO 8601 time, got {text[:40]!r}") from None
    if not math.isfinite(t) or not MIN_EPOCH_S <= t <= MAX_EPOCH_S:
        raise RequestError(f"{name} must be a time between 2000 and 2100, got {text[:40]}")
    return int(t * 1e9)


def check_camera(text: Optional[str]) -> str:
    """Return a camera name ("" = all); RequestError unless it is a ROS name of <= 64 characters."""
    cam = (text or "").strip()
    if cam and not CAMERA_RE.match(cam):
        raise RequestError("camera must be a camera name (letters, digits and _, starting with a letter)")
    return cam


def check_description(text: Optional[str]) -> str:
    """Return the description, stripped; RequestError when empty, too long or holding control characters."""
    q = (text or "").strip()
    if not q:
        raise RequestError("q (the description) is empty: say what the person looks like")
    if len(q) > MAX_QUERY_CHARS:
        raise RequestError(f"q is {len(q)} characters long; the limit is {MAX_QUERY_CHARS}")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in q):
        raise RequestError("q holds control characters")
    return q


def parse_search(args: Mapping[str, str]) -> SearchParams:
    """Validate the parameters of ``GET /api/search``.

    Args:
        args: the query string, e.g. ``{"q": "a red coat", "top_k": "12", "camera": "cam0",
            "last_min": "10", "since": "2026-12-03T08:00", "until": "", "min_score": "0.2"}``.

    Returns:
        The :class:`SearchParams`; RequestError names the first bad parameter.
    """
    q = check_description(args.get("q"))
    since, until = _time_ns(args, "since"), _time_ns(args, "until")
    if since and until and since > until:
        raise RequestError("since must not be after until")
    by = str(args.get("by", "") or "").strip().lower()
    if by not in ("", "track", "person"):
        raise RequestError(f"by must be track or person, got {by[:20]!r}")
    return SearchParams(q=q, top_k=_integer(args, "top_k", 1, MAX_TOP_K, DEFAULT_TOP_K),
                        min_score=_number(args, "min_score", -1.0, 1.0, 0.0),
                        camera=check_camera(args.get("camera")),
                        last_s=60.0 * _number(args, "last_min", 0.0, MAX_LAST_MIN, 0.0),
                        since_ns=since, until_ns=until, frames=flag(args, "frames", True), by=by)


def parse_track_id(text: str) -> int:
    """Return a track id from a URL segment (a non-negative int64)."""
    if not re.fullmatch(r"\d{1,18}", text or ""):
        raise RequestError("the track id must be a non-negative integer")
    return int(text)


def parse_top_k(args: Mapping[str, str]) -> int:
    """Return ``top_k`` of a find-similar request."""
    return _integer(args, "top_k", 1, MAX_TOP_K, DEFAULT_TOP_K)

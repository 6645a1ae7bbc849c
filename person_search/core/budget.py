"""One global crop budget for the embedder, sized to what the image tower can do.

On a CPU the image tower bounds the pipeline. Queueing every crop makes the backlog (and
the frame -> searchable latency) grow with the crowd, so the embedder admits at most
``rate`` crops per second *of video time* (frame stamps: wall time live, video time
offline) through a token bucket and drops the rest; nothing is queued. With
``crop_budget: auto`` the rate is ``headroom`` x an EWMA of the crops/s the encoder
actually achieved, so the stage keeps up on whatever machine and load it runs on.

Who gets the tokens, per frame:

1. new tracks (never embedded), longest-waiting first: a person becomes searchable within
   a few frames of appearing, however many others are in view;
2. quality upgrades: a crop ``upgrade_ratio`` x better than the best one embedded for its
   track, least recently embedded first;
3. refreshes of known tracks (more views for the gallery), least recently embedded first,
   at most ``per_track_s`` per track (0 = no per-track cap).

Tiers 2 and 3 leave a reserve of tokens for tracks still waiting for their first embedding
that are not in this frame, so refreshes never starve a newcomer. A frame that arrives
more than ``late_s`` after its stamp (live only: the caller passes the time it arrived)
means crops queue upstream: it gets new tracks only, so the stage drains at once.

The measured throughput counts the time of every call, also those that admit nothing, so
the per-frame overhead is paid out of the same budget: auto keeps the stage busy about
``headroom`` of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from person_search.core.types import PersonDetection

NEVER = -1
PENDING_WINDOW_NS = 1_000_000_000  # a not-yet-embedded track counts as waiting if seen this recently
MIN_RATE = 0.5  # auto never admits less than this many crops/s (a starved measurement could not recover)


def parse_crop_budget(value: str) -> Optional[float]:
    """Parse ``encoder.crop_budget``: "auto" -> None, "all" -> inf, else crops/s > 0.

    Raises:
        ValueError: anything else (the message names the parameter).
    """
    v = str(value).strip().lower()
    if v == "auto":
        return None
    if v == "all":
        return math.inf
    try:
        rate = float(v)
    except ValueError:
        rate = float("nan")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"encoder.crop_budget must be auto, all or a number of crops/s > 0, not {value!r}")
    return rate


@dataclass
class _Track:
    first_seen_ns: int
    last_seen_ns: int
    last_embedded_ns: int = NEVER
    best_quality: float = 0.0
    embeddings: int = 0
    searchable_after_ns: int = NEVER  # first embedding's stamp - first seen


class CropBudget:
    """Admit crops to the image tower: new tracks first, then upgrades, then refreshes.

    Args:
        rate: crops per second of stamp time; None = auto (``headroom`` x measured
            throughput, see `observe`); ``math.inf`` = no global budget.
        per_track_s: most refreshes of one track per second; 0 = no per-track cap.
        headroom: share of the measured throughput that auto admits (< 1 so the stage
            drains instead of sitting at the edge of a queue).
        burst_s: the bucket holds at most this many seconds of budget (>= 1 crop).
        upgrade_ratio: a crop this many times better than the track's best is an upgrade.
        horizon_s: tracks not seen for this long (stamp time) are forgotten.
        ewma: weight of a new throughput sample (per call).
        late_s: a frame older than this on arrival gets new tracks only.
    """

    def __init__(self, rate: Optional[float] = None, *, per_track_s: float = 0.0, headroom: float = 0.8,
                 burst_s: float = 0.5, upgrade_ratio: float = 1.5, horizon_s: float = 60.0, ewma: float = 0.1,
                 late_s: float = 1.0):
        self.fixed_rate = rate
        self.per_track_s = float(per_track_s)
        self.headroom = float(headroom)
        self.burst_s = float(burst_s)
        self.upgrade_ratio = float(upgrade_ratio)
        self.horizon_ns = int(horizon_s * 1e9)
        self.ewma = float(ewma)
        self.late_ns = int(late_s * 1e9)
        self.throughput: Optional[float] = None  # measured crops per busy second (EWMA of crops / EWMA of time)
        self._ewma_crops = 0.0
        self._ewma_s = 0.0
        self.tokens = 0.0
        self.clock_ns: Optional[int] = None
        self._tracks: Dict[Tuple[str, int], _Track] = {}
        self.first_seen_of_new: List[int] = []  # first-seen stamps of the tracks the last select() embeds first
        self.counts = {"crops_offered": 0, "crops_admitted": 0, "crops_dropped": 0, "new_tracks": 0, "upgrades": 0,
                       "refreshes": 0, "late_frames": 0}

    # ------------------------------------------------------------------ rate
    @property
    def rate(self) -> float:
        """Crops/s admitted now (inf: no budget, or auto before the first measurement)."""
        if self.fixed_rate is not None:
            return self.fixed_rate
        return math.inf if self.throughput is None else max(MIN_RATE, self.headroom * self.throughput)

    def observe(self, crops: int, seconds: float) -> None:
        """Record one call of the stage: ``crops`` embedded in ``seconds`` (0 crops: overhead only)."""
        if seconds <= 0 or (self.throughput is None and crops <= 0):
            return
        if self.throughput is None:
            self._ewma_crops, self._ewma_s = float(crops), float(seconds)
        else:
            a = self.ewma
            self._ewma_crops = (1 - a) * self._ewma_crops + a * crops
            self._ewma_s = (1 - a) * self._ewma_s + a * seconds
        self.throughput = self._ewma_crops / self._ewma_s

    # ------------------------------------------------------------------ selection
    def select(self, source_id: str, stamp_ns: int, people: Sequence[PersonDetection],
               arrived_ns: Optional[int] = None) -> List[PersonDetection]:
        """Return the people of one frame whose crops the budget admits (in input order).

        ``arrived_ns``: when the frame reached the stage (wall clock, live graphs); None offline.
        """
        self._advance(stamp_ns)
        late = arrived_ns is not None and arrived_ns - stamp_ns > self.late_ns
        self.counts["late_frames"] += int(late)
        now = self.clock_ns
        tracks = []
        for p in people:
            key = (source_id, int(p.track_id))
            t = self._tracks.get(key)
            if t is None:
                t = self._tracks[key] = _Track(first_seen_ns=stamp_ns, last_seen_ns=stamp_ns)
            t.last_seen_ns = max(t.last_seen_ns, stamp_ns)
            tracks.append(t)
        new = [i for i, t in enumerate(tracks) if t.last_embedded_ns == NEVER]
        upgrades = [i for i, t in enumerate(tracks) if t.last_embedded_ns != NEVER
                    and people[i].quality > self.upgrade_ratio * t.best_quality > 0]
        gap = int(1e9 / self.per_track_s) if self.per_track_s > 0 else 0
        refresh = [i for i, t in enumerate(tracks) if t.last_embedded_ns != NEVER and i not in upgrades
                   and stamp_ns - t.last_embedded_ns >= gap]
        new.sort(key=lambda i: tracks[i].first_seen_ns)
        upgrades.sort(key=lambda i: tracks[i].last_embedded_ns)
        refresh.sort(key=lambda i: tracks[i].last_embedded_ns)
        in_frame = {id(t) for t in tracks}
        reserve = sum(1 for t in self._tracks.values() if t.last_embedded_ns == NEVER and id(t) not in in_frame
                      and now - t.last_seen_ns <= PENDING_WINDOW_NS)
        reserve = min(reserve, self._capacity() - 1)
        chosen: Dict[int, str] = {}
        self.first_seen_of_new = []
        tiers = [("new_tracks", new, 0)]
        if not late:
            tiers += [("upgrades", upgrades, reserve), ("refreshes", refresh, reserve)]
        for tier, idx, keep in tiers:
            for i in idx:
                if self.tokens - 1 < keep - 1e-9:
                    break
                self.tokens -= 1
                chosen[i] = tier
        for i, tier in chosen.items():
            t = tracks[i]
            if t.last_embedded_ns == NEVER:
                t.searchable_after_ns = stamp_ns - t.first_seen_ns
                self.first_seen_of_new.append(t.first_seen_ns)
            t.last_embedded_ns = stamp_ns
            t.best_quality = max(t.best_quality, float(people[i].quality))
            t.embeddings += 1
            self.counts[tier] += 1
        self.counts["crops_offered"] += len(people)
        self.counts["crops_admitted"] += len(chosen)
        self.counts["crops_dropped"] += len(people) - len(chosen)
        return [p for i, p in enumerate(people) if i in chosen]

    def _capacity(self) -> float:
        r = self.rate
        return math.inf if math.isinf(r) else max(1.0, r * self.burst_s)

    def _advance(self, stamp_ns: int) -> None:
        """Move the budget's clock to ``stamp_ns`` (never backwards) and refill the bucket."""
        if self.clock_ns is None:
            self.clock_ns = stamp_ns
            self.tokens = self._capacity()
            return
        dt = max(0, stamp_ns - self.clock_ns) / 1e9
        self.clock_ns = max(self.clock_ns, stamp_ns)
        cap = self._capacity()
        self.tokens = cap if math.isinf(cap) else min(cap, self.tokens + self.rate * dt)
        if len(self._tracks) > 2000 or dt > 1.0:
            horizon = self.clock_ns - self.horizon_ns
            self._tracks = {k: t for k, t in self._tracks.items() if t.last_seen_ns >= horizon}

    # ------------------------------------------------------------------ reporting
    def state(self) -> Dict[str, float]:
        """Return the counters and the budget: for /diagnostics and benchmarks.

        ``pending`` = tracks seen within the last second that have no embedding yet (the
        backlog of people not searchable); ``late`` = tracks seen for >= 2 s without one.
        """
        now = self.clock_ns or 0
        waiting = [t for t in self._tracks.values() if t.last_embedded_ns == NEVER]
        r = self.rate
        return {
            **self.counts,
            "budget_crops_s": round(r, 2) if math.isfinite(r) else "all" if self.fixed_rate else "unmeasured",
            "throughput_crops_s": round(self.throughput, 2) if self.throughput is not None else 0.0,
            "tracks": len(self._tracks),
            "pending": sum(1 for t in waiting if now - t.last_seen_ns <= PENDING_WINDOW_NS),
            "late": sum(1 for t in waiting if t.last_seen_ns - t.first_seen_ns >= 2_000_000_000),
        }

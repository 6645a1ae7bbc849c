"""Per-track aggregation: which embeddings of a track are kept (at most K, diverse ones).

A track is keyed by ``(source_id, track_id)``. For each new embedding of a track
(:func:`choose`):

1. if its cosine to a kept embedding of the track is ``>= diversity`` it is a near
   duplicate: it is not added (``last_seen`` still moves), except that when that kept
   embedding is older than half the window it is *refreshed* (the old row removed, the
   new one added) so that a person who stays in view longer than the window stays
   searchable;
2. else, if the track keeps fewer than ``max_per_track`` embeddings, it is added;
3. else (track full) the kept embedding most similar to the other kept ones is
   replaced by the new one when that makes the set more diverse (its redundancy, the
   max cosine to the others, is higher than the new embedding's max cosine to the
   kept ones); otherwise the new embedding is skipped.

A track is scored by its best embedding. It remembers first/last seen stamps, the last
box, and the JPEG crop + frame thumbnail of its best observation (highest quality).
The same rules serve the FAISS and the Milvus galleries.
"""

from __future__ import annotations

import math
from array import array
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from person_search.core.gallery.base import BatchRows, TrackInfo

# Python overhead of one track (object with slots, id array header, key tuple, dict
# entries), measured with tracemalloc on CPython 3.12; plus 8 B per kept id.
TRACK_OVERHEAD_BYTES = 450

SKIP, ADD = "skip", "add"


def choose(kept: np.ndarray, kept_stamps: np.ndarray, vec: np.ndarray, stamp: int, *, diversity: float,
           max_per_track: int, window_ns: int) -> Tuple[bool, Optional[int]]:
    """Decide what a new embedding does to its track's kept set.

    Args:
        kept: (K, D) kept embeddings of the track (K >= 0), unit rows.
        kept_stamps: (K,) their data stamps.
        vec: (D,) the new unit embedding; stamp: its data stamp.

    Returns:
        (add, remove): add the new row or not, and the index into ``kept`` of the row it
        replaces (None = none).
    """
    if kept.shape[0] == 0:
        return True, None
    sims = kept @ vec
    j = int(np.argmax(sims))
    if sims[j] >= diversity:
        if stamp - int(kept_stamps[j]) >= window_ns // 2:
            return True, j  # refresh an old near duplicate
        return False, None
    if kept.shape[0] < max_per_track:
        return True, None
    if kept.shape[0] >= 2:
        g = kept @ kept.T
        np.fill_diagonal(g, -np.inf)
        redundancy = g.max(axis=1)
        r = int(np.argmax(redundancy))
        if redundancy[r] > sims[j]:
            return True, r
    return False, None  # max_per_track == 1 and not a near duplicate: keep the first


class Track:
    """One tracked person: seen interval, last box, best thumbnails, ids of its kept rows."""

    __slots__ = ("tidx", "source_id", "track_id", "first_seen_ns", "last_seen_ns", "last_box", "best_quality",
                 "crop_jpeg", "frame_jpeg", "ids")

    def __init__(self, tidx: int, source_id: str, track_id: int, stamp_ns: int):
        self.tidx = tidx
        self.source_id = source_id
        self.track_id = track_id
        self.first_seen_ns = stamp_ns
        self.last_seen_ns = stamp_ns
        self.last_box = bytes(16)  # float32 x1, y1, x2, y2 (bytes: ~60 B instead of ~180 B as a tuple)
        self.best_quality = -math.inf
        self.crop_jpeg = b""
        self.frame_jpeg = b""
        self.ids = array("q")  # ids of the kept rows, ascending (compact: ~8 B per id)

    def observe(self, stamp: int, box: np.ndarray, quality: float) -> bool:
        """Move the seen interval and the last box; True when this is its best observation so far."""
        if stamp >= self.last_seen_ns:
            self.last_box = np.asarray(box, np.float32).tobytes()
        self.first_seen_ns = min(self.first_seen_ns, stamp)
        self.last_seen_ns = max(self.last_seen_ns, stamp)
        if quality > self.best_quality:
            self.best_quality = quality
            return True
        return False

    def passes(self, source_id: Optional[str], since_ns: Optional[int], until_ns: Optional[int]) -> bool:
        """Whether the track is of that camera and was seen inside [since_ns, until_ns]."""
        return ((source_id is None or self.source_id == source_id)
                and (since_ns is None or self.last_seen_ns >= since_ns)
                and (until_ns is None or self.first_seen_ns <= until_ns))

    def info(self) -> TrackInfo:
        box = tuple(float(x) for x in np.frombuffer(self.last_box, np.float32))
        return TrackInfo(self.source_id, self.track_id, self.first_seen_ns, self.last_seen_ns, box, len(self.ids),
                         len(self.crop_jpeg), len(self.frame_jpeg))


class TrackTable:
    """The tracks of a gallery by index (creation order) and by (source_id, track_id)."""

    def __init__(self):
        self.by_tidx: Dict[int, Track] = {}
        self.keys: Dict[Tuple[str, int], int] = {}
        self.next_tidx = 0

    def __len__(self) -> int:
        return len(self.by_tidx)

    def __iter__(self) -> Iterator[Track]:
        return iter(self.by_tidx.values())

    def __getitem__(self, tidx: int) -> Track:
        return self.by_tidx[tidx]

    def find(self, source_id: str, track_id: int) -> Optional[Track]:
        tidx = self.keys.get((source_id, int(track_id)))
        return None if tidx is None else self.by_tidx[tidx]

    def get_or_create(self, source_id: str, track_id: int, stamp: int) -> Tuple[Track, bool]:
        """Return (track, created)."""
        tr = self.find(source_id, track_id)
        if tr is not None:
            return tr, False
        tr = Track(self.next_tidx, source_id, track_id, stamp)
        self.next_tidx += 1
        self.insert(tr)
        return tr, True

    def insert(self, tr: Track) -> None:
        self.by_tidx[tr.tidx] = tr
        self.keys[(tr.source_id, tr.track_id)] = tr.tidx

    def remove_rows(self, ids: np.ndarray, tidxs: np.ndarray) -> List[Track]:
        """Forget rows; return the tracks left without rows (removed from the table)."""
        gone = []
        for rid, tidx in zip(ids.tolist(), tidxs.tolist()):
            tr = self.by_tidx.get(tidx)
            if tr is None:  # pragma: no cover - internal invariant
                continue
            tr.ids.remove(rid)
            if not tr.ids:
                gone.append(tr)
                del self.by_tidx[tidx]
                del self.keys[(tr.source_id, tr.track_id)]
        return gone

    def allowed(self, source_id: Optional[str], since_ns: Optional[int], until_ns: Optional[int]) -> np.ndarray:
        """Return the indices of the tracks that pass the filters."""
        return np.fromiter((t.tidx for t in self.by_tidx.values() if t.passes(source_id, since_ns, until_ns)),
                           np.int64)

    def memory_bytes(self, rows: int) -> int:
        return len(self.by_tidx) * TRACK_OVERHEAD_BYTES + rows * 8


class Aggregator:
    """Applies :func:`choose` to a batch: tracks, thumbnails and rows of one gallery.

    ``store`` is a :class:`~person_search.core.gallery.store.BlockStore` (gather, kill,
    append); ``thumbs`` a :class:`~person_search.core.gallery.thumbs.ThumbBudget`.
    """

    def __init__(self, store, tracks: TrackTable, thumbs, *, diversity: float, max_per_track: int, window_ns: int):
        self.store, self.tracks, self.thumbs = store, tracks, thumbs
        self.diversity, self.max_per_track, self.window_ns = diversity, max_per_track, window_ns
        self.newest_ns: Optional[int] = None

    def accept(self, stamp: int) -> bool:
        """Move the newest stamp; False for a batch already older than the window (dropped)."""
        newest = stamp if self.newest_ns is None else max(self.newest_ns, stamp)
        if stamp < newest - self.window_ns:
            return False
        self.newest_ns = newest
        return True

    def observe(self, b: BatchRows) -> Iterator[Tuple[int, Track, Optional[int], Optional[int]]]:
        """Yield (row index, track, id of the row added or None, id of the row removed or None) per row."""
        for i in range(b.vecs.shape[0]):
            tr, created = self.tracks.get_or_create(b.source_id, int(b.track_ids[i]), b.stamp)
            if not created:
                self.thumbs.touch(tr.tidx)
            if tr.observe(b.stamp, b.boxes[i], float(b.quals[i])):
                if b.crops[i]:
                    self.thumbs.set(tr, "crop_jpeg", bytes(b.crops[i]))
                if b.frame:
                    self.thumbs.set(tr, "frame_jpeg", b.frame)
            kept, kept_stamps = self.store.gather(tr.ids)
            add, remove = choose(kept, kept_stamps, b.vecs[i], b.stamp, diversity=self.diversity,
                                 max_per_track=self.max_per_track, window_ns=self.window_ns)
            removed = added = None
            if remove is not None:
                removed = tr.ids[remove]
                self.store.kill(removed)
                tr.ids.remove(removed)
            if add:
                added = self.store.append(b.vecs[i], b.stamp, tr.tidx, b.boxes[i])
                tr.ids.append(added)
            yield i, tr, added, removed

    def evict(self, now_ns: Optional[int], capacity: int) -> Tuple[np.ndarray, np.ndarray, List[Track]]:
        """Apply the window (relative to now_ns) and the capacity; return (ids, track indices, tracks gone)."""
        ids, tidx = self.store.evict(None if now_ns is None else now_ns - self.window_ns, capacity)
        gone = self.tracks.remove_rows(ids, tidx)
        for tr in gone:
            self.thumbs.drop(tr)
        return ids, tidx, gone

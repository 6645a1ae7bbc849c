"""Rolling gallery of everyone seen: CLIP image embeddings grouped by track, searchable by text.

Design
------
Vectors (L2-normalised float32, so inner product == cosine) live in a list of row
*blocks* of at most ``block_rows`` rows (4096 by default), in insertion order. Every
row has a time-ordered int64 id (a counter: ids never repeat), its data stamp, the
track it belongs to and the box of its observation. The newest block (the tail)
grows geometrically (x1.25) up to ``block_rows`` and is then sealed.

* Search is exact: one FAISS inner-product scan (``faiss.knn`` with
  ``METRIC_INNER_PRODUCT``, the same kernel as ``IndexFlatIP.search``) per block,
  with the per-block top-k merged in numpy, ranked by score then id and grouped by
  track. A row's score does not depend on where it sits in its block (FAISS computes
  each row's inner product on its own), so a snapshot round-trip, which re-chunks the
  blocks, answers identically. ``top_k * max_per_track`` candidate rows always
  hold top_k distinct tracks; when filters (camera, time) or tombstones eat them, every
  row is scored once (``faiss.fvec_inner_products_ny``: the same kernel, no heap), rows
  of tracks that fail the filters are dropped, and the candidate set is widened 4x at a
  time on that score array (at most two passes over the vectors).
  The per-block calls write into preallocated result arrays (~3 us each), so the
  cost is that of one flat scan plus the top_k * max_per_track over-fetch and ~0.2 ms
  of Python (see benchmarks/bench_gallery.py).
* Eviction is exact at the vector level: a vector is kept while
  ``stamp_ns >= now_ns - window_s`` and at most ``capacity`` vectors are kept (the
  lowest ids, i.e. the first inserted, go first). Whole blocks that are entirely too
  old are dropped (O(1)); a partially expired block is cut at its head (a view, O(1))
  or, when stamps arrived out of order, rebuilt from its kept rows (O(block_rows)).
  A block whose unused head exceeds 1/8 of its allocation is compacted (O(block_rows)).
  The cost of one eviction step is therefore O(rows evicted + block_rows + number of
  blocks) and does not grow with the gallery. Blocks are sized in rows, not seconds:
  time-sized shards become tiny at low frame rates and then slow search down.
* Memory: the vectors plus 41 bytes of metadata per row, at most ~20 % unused
  capacity in the tail block and 1/8 of a block at the head, plus the thumbnails
  (bounded by ``thumb_budget_bytes``) and a per-track overhead estimate.

Per-track aggregation
---------------------
A track is keyed by ``(source_id, track_id)``. For each new embedding of a track:

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

A track is scored by its best embedding. It remembers first/last seen stamps, the
last box, and the JPEG crop + frame thumbnail of its best observation (highest
``batch.qualities``, or detector score when the batch has none). Thumbnails are held
within ``thumb_budget_bytes``: when over budget, frame thumbnails of the least
recently seen tracks are dropped first, then crops (least recently seen first).

Removed rows (replacement, refresh) are tombstoned (zeroed, skipped by search) and a
block is compacted when a quarter of it is dead.

Snapshots are a single ``.npz`` (numeric arrays only, loaded with
``allow_pickle=False``) with a JSON metadata record, written atomically (temporary
file in the same folder + ``os.replace``).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import math
import os
import tempfile
import threading
import zipfile
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import faiss
import numpy as np

from person_search.core.config import GalleryConfig
from person_search.core.types import Box, EmbeddingBatch, TrackMatch

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "person_search.gallery"
SNAPSHOT_VERSION = 1

DEFAULT_BLOCK_ROWS = 4096
_MIN_BLOCK_ALLOC = 256
_GROWTH = 1.25
# Python overhead of one track (object with slots, id array header, key tuple, dict
# entries), measured with tracemalloc on CPython 3.12; plus 8 B per kept id and ~110 B
# per thumbnail LRU entry.
_TRACK_OVERHEAD_BYTES = 450
_LRU_ENTRY_BYTES = 110
_ROW_META_BYTES = 8 + 8 + 8 + 16 + 1  # id, stamp, track index, box, alive flag


class GalleryMismatchError(ValueError):
    """Embeddings (or a snapshot) of another model or dimension than the gallery's."""


class SnapshotError(ValueError):
    """A gallery snapshot is missing, unreadable, corrupt or of an unknown format."""


@dataclass(frozen=True)
class TrackInfo:
    """Read-only view of one track of the gallery."""

    source_id: str
    track_id: int
    first_seen_ns: int
    last_seen_ns: int
    last_box: Box
    num_embeddings: int
    crop_bytes: int
    frame_bytes: int


class _Block:
    """Rows [lo, hi) of preallocated arrays; ids ascending."""

    __slots__ = (
        "base_id",
        "vecs",
        "ids",
        "stamps",
        "tidx",
        "boxes",
        "alive",
        "lo",
        "hi",
        "dead",
        "min_stamp",
        "max_stamp",
        "sealed",
    )

    def __init__(self, base_id: int, dim: int, cap: int):
        self.base_id = base_id
        self.vecs = np.zeros((cap, dim), np.float32)
        self.ids = np.zeros(cap, np.int64)
        self.stamps = np.zeros(cap, np.int64)
        self.tidx = np.zeros(cap, np.int64)
        self.boxes = np.zeros((cap, 4), np.float32)
        self.alive = np.zeros(cap, bool)
        self.lo = 0
        self.hi = 0
        self.dead = 0
        self.min_stamp = np.iinfo(np.int64).max  # lower bound of live stamps
        self.max_stamp = np.iinfo(np.int64).min  # upper bound of live stamps
        self.sealed = False

    @property
    def cap(self) -> int:
        return int(self.ids.shape[0])

    @property
    def rows(self) -> int:
        return self.hi - self.lo

    @property
    def live(self) -> int:
        return self.hi - self.lo - self.dead

    def nbytes(self) -> int:
        return (
            self.vecs.nbytes
            + self.ids.nbytes
            + self.stamps.nbytes
            + self.tidx.nbytes
            + self.boxes.nbytes
            + self.alive.nbytes
        )

    def realloc(self, cap: int, keep: Optional[np.ndarray] = None) -> None:
        """Copy rows [lo, hi) (only those where ``keep``, if given) into arrays of ``cap`` rows."""
        sl = slice(self.lo, self.hi)
        arrays = [self.vecs[sl], self.ids[sl], self.stamps[sl], self.tidx[sl], self.boxes[sl], self.alive[sl]]
        if keep is not None:
            arrays = [a[keep] for a in arrays]
        n = int(arrays[1].shape[0])
        cap = max(cap, n)
        new = []
        for a in arrays:
            b = np.zeros((cap,) + a.shape[1:], a.dtype)
            b[:n] = a
            new.append(b)
        self.vecs, self.ids, self.stamps, self.tidx, self.boxes, self.alive = new
        self.lo, self.hi = 0, n
        self.dead = int(n - np.count_nonzero(self.alive[:n]))
        self.refresh_bounds()

    def refresh_bounds(self) -> None:
        sl = slice(self.lo, self.hi)
        st = self.stamps[sl][self.alive[sl]]
        if st.size:
            self.min_stamp, self.max_stamp = int(st.min()), int(st.max())
        else:
            self.min_stamp, self.max_stamp = np.iinfo(np.int64).max, np.iinfo(np.int64).min


class _Track:
    __slots__ = (
        "tidx",
        "source_id",
        "track_id",
        "first_seen_ns",
        "last_seen_ns",
        "last_box",
        "best_quality",
        "crop_jpeg",
        "frame_jpeg",
        "ids",
    )

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


class RollingGallery:
    """Time-windowed, capacity-bounded, exact inner-product gallery of person tracks.

    Thread-safe: every public method takes the gallery's lock.

    Args:
        cfg: gallery configuration (window_s, capacity, max_per_track, diversity,
            thumb_budget_bytes).
        dim: embedding dimension.
        model_id: identifier of the embedding model; batches of another model are refused.
        block_rows: rows per storage block (advanced; 4096 keeps search overhead
            negligible and eviction copies small).
    """

    def __init__(self, cfg: GalleryConfig, *, dim: int, model_id: str, block_rows: int = DEFAULT_BLOCK_ROWS):
        cfg.validate()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"gallery dim must be a positive integer, not {dim!r}")
        if not isinstance(model_id, str) or not model_id:
            raise ValueError(f"gallery model_id must be a non-empty string, not {model_id!r}")
        if block_rows < 16:
            raise ValueError("block_rows must be >= 16")
        self.cfg = cfg
        self.dim = int(dim)
        self.model_id = model_id
        self.block_rows = int(block_rows)
        self._window_ns = int(round(cfg.window_s * 1e9))
        self._lock = threading.Lock()
        self._blocks: List[_Block] = []
        self._bases: List[int] = []  # base_id of each block, for bisect
        self._tracks: Dict[int, _Track] = {}  # by track index, in creation order
        self._keys: Dict[Tuple[str, int], int] = {}
        self._frame_lru: "OrderedDict[int, None]" = OrderedDict()
        self._crop_lru: "OrderedDict[int, None]" = OrderedDict()
        self._thumb_bytes = 0
        self._count = 0  # live vectors
        self._next_id = 0
        self._next_tidx = 0
        self._newest_ns: Optional[int] = None
        self._n_added = 0
        self._n_evicted = 0
        self._n_searches = 0

    # ------------------------------------------------------------------ protocols
    def __len__(self) -> int:
        return self._count

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    @property
    def newest_ns(self) -> Optional[int]:
        """Newest data stamp seen (None before the first batch)."""
        return self._newest_ns

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        try:
            return (str(key[0]), int(key[1])) in self._keys
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return (f"RollingGallery(model_id={self.model_id!r}, dim={self.dim}, vectors={self._count}, "
                f"tracks={len(self._tracks)})")

    def tracks(self) -> List[TrackInfo]:
        """All tracks, oldest first (a copy: safe to iterate while adding)."""
        with self._lock:
            return [self._info(t) for t in self._tracks.values()]

    def __iter__(self) -> Iterator[TrackInfo]:
        return iter(self.tracks())

    def track(self, source_id: str, track_id: int) -> Optional[TrackInfo]:
        """Return the track ``(source_id, track_id)``, or None."""
        with self._lock:
            tidx = self._keys.get((source_id, int(track_id)))
            return None if tidx is None else self._info(self._tracks[tidx])

    def memory_bytes(self) -> int:
        """Allocated bytes: vector blocks (with row metadata) + thumbnails + per-track estimate."""
        with self._lock:
            return self._memory_locked()

    def stats(self) -> Dict[str, object]:
        with self._lock:
            oldest = min((b.min_stamp for b in self._blocks if b.live), default=None)
            return {
                "model_id": self.model_id,
                "dim": self.dim,
                "vectors": self._count,
                "tracks": len(self._tracks),
                "blocks": len(self._blocks),
                "dead_rows": sum(b.dead for b in self._blocks),
                "vector_bytes": self._count * self.dim * 4,
                "thumb_bytes": self._thumb_bytes,
                "memory_bytes": self._memory_locked(),
                "newest_ns": self._newest_ns,
                "oldest_ns_bound": oldest,  # lower bound of the oldest kept stamp
                "added_total": self._n_added,
                "evicted_total": self._n_evicted,
                "searches_total": self._n_searches,
                "window_s": self.cfg.window_s,
                "capacity": self.cfg.capacity,
            }

    # ------------------------------------------------------------------ add
    def add(self, batch: EmbeddingBatch) -> int:
        """Add one frame's embeddings; returns the number of vectors stored.

        Raises:
            GalleryMismatchError: the batch's model_id or dim differs from the gallery's.
            ValueError: malformed batch or non-finite / zero rows (nothing is changed).
        """
        vecs = self._check_batch(batch)
        n = vecs.shape[0]
        if n == 0:
            return 0
        stamp = int(batch.stamp_ns)
        source_id = str(batch.source_id)
        track_ids = np.asarray(batch.track_ids).reshape(-1).astype(np.int64)
        boxes = np.asarray(batch.boxes, np.float32).reshape(n, 4)
        quals = batch.qualities if batch.qualities is not None else batch.scores
        quals = np.asarray(quals, np.float64).reshape(-1)
        crops = list(batch.crops_jpeg) if batch.crops_jpeg else [b""] * n
        frame = bytes(batch.frame_jpeg or b"")
        with self._lock:
            newest = stamp if self._newest_ns is None else max(self._newest_ns, stamp)
            if stamp < newest - self._window_ns:
                log.debug("batch of %s at %d is older than the window; dropped", source_id, stamp)
                return 0
            self._newest_ns = newest
            added = 0
            for i in range(n):
                added += self._observe(
                    source_id, int(track_ids[i]), vecs[i], boxes[i], float(quals[i]), crops[i], frame, stamp
                )
            self._n_added += added
            self._evict_locked(self._newest_ns)
            self._enforce_thumb_budget()
            return added

    def _check_batch(self, batch: EmbeddingBatch) -> np.ndarray:
        if batch.model_id != self.model_id:
            raise GalleryMismatchError(
                f"embedding model mismatch: batch is from model {batch.model_id!r} but the gallery holds "
                f"{self.model_id!r} embeddings (clear the gallery or use the same model)"
            )
        v = np.asarray(batch.vectors)
        if v.ndim != 2:
            raise ValueError(f"batch.vectors must be 2-D (N, D), got shape {v.shape}")
        if v.shape[1] != self.dim:
            raise GalleryMismatchError(
                "embedding dimension mismatch: batch vectors have dim "
                f"{v.shape[1]} but the gallery holds dim {self.dim} "
                f"(model {self.model_id!r})"
            )
        n = v.shape[0]
        if np.asarray(batch.track_ids).reshape(-1).shape[0] != n:
            raise ValueError(f"batch.track_ids must have {n} entries")
        if np.asarray(batch.boxes).size != 4 * n:
            raise ValueError(f"batch.boxes must have shape ({n}, 4)")
        if batch.qualities is None:
            if np.asarray(batch.scores).reshape(-1).shape[0] != n:
                raise ValueError(f"batch.scores must have {n} entries")
        elif np.asarray(batch.qualities).reshape(-1).shape[0] != n:
            raise ValueError(f"batch.qualities must have {n} entries")
        if batch.crops_jpeg and len(batch.crops_jpeg) != n:
            raise ValueError(f"batch.crops_jpeg must be empty or have {n} entries, got {len(batch.crops_jpeg)}")
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        v = v.astype(np.float32, copy=True)
        finite = np.isfinite(v).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"batch has {int((~finite).sum())} non-finite embedding row(s) "
                f"(rows {np.flatnonzero(~finite)[:10].tolist()}); batch refused"
            )
        norms = np.linalg.norm(v, axis=1)
        if not (norms > 1e-12).all():
            raise ValueError("batch has all-zero embedding row(s); batch refused")
        v /= norms[:, None]
        return v

    def _observe(
        self,
        source_id: str,
        track_id: int,
        vec: np.ndarray,
        box: np.ndarray,
        quality: float,
        crop: bytes,
        frame: bytes,
        stamp: int,
    ) -> int:
        key = (source_id, track_id)
        tidx = self._keys.get(key)
        if tidx is None:
            tidx = self._next_tidx
            self._next_tidx += 1
            tr = _Track(tidx, source_id, track_id, stamp)
            self._tracks[tidx] = tr
            self._keys[key] = tidx
        else:
            tr = self._tracks[tidx]
            self._touch(tidx)
        if stamp >= tr.last_seen_ns:
            tr.last_box = box.tobytes()
        tr.first_seen_ns = min(tr.first_seen_ns, stamp)
        tr.last_seen_ns = max(tr.last_seen_ns, stamp)
        if quality > tr.best_quality:
            tr.best_quality = quality
            if crop:
                self._set_thumb(tr, "crop_jpeg", bytes(crop), self._crop_lru)
            if frame:
                self._set_thumb(tr, "frame_jpeg", frame, self._frame_lru)

        added = 0
        if not tr.ids:
            self._append_row(tr, vec, stamp, box)
            return 1
        kept = self._gather(tr.ids)
        sims = kept @ vec
        j = int(np.argmax(sims))
        if sims[j] >= self.cfg.diversity:
            old_id = tr.ids[j]
            blk, pos = self._locate(old_id)
            if stamp - int(blk.stamps[pos]) >= self._window_ns // 2:
                self._kill(tr, old_id)
                self._append_row(tr, vec, stamp, box)
                added = 1
        elif len(tr.ids) < self.cfg.max_per_track:
            self._append_row(tr, vec, stamp, box)
            added = 1
        elif len(tr.ids) >= 2:
            g = kept @ kept.T
            np.fill_diagonal(g, -np.inf)
            redundancy = g.max(axis=1)
            r = int(np.argmax(redundancy))
            if redundancy[r] > sims[j]:
                self._kill(tr, tr.ids[r])
                self._append_row(tr, vec, stamp, box)
                added = 1
        # max_per_track == 1 and not a near duplicate: keep the first (skip)
        return added

    def _touch(self, tidx: int) -> None:
        if tidx in self._frame_lru:
            self._frame_lru.move_to_end(tidx)
        if tidx in self._crop_lru:
            self._crop_lru.move_to_end(tidx)

    def _set_thumb(self, tr: _Track, attr: str, data: bytes, lru: "OrderedDict[int, None]") -> None:
        self._thumb_bytes += len(data) - len(getattr(tr, attr))
        setattr(tr, attr, data)
        lru[tr.tidx] = None
        lru.move_to_end(tr.tidx)

    def _enforce_thumb_budget(self) -> None:
        budget = self.cfg.thumb_budget_bytes
        for attr, lru in (("frame_jpeg", self._frame_lru), ("crop_jpeg", self._crop_lru)):
            while self._thumb_bytes > budget and lru:
                tidx, _ = lru.popitem(last=False)
                tr = self._tracks[tidx]
                self._thumb_bytes -= len(getattr(tr, attr))
                setattr(tr, attr, b"")

    def _drop_thumbs(self, tr: _Track) -> None:
        self._thumb_bytes -= len(tr.crop_jpeg) + len(tr.frame_jpeg)
        tr.crop_jpeg = tr.frame_jpeg = b""
        self._crop_lru.pop(tr.tidx, None)
        self._frame_lru.pop(tr.tidx, None)

    # ------------------------------------------------------------------ row storage
    def _append_row(self, tr: _Track, vec: np.ndarray, stamp: int, box: np.ndarray) -> None:
        blk = self._blocks[-1] if self._blocks else None
        if blk is None or blk.sealed:
            blk = _Block(self._next_id, self.dim, min(_MIN_BLOCK_ALLOC, self.block_rows))
            self._blocks.append(blk)
            self._bases.append(blk.base_id)
        if blk.hi == blk.cap:
            if blk.cap >= self.block_rows and blk.lo == 0:
                blk.sealed = True
                return self._append_row(tr, vec, stamp, box)
            blk.realloc(min(self.block_rows, max(int(blk.cap * _GROWTH), blk.rows + _MIN_BLOCK_ALLOC)))
            if blk.hi == blk.cap:  # could not grow (head-cut block already at block_rows)
                blk.sealed = True
                return self._append_row(tr, vec, stamp, box)
        p = blk.hi
        rid = self._next_id
        self._next_id += 1
        blk.vecs[p] = vec
        blk.ids[p] = rid
        blk.stamps[p] = stamp
        blk.tidx[p] = tr.tidx
        blk.boxes[p] = box
        blk.alive[p] = True
        blk.hi = p + 1
        blk.min_stamp = min(blk.min_stamp, stamp)
        blk.max_stamp = max(blk.max_stamp, stamp)
        if blk.hi == self.block_rows and blk.lo == 0:
            blk.sealed = True
        tr.ids.append(rid)
        self._count += 1

    def _locate(self, rid: int) -> Tuple[_Block, int]:
        b = bisect.bisect_right(self._bases, rid) - 1
        blk = self._blocks[b]
        pos = blk.lo + int(np.searchsorted(blk.ids[blk.lo : blk.hi], rid))
        if b < 0 or pos >= blk.hi or blk.ids[pos] != rid:  # pragma: no cover - internal invariant
            raise RuntimeError(f"gallery row {rid} not found")
        return blk, pos

    def _gather(self, ids: List[int]) -> np.ndarray:
        out = np.empty((len(ids), self.dim), np.float32)
        for k, rid in enumerate(ids):
            blk, pos = self._locate(rid)
            out[k] = blk.vecs[pos]
        return out

    def _kill(self, tr: _Track, rid: int) -> None:
        """Tombstone one row (replacement / refresh); compacts the block when 1/4 is dead."""
        blk, pos = self._locate(rid)
        blk.alive[pos] = False
        blk.vecs[pos] = 0.0
        blk.dead += 1
        tr.ids.remove(rid)
        self._count -= 1
        if blk.live == 0 and blk is not self._blocks[-1]:
            i = bisect.bisect_right(self._bases, blk.base_id) - 1
            del self._blocks[i]
            del self._bases[i]
        elif blk.dead * 4 > blk.rows and blk.rows >= 64:
            keep = blk.alive[blk.lo : blk.hi]
            blk.realloc(int(np.count_nonzero(keep)) if blk.sealed else blk.cap, keep)

    # ------------------------------------------------------------------ eviction
    def evict(self, now_ns: Optional[int] = None) -> int:
        """Drop every vector with ``stamp_ns < now_ns - window_s`` and keep at most ``capacity``.

        Args:
            now_ns: reference time; None = the newest data stamp seen.

        Returns:
            Number of vectors removed. Tracks left without vectors are removed too.
        """
        with self._lock:
            return self._evict_locked(self._newest_ns if now_ns is None else int(now_ns))

    def _evict_locked(self, now_ns: Optional[int]) -> int:
        removed = 0
        if now_ns is not None and self._blocks:
            cutoff = now_ns - self._window_ns
            i = 0
            while i < len(self._blocks):
                blk = self._blocks[i]
                if blk.min_stamp >= cutoff:
                    i += 1
                    continue
                if blk.max_stamp < cutoff:
                    removed += self._drop_block_rows(blk, blk.hi)
                else:
                    sl = slice(blk.lo, blk.hi)
                    old = blk.alive[sl] & (blk.stamps[sl] < cutoff)
                    k = int(np.count_nonzero(old))
                    if k:
                        # cut at the head if the expired rows (with the dead ones) form a prefix
                        last = int(np.flatnonzero(old)[-1]) + 1
                        if not blk.alive[blk.lo : blk.lo + last][~old[:last]].any():
                            removed += self._drop_block_rows(blk, blk.lo + last)
                        else:  # out-of-order stamps: rebuild the block from its kept rows
                            self._remove_from_tracks(blk.ids[sl][old], blk.tidx[sl][old])
                            removed += k
                            self._count -= k
                            keep = ~old & blk.alive[sl]
                            blk.realloc(int(np.count_nonzero(keep)) if blk.sealed else blk.cap, keep)
                    blk.refresh_bounds()
                if self._finish_block(i):
                    i += 1
        excess = self._count - self.cfg.capacity
        while excess > 0 and self._blocks:
            blk = self._blocks[0]
            if blk.live <= excess:
                n = self._drop_block_rows(blk, blk.hi)
            else:
                alive_pos = np.flatnonzero(blk.alive[blk.lo : blk.hi])
                n = self._drop_block_rows(blk, blk.lo + int(alive_pos[excess - 1]) + 1)
                blk.refresh_bounds()
            removed += n
            excess -= n
            self._finish_block(0)
        if removed:
            self._n_evicted += removed
            log.debug("evicted %d vectors; %d vectors / %d tracks left", removed, self._count, len(self._tracks))
        return removed

    def _drop_block_rows(self, blk: _Block, end: int) -> int:
        """Remove rows [lo, end) of a block (a head cut: O(1) besides the track updates)."""
        sl = slice(blk.lo, end)
        alive = blk.alive[sl]
        n = int(np.count_nonzero(alive))
        self._remove_from_tracks(blk.ids[sl][alive], blk.tidx[sl][alive])
        blk.dead -= int(end - blk.lo - n)
        blk.lo = end
        self._count -= n
        return n

    def _finish_block(self, i: int) -> bool:
        """Drop block i if empty, compact it if its unused head is large. True if it is kept."""
        blk = self._blocks[i]
        if blk.live == 0:
            del self._blocks[i]
            del self._bases[i]
            return False
        if blk.lo * 8 > blk.cap:
            if blk.sealed:
                blk.realloc(blk.live, blk.alive[blk.lo : blk.hi])
            else:
                blk.realloc(max(_MIN_BLOCK_ALLOC, blk.rows), blk.alive[blk.lo : blk.hi])
        return True

    def _remove_from_tracks(self, ids: np.ndarray, tidxs: np.ndarray) -> None:
        for rid, tidx in zip(ids.tolist(), tidxs.tolist()):
            tr = self._tracks.get(tidx)
            if tr is None:  # pragma: no cover - internal invariant
                continue
            tr.ids.remove(rid)
            if not tr.ids:
                self._drop_thumbs(tr)
                del self._tracks[tidx]
                del self._keys[(tr.source_id, tr.track_id)]

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: np.ndarray,
        top_k: int,
        *,
        min_score: float = -1.0,
        since_ns: Optional[int] = None,
        until_ns: Optional[int] = None,
        source_id: Optional[str] = None,
    ) -> List[TrackMatch]:
        """Best tracks for a query embedding, best first.

        Args:
            query: (D,) or (1, D) finite embedding (re-normalised here).
            top_k: number of tracks wanted (>= 1). Exactly top_k are returned when that
                many tracks pass the filters.
            min_score: tracks whose best cosine is below this are left out.
            since_ns, until_ns: keep tracks seen inside [since_ns, until_ns], i.e. whose
                [first_seen_ns, last_seen_ns] overlaps it (None = open end).
            source_id: keep tracks of this camera only.

        Returns:
            TrackMatch per track: score = the cosine of the track's best embedding, box =
            the box of that embedding's observation, thumbnails of the best crop.
        """
        q = self._check_query(query)
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, not {top_k!r}")
        top_k = int(top_k)
        if not math.isfinite(float(min_score)):
            raise ValueError(f"min_score must be finite, not {min_score!r}")
        with self._lock:
            self._n_searches += 1
            total = sum(b.rows for b in self._blocks)
            if self._count == 0:
                return []
            filters = (float(min_score), since_ns, until_ns, source_id)
            # A track holds at most max_per_track rows, so without filters this many
            # candidate rows always hold top_k distinct tracks (tombstones aside).
            k = min(total, top_k * self.cfg.max_per_track + 16)
            out, complete = self._collect(self._topk_rows(q, k), top_k, *filters)
            if complete or k >= total:
                return out
            # Filters / tombstones ate the candidates: score every row once, drop rows
            # that cannot qualify, and widen the candidate set on that score array.
            cols = self._score_all(q, since_ns, until_ns, source_id)
            n = int(cols[0].shape[0])
            while True:
                k = min(n, k * 4)
                if k >= n:
                    return self._collect(cols, top_k, *filters)[0]
                sel = np.argpartition(-cols[0], k - 1)[:k]
                out, complete = self._collect(tuple(c[sel] for c in cols), top_k, *filters)
                if complete:
                    return out

    def _check_query(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query)
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.ndim != 1:
            raise ValueError(f"query must be a (D,) or (1, D) vector, got shape {q.shape}")
        if q.shape[0] != self.dim:
            raise ValueError(
                f"query has dim {q.shape[0]} but the gallery holds dim {self.dim} (model {self.model_id!r})"
            )
        if q.dtype.kind not in "fiu":
            raise ValueError(f"query must be numbers, not {q.dtype}")
        q = np.array(q, dtype=np.float32)
        nrm = math.sqrt(float(np.dot(q.astype(np.float64), q)))
        if not math.isfinite(nrm):
            raise ValueError("query has non-finite values")
        if nrm <= 1e-12:
            raise ValueError("query is an all-zero vector")
        q /= nrm
        return q.reshape(1, -1)

    def _topk_rows(self, q: np.ndarray, k: int) -> Tuple[np.ndarray, ...]:
        """Return the (at least) k best rows over all blocks, unordered, as parallel arrays.

        The arrays are (scores, ids, track indices, alive, block index, position).
        """
        blocks = [(b, blk) for b, blk in enumerate(self._blocks) if blk.rows]
        kk = min(k, max(blk.rows for _, blk in blocks))
        dist = np.full((len(blocks), kk), -np.inf, np.float32)
        lab = np.full((len(blocks), kk), -1, np.int64)
        qp = faiss.swig_ptr(q)
        for j, (_, blk) in enumerate(blocks):
            # one FAISS exhaustive inner-product scan per block (what IndexFlatIP.search
            # runs), straight into a row of the preallocated result arrays
            faiss.knn_inner_product(
                qp,
                faiss.swig_ptr(blk.vecs[blk.lo : blk.hi]),
                self.dim,
                1,
                blk.rows,
                min(kk, blk.rows),
                faiss.swig_ptr(dist[j]),
                faiss.swig_ptr(lab[j]),
            )
        d = dist.ravel()
        sel = np.flatnonzero(lab.ravel() >= 0)
        if sel.shape[0] > k:
            ds = d[sel]
            sel = sel[ds >= np.partition(ds, ds.shape[0] - k)[ds.shape[0] - k]]  # keeps ties at the k-th score
        n = sel.shape[0]
        ids = np.empty(n, np.int64)
        tidx = np.empty(n, np.int64)
        alive = np.empty(n, bool)
        bidx = np.empty(n, np.int64)
        pos = lab.ravel()[sel]
        slot = sel // kk
        order = np.argsort(slot, kind="stable")
        bounds = np.flatnonzero(np.diff(slot[order])) + 1
        for grp in np.split(order, bounds):  # gather the row metadata block by block
            b, blk = blocks[int(slot[grp[0]])]
            p = pos[grp] + blk.lo
            pos[grp] = p
            ids[grp] = blk.ids[p]
            tidx[grp] = blk.tidx[p]
            alive[grp] = blk.alive[p]
            bidx[grp] = b
        return d[sel], ids, tidx, alive, bidx, pos

    def _score_all(self, q, since_ns, until_ns, source_id) -> Tuple[np.ndarray, ...]:
        """Every live row that can pass the track filters, as _topk_rows' parallel arrays."""
        allowed = None
        if source_id is not None or since_ns is not None or until_ns is not None:
            allowed = np.fromiter(
                (
                    t.tidx
                    for t in self._tracks.values()
                    if (source_id is None or t.source_id == source_id)
                    and (since_ns is None or t.last_seen_ns >= since_ns)
                    and (until_ns is None or t.first_seen_ns <= until_ns)
                ),
                np.int64,
            )
        parts = []
        qp = faiss.swig_ptr(q)
        for b, blk in enumerate(self._blocks):
            sl = slice(blk.lo, blk.hi)
            keep = blk.alive[sl]
            if allowed is not None:
                keep = keep & np.isin(blk.tidx[sl], allowed)
            p = np.flatnonzero(keep)
            if p.size == 0:
                continue
            # the same FAISS kernel as knn (bit-identical scores), no heap
            s = np.empty(blk.rows, np.float32)
            faiss.fvec_inner_products_ny(faiss.swig_ptr(s), qp, faiss.swig_ptr(blk.vecs[sl]), self.dim, blk.rows)
            p_abs = p + blk.lo
            parts.append((s[p], blk.ids[p_abs], blk.tidx[p_abs], blk.alive[p_abs], np.full(p.size, b, np.int64), p_abs))
        if not parts:
            return tuple(np.zeros(0, t) for t in (np.float32, np.int64, np.int64, bool, np.int64, np.int64))
        return tuple(np.concatenate(c) for c in zip(*parts))

    def _collect(self, cols, top_k, min_score, since_ns, until_ns, source_id) -> Tuple[List[TrackMatch], bool]:
        """Collect the best tracks among candidate rows.

        Returns (matches, complete): complete when top_k were found or min_score ended
        the list (more candidates cannot help).
        """
        scores, ids, tidx, alive, bidx, pos = cols
        if scores.shape[0] == 0:
            return [], False
        rank = np.lexsort((ids, -scores))  # best first, ties by id (insertion order)
        out: List[TrackMatch] = []
        seen = set()
        sc, ti, al = scores[rank].tolist(), tidx[rank].tolist(), alive[rank].tolist()
        bl, po = bidx[rank].tolist(), pos[rank].tolist()
        for r in range(len(sc)):
            s = sc[r]
            if s < min_score:
                return out, True  # every further row scores lower
            t = ti[r]
            if not al[r] or t in seen:
                continue
            seen.add(t)
            tr = self._tracks[t]
            if source_id is not None and tr.source_id != source_id:
                continue
            if since_ns is not None and tr.last_seen_ns < since_ns:
                continue
            if until_ns is not None and tr.first_seen_ns > until_ns:
                continue
            out.append(
                TrackMatch(
                    track_id=tr.track_id,
                    score=s,
                    source_id=tr.source_id,
                    first_seen_ns=tr.first_seen_ns,
                    last_seen_ns=tr.last_seen_ns,
                    box=tuple(self._blocks[bl[r]].boxes[po[r]].tolist()),
                    crop_jpeg=tr.crop_jpeg,
                    frame_jpeg=tr.frame_jpeg,
                    num_embeddings=len(tr.ids),
                )
            )
            if len(out) == top_k:
                return out, True
        return out, False

    # ------------------------------------------------------------------ helpers
    def _info(self, tr: _Track) -> TrackInfo:
        box = tuple(float(x) for x in np.frombuffer(tr.last_box, np.float32))
        return TrackInfo(
            tr.source_id,
            tr.track_id,
            tr.first_seen_ns,
            tr.last_seen_ns,
            box,
            len(tr.ids),
            len(tr.crop_jpeg),
            len(tr.frame_jpeg),
        )

    def _memory_locked(self) -> int:
        blocks = sum(b.nbytes() for b in self._blocks)
        per_track = len(self._tracks) * _TRACK_OVERHEAD_BYTES + self._count * 8
        per_track += (len(self._frame_lru) + len(self._crop_lru)) * _LRU_ENTRY_BYTES
        return blocks + self._thumb_bytes + per_track

    # ------------------------------------------------------------------ snapshot
    def save(self, path: str | os.PathLike) -> Path:
        """Write a snapshot atomically (temporary file in the same folder + os.replace)."""
        path = Path(path)
        with self._lock:
            arrays = self._export_locked()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        log.debug(
            "gallery snapshot saved to %s (%d vectors, %d tracks)",
            path,
            int(arrays["ids"].shape[0]),
            int(arrays["t_tidx"].shape[0]),
        )
        return path

    def _export_locked(self) -> Dict[str, np.ndarray]:
        parts = [(b, b.alive[b.lo : b.hi]) for b in self._blocks]

        def cat(attr, shape, dtype):
            chunks = [getattr(b, attr)[b.lo : b.hi][m] for b, m in parts]
            return np.concatenate(chunks) if chunks else np.zeros(shape, dtype)

        tracks = list(self._tracks.values())
        pos_of = {t.tidx: i for i, t in enumerate(tracks)}
        sources = sorted({t.source_id for t in tracks})
        src_idx = {s: i for i, s in enumerate(sources)}
        crops = [t.crop_jpeg for t in tracks]
        frames = [t.frame_jpeg for t in tracks]
        crop_off = np.zeros(len(tracks) + 1, np.int64)
        crop_off[1:] = np.cumsum([len(c) for c in crops]) if crops else []
        frame_off = np.zeros(len(tracks) + 1, np.int64)
        frame_off[1:] = np.cumsum([len(c) for c in frames]) if frames else []
        meta = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "config": dataclasses.asdict(self.cfg),
            "next_id": self._next_id,
            "next_tidx": self._next_tidx,
            "newest_ns": self._newest_ns,
            "sources": sources,
        }
        return {
            "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
            "vectors": cat("vecs", (0, self.dim), np.float32),
            "ids": cat("ids", (0,), np.int64),
            "stamps": cat("stamps", (0,), np.int64),
            "row_tidx": cat("tidx", (0,), np.int64),
            "boxes": cat("boxes", (0, 4), np.float32),
            "t_tidx": np.array([t.tidx for t in tracks], np.int64),
            "t_source": np.array([src_idx[t.source_id] for t in tracks], np.int64),
            "t_track_id": np.array([t.track_id for t in tracks], np.int64),
            "t_first": np.array([t.first_seen_ns for t in tracks], np.int64),
            "t_last": np.array([t.last_seen_ns for t in tracks], np.int64),
            "t_last_box": np.frombuffer(b"".join(t.last_box for t in tracks), np.float32).reshape(-1, 4),
            "t_best_quality": np.array([t.best_quality for t in tracks], np.float64),
            "crop_off": crop_off,
            "crop_data": np.frombuffer(b"".join(crops), np.uint8),
            "frame_off": frame_off,
            "frame_data": np.frombuffer(b"".join(frames), np.uint8),
            "frame_lru": np.array([pos_of[t] for t in self._frame_lru], np.int64),
            "crop_lru": np.array([pos_of[t] for t in self._crop_lru], np.int64),
        }

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        cfg: Optional[GalleryConfig] = None,
        *,
        model_id: Optional[str] = None,
        dim: Optional[int] = None,
    ) -> "RollingGallery":
        """Restore a snapshot written by save().

        Args:
            path: the snapshot file.
            cfg: configuration to run with; None = the one stored in the snapshot. A
                smaller window/capacity than the snapshot's evicts at once.
            model_id, dim: when given, must equal the snapshot's (GalleryMismatchError).

        Raises:
            SnapshotError: missing, unreadable, corrupt or unknown-format file.
            GalleryMismatchError: the snapshot is of another model / dimension.
        """
        path = Path(path)
        if not path.is_file():
            raise SnapshotError(f"gallery snapshot not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise SnapshotError(f"gallery snapshot {path} is corrupt or unreadable: {e}") from e
        try:
            meta = json.loads(a["meta"].tobytes().decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
                raise SnapshotError(f"{path} is not a person_search gallery snapshot")
            if meta.get("version") != SNAPSHOT_VERSION:
                raise SnapshotError(
                    f"gallery snapshot {path} has format version "
                    f"{meta.get('version')!r}; this build reads {SNAPSHOT_VERSION}"
                )
            snap_model, snap_dim = str(meta["model_id"]), int(meta["dim"])
        except SnapshotError:
            raise
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
            raise SnapshotError(f"gallery snapshot {path} has corrupt metadata: {e}") from e
        if model_id is not None and model_id != snap_model:
            raise GalleryMismatchError(
                f"gallery snapshot {path} holds embeddings of model "
                f"{snap_model!r}, but the running model is {model_id!r}"
            )
        if dim is not None and int(dim) != snap_dim:
            raise GalleryMismatchError(
                f"gallery snapshot {path} holds dim {snap_dim} embeddings, but the running model has dim {dim}"
            )
        try:
            if cfg is None:
                known = {f.name for f in dataclasses.fields(GalleryConfig)}
                cfg = GalleryConfig(**{k: v for k, v in dict(meta["config"]).items() if k in known})
            g = cls(cfg, dim=snap_dim, model_id=snap_model)
            g._restore(a, meta)
        except SnapshotError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise SnapshotError(f"gallery snapshot {path} is inconsistent: {e}") from e
        log.info("gallery restored from %s: %d vectors, %d tracks", path, len(g), g.num_tracks)
        return g

    def _restore(self, a: Dict[str, np.ndarray], meta: dict) -> None:
        vecs = a["vectors"]
        n = vecs.shape[0] if vecs.ndim == 2 else -1
        if vecs.dtype != np.float32 or vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ValueError(f"vectors have shape {vecs.shape} / {vecs.dtype}, expected (N, {self.dim}) float32")
        for name in ("ids", "stamps", "row_tidx"):
            if a[name].shape != (n,):
                raise ValueError(f"{name} has shape {a[name].shape}, expected ({n},)")
        if a["boxes"].shape != (n, 4) or not np.isfinite(vecs).all():
            raise ValueError("boxes or vectors malformed")
        ids = a["ids"]
        if n > 1 and not (np.diff(ids) > 0).all():
            raise ValueError("row ids are not strictly increasing")
        t = a["t_tidx"]
        nt = t.shape[0]
        for name in ("t_source", "t_track_id", "t_first", "t_last", "t_best_quality"):
            if a[name].shape != (nt,):
                raise ValueError(f"{name} has shape {a[name].shape}, expected ({nt},)")
        if a["t_last_box"].shape != (nt, 4) or a["crop_off"].shape != (nt + 1,) or a["frame_off"].shape != (nt + 1,):
            raise ValueError("track table malformed")
        sources = [str(s) for s in meta["sources"]]
        crop_data, frame_data = a["crop_data"].tobytes(), a["frame_data"].tobytes()
        if int(a["crop_off"][-1]) != len(crop_data) or int(a["frame_off"][-1]) != len(frame_data):
            raise ValueError("thumbnail data truncated")
        for i in range(nt):
            tidx = int(t[i])
            tr = _Track(tidx, sources[int(a["t_source"][i])], int(a["t_track_id"][i]), int(a["t_first"][i]))
            tr.last_seen_ns = int(a["t_last"][i])
            tr.last_box = np.ascontiguousarray(a["t_last_box"][i], np.float32).tobytes()
            tr.best_quality = float(a["t_best_quality"][i])
            tr.crop_jpeg = crop_data[int(a["crop_off"][i]) : int(a["crop_off"][i + 1])]
            tr.frame_jpeg = frame_data[int(a["frame_off"][i]) : int(a["frame_off"][i + 1])]
            self._thumb_bytes += len(tr.crop_jpeg) + len(tr.frame_jpeg)
            self._tracks[tidx] = tr
            self._keys[(tr.source_id, tr.track_id)] = tidx
        for name, lru in (("frame_lru", self._frame_lru), ("crop_lru", self._crop_lru)):
            for i in a[name].tolist():
                lru[int(t[i])] = None
        if any(not self._tracks[k].frame_jpeg for k in self._frame_lru) or any(
            not self._tracks[k].crop_jpeg for k in self._crop_lru
        ):
            raise ValueError("thumbnail order malformed")
        self._next_id = int(meta["next_id"])
        self._next_tidx = int(meta["next_tidx"])
        self._newest_ns = None if meta["newest_ns"] is None else int(meta["newest_ns"])
        row_tidx = a["row_tidx"]
        for start in range(0, n, self.block_rows):
            end = min(n, start + self.block_rows)
            blk = _Block(int(ids[start]), self.dim, end - start)
            m = end - start
            blk.vecs[:] = vecs[start:end]
            blk.ids[:] = ids[start:end]
            blk.stamps[:] = a["stamps"][start:end]
            blk.tidx[:] = row_tidx[start:end]
            blk.boxes[:] = a["boxes"][start:end]
            blk.alive[:] = True
            blk.hi = m
            blk.sealed = True
            blk.refresh_bounds()
            self._blocks.append(blk)
            self._bases.append(blk.base_id)
            for rid, tidx in zip(ids[start:end].tolist(), row_tidx[start:end].tolist()):
                self._tracks[tidx].ids.append(rid)  # KeyError -> corrupt
        self._count = n
        if n and ids[-1] >= self._next_id:
            raise ValueError("next_id is not above the stored ids")
        if any(not tr.ids for tr in self._tracks.values()):
            raise ValueError("a track has no vectors")
        self._evict_locked(self._newest_ns)
        self._enforce_thumb_budget()

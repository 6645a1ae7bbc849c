"""RollingGallery: the embedded FAISS gallery of everyone seen, searchable by text.

A facade over four parts, one job each: :mod:`.store` (vectors in time-ordered blocks,
exact per-vector eviction), :mod:`.policy` (per-track aggregation: at most K diverse
embeddings per track), :mod:`.search` (exact or IVF search grouped into distinct tracks),
:mod:`.thumbs` (the thumbnail budget) and :mod:`.snapshot` (atomic ``.npz`` files).

Memory: the vectors (4 or 2 bytes per value) plus 41 bytes of metadata per row, at most
~20 % unused capacity in the tail block and 1/8 of a block at the head, plus the
thumbnails (bounded by ``thumb_budget_bytes``) and a per-track overhead estimate; the
IVF index (``index: ivf``) holds a second copy of the vectors.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np

from person_search.core.config import GalleryConfig
from person_search.core.gallery import snapshot
from person_search.core.gallery.ann import IvfIndex
from person_search.core.gallery.base import TrackInfo, check_identity, check_query, unpack_batch
from person_search.core.gallery.policy import Aggregator, Track, TrackTable
from person_search.core.gallery.search import Searcher
from person_search.core.gallery.store import DEFAULT_BLOCK_ROWS, BlockStore, one_thread
from person_search.core.gallery.thumbs import ThumbBudget
from person_search.core.types import EmbeddingBatch, TrackMatch

log = logging.getLogger(__name__)


class RollingGallery:
    """Time-windowed, capacity-bounded inner-product gallery of person tracks.

    Thread-safe: every public method takes the gallery's lock.

    Args:
        cfg: gallery configuration (window_s, capacity, max_per_track, diversity,
            thumb_budget_bytes, storage, index, ivf_nprobe).
        dim: embedding dimension.
        model_id: identifier of the embedding model; batches of another model are refused.
        block_rows: rows per storage block (advanced; 4096 keeps search overhead
            negligible and eviction copies small).
    """

    def __init__(self, cfg: GalleryConfig, *, dim: int, model_id: str, block_rows: int = DEFAULT_BLOCK_ROWS):
        cfg.validate()
        self.dim = check_identity(dim, model_id)
        self.cfg = cfg
        self.model_id = model_id
        self.block_rows = int(block_rows)
        self._window_ns = int(round(cfg.window_s * 1e9))
        self._lock = threading.Lock()
        self._store = BlockStore(self.dim, block_rows=block_rows, storage=cfg.storage)
        self._tracks = TrackTable()
        self._thumbs = ThumbBudget(cfg.thumb_budget_bytes)
        self._ann = (IvfIndex(self.dim, capacity=cfg.capacity, nprobe=cfg.ivf_nprobe, storage=cfg.storage)
                     if cfg.index == "ivf" else None)
        self._searcher = Searcher(self._store, self._tracks, cfg.max_per_track, self._ann)
        self._agg = Aggregator(self._store, self._tracks, self._thumbs, diversity=cfg.diversity,
                               max_per_track=cfg.max_per_track, window_ns=self._window_ns)
        self._n_added = self._n_evicted = self._n_searches = 0

    # ------------------------------------------------------------------ read-only views
    def __len__(self) -> int:
        return self._store.count

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    @property
    def newest_ns(self) -> Optional[int]:
        """Newest data stamp seen (None before the first batch)."""
        return self._agg.newest_ns

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        try:
            return self._tracks.find(str(key[0]), int(key[1])) is not None
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return (f"RollingGallery(model_id={self.model_id!r}, dim={self.dim}, vectors={len(self)}, "
                f"tracks={self.num_tracks})")

    def tracks(self) -> List[TrackInfo]:
        """All tracks, oldest first (a copy: safe to iterate while adding)."""
        with self._lock:
            return [t.info() for t in self._tracks]

    def __iter__(self) -> Iterator[TrackInfo]:
        return iter(self.tracks())

    def track(self, source_id: str, track_id: int) -> Optional[TrackInfo]:
        """Return the track ``(source_id, track_id)``, or None."""
        with self._lock:
            tr = self._tracks.find(source_id, track_id)
            return None if tr is None else tr.info()

    def track_crop(self, source_id: str, track_id: int) -> bytes:
        """Return the best crop (JPEG) kept for a track, b"" when none."""
        with self._lock:
            tr = self._tracks.find(source_id, track_id)
            return bytes(tr.crop_jpeg or b"") if tr is not None else b""

    def embeddings(self, source_id: str, track_id: int) -> List[tuple]:
        """Return the kept embeddings of a track as (row id, vector, stamp_ns), oldest first."""
        with self._lock:
            tr = self._tracks.find(source_id, track_id)
            if tr is None:
                return []
            vecs, stamps = self._store.gather(sorted(tr.ids))
            return [(rid, v, int(s)) for rid, v, s in zip(sorted(tr.ids), vecs, stamps.tolist())]

    def memory_bytes(self) -> int:
        """Allocated bytes: vector blocks (with row metadata) + thumbnails + per-track estimate + IVF."""
        with self._lock:
            return self._memory_locked()

    def _memory_locked(self) -> int:
        ann = self._ann.nbytes() if self._ann is not None else 0
        return (self._store.nbytes() + self._thumbs.memory_bytes() + self._tracks.memory_bytes(len(self))
                + ann)

    def stats(self) -> Dict[str, object]:
        with self._lock:
            return {
                "backend": "faiss", "model_id": self.model_id, "dim": self.dim, "storage": self.cfg.storage,
                "index": self.cfg.index, "ann_ready": self._ann is not None and self._ann.ready,
                "vectors": len(self), "tracks": self.num_tracks,
                "blocks": len(self._store.blocks), "dead_rows": self._store.dead_rows,
                "vector_bytes": len(self) * self.dim * (2 if self.cfg.storage == "fp16" else 4),
                "thumb_bytes": self._thumbs.bytes, "memory_bytes": self._memory_locked(),
                "newest_ns": self._agg.newest_ns,
                "oldest_ns_bound": self._store.oldest_bound(),  # lower bound of the oldest kept stamp
                "added_total": self._n_added, "evicted_total": self._n_evicted,
                "searches_total": self._n_searches, "window_s": self.cfg.window_s, "capacity": self.cfg.capacity,
            }

    # ------------------------------------------------------------------ add
    def add(self, batch: EmbeddingBatch) -> int:
        """Add one frame's embeddings; returns the number of vectors stored.

        Raises:
            GalleryMismatchError: the batch's model_id or dim differs from the gallery's.
            ValueError: malformed batch or non-finite / zero rows (nothing is changed).
        """
        b = unpack_batch(batch, model_id=self.model_id, dim=self.dim)
        if b is None:
            return 0
        with self._lock, one_thread():
            if not self._agg.accept(b.stamp):
                log.debug("batch of %s at %d is older than the window; dropped", b.source_id, b.stamp)
                return 0
            added = 0
            for i, _, rid, dead in self._agg.observe(b):
                if self._ann is not None and dead is not None:
                    self._ann.remove(np.array([dead], np.int64))
                if rid is not None:
                    added += 1
                    if self._ann is not None:
                        self._ann.add(b.vecs[i], rid)
            self._n_added += added
            self._evict_locked(self._agg.newest_ns)
            self._thumbs.enforce(self._tracks)
            if self._ann is not None:
                self._ann.maybe_train(len(self), self._ann_rows)
            return added

    def _ann_rows(self):
        a = self._store.export()
        return a["vectors"], a["ids"]

    # ------------------------------------------------------------------ eviction
    def evict(self, now_ns: Optional[int] = None) -> int:
        """Drop every vector with ``stamp_ns < now_ns - window_s`` and keep at most ``capacity``.

        Args:
            now_ns: reference time; None = the newest data stamp seen.

        Returns:
            Number of vectors removed. Tracks left without vectors are removed too.
        """
        with self._lock, one_thread():
            return self._evict_locked(self._agg.newest_ns if now_ns is None else int(now_ns))

    def _evict_locked(self, now_ns: Optional[int]) -> int:
        ids, _, _ = self._agg.evict(now_ns, self.cfg.capacity)
        if ids.shape[0] == 0:
            return 0
        if self._ann is not None:
            self._ann.remove(ids)
        self._n_evicted += ids.shape[0]
        log.debug("evicted %d vectors; %d vectors / %d tracks left", ids.shape[0], len(self), self.num_tracks)
        return int(ids.shape[0])

    # ------------------------------------------------------------------ search
    def search(self, query: np.ndarray, top_k: int, *, min_score: float = -1.0, since_ns: Optional[int] = None,
               until_ns: Optional[int] = None, source_id: Optional[str] = None) -> List[TrackMatch]:
        """Best tracks for a query embedding, best first.

        Args:
            query: (D,) or (1, D) finite embedding (re-normalised here).
            top_k: number of tracks wanted (>= 1). Exactly top_k are returned when that
                many tracks pass the filters (``index: ivf``: approximately the best ones).
            min_score: tracks whose best cosine is below this are left out.
            since_ns, until_ns: keep tracks seen inside [since_ns, until_ns], i.e. whose
                [first_seen_ns, last_seen_ns] overlaps it (None = open end).
            source_id: keep tracks of this camera only.

        Returns:
            TrackMatch per track: score = the cosine of the track's best embedding, box =
            the box of that embedding's observation, thumbnails of the best crop.
        """
        q = check_query(query, top_k, min_score, dim=self.dim, model_id=self.model_id)
        with self._lock, one_thread():
            self._n_searches += 1
            return self._searcher.search(q, int(top_k), float(min_score), since_ns, until_ns, source_id)

    # ------------------------------------------------------------------ snapshot
    def save(self, path: str | os.PathLike) -> Path:
        """Write a snapshot atomically (temporary file in the same folder + os.replace)."""
        with self._lock:
            meta, arrays = self._export_locked()
        path = snapshot.write(path, meta, arrays)
        log.debug("gallery snapshot saved to %s (%d vectors, %d tracks)", path, arrays["ids"].shape[0],
                  arrays["t_tidx"].shape[0])
        return path

    def close(self) -> None:
        """Nothing to release (the gallery lives in this process)."""

    def _export_locked(self):
        tracks = list(self._tracks)
        pos_of = {t.tidx: i for i, t in enumerate(tracks)}
        sources = sorted({t.source_id for t in tracks})
        src_idx = {s: i for i, s in enumerate(sources)}
        crop_off, crop_data = snapshot.pack_blobs([t.crop_jpeg for t in tracks])
        frame_off, frame_data = snapshot.pack_blobs([t.frame_jpeg for t in tracks])
        meta = {"model_id": self.model_id, "dim": self.dim, "config": dataclasses.asdict(self.cfg),
                "next_id": self._store.next_id, "next_tidx": self._tracks.next_tidx,
                "newest_ns": self._agg.newest_ns, "sources": sources}
        arrays = dict(
            self._store.export(),
            t_tidx=np.array([t.tidx for t in tracks], np.int64),
            t_source=np.array([src_idx[t.source_id] for t in tracks], np.int64),
            t_track_id=np.array([t.track_id for t in tracks], np.int64),
            t_first=np.array([t.first_seen_ns for t in tracks], np.int64),
            t_last=np.array([t.last_seen_ns for t in tracks], np.int64),
            t_last_box=np.frombuffer(b"".join(t.last_box for t in tracks), np.float32).reshape(-1, 4),
            t_best_quality=np.array([t.best_quality for t in tracks], np.float64),
            crop_off=crop_off, crop_data=crop_data, frame_off=frame_off, frame_data=frame_data,
            frame_lru=np.array([pos_of[t] for t in self._thumbs.order("frame_jpeg")], np.int64),
            crop_lru=np.array([pos_of[t] for t in self._thumbs.order("crop_jpeg")], np.int64),
        )
        return meta, arrays

    @classmethod
    def load(cls, path: str | os.PathLike, cfg: Optional[GalleryConfig] = None, *, model_id: Optional[str] = None,
             dim: Optional[int] = None) -> "RollingGallery":
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
        a, meta = snapshot.read(path, model_id=model_id, dim=dim)
        try:
            if cfg is None:
                known = {f.name for f in dataclasses.fields(GalleryConfig)}
                cfg = GalleryConfig(**{k: v for k, v in dict(meta["config"]).items() if k in known})
            g = cls(cfg, dim=int(meta["dim"]), model_id=str(meta["model_id"]))
            g._restore(a, meta)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise snapshot.SnapshotError(f"gallery snapshot {path} is inconsistent: {e}") from e
        log.info("gallery restored from %s: %d vectors, %d tracks", path, len(g), g.num_tracks)
        return g

    def _restore(self, a: Dict[str, np.ndarray], meta: dict) -> None:
        n = snapshot.check_rows(a, self.dim)
        t = a["t_tidx"]
        sources = [str(s) for s in meta["sources"]]
        crop_data, frame_data = a["crop_data"].tobytes(), a["frame_data"].tobytes()
        for i in range(t.shape[0]):
            tr = Track(int(t[i]), sources[int(a["t_source"][i])], int(a["t_track_id"][i]), int(a["t_first"][i]))
            tr.last_seen_ns = int(a["t_last"][i])
            tr.last_box = np.ascontiguousarray(a["t_last_box"][i], np.float32).tobytes()
            tr.best_quality = float(a["t_best_quality"][i])
            tr.crop_jpeg = snapshot.unpack_blob(a["crop_off"], crop_data, i)
            tr.frame_jpeg = snapshot.unpack_blob(a["frame_off"], frame_data, i)
            self._tracks.insert(tr)
        self._thumbs.restore(self._tracks, [("frame_jpeg", t[a["frame_lru"]].tolist()),
                                            ("crop_jpeg", t[a["crop_lru"]].tolist())])
        if any(not self._tracks[k].frame_jpeg for k in self._thumbs.order("frame_jpeg")) or any(
                not self._tracks[k].crop_jpeg for k in self._thumbs.order("crop_jpeg")):
            raise ValueError("thumbnail order malformed")
        self._tracks.next_tidx = int(meta["next_tidx"])
        self._agg.newest_ns = None if meta["newest_ns"] is None else int(meta["newest_ns"])
        ids, row_tidx = a["ids"], a["row_tidx"]
        for rid, tidx in zip(ids.tolist(), row_tidx.tolist()):
            self._tracks[tidx].ids.append(rid)  # KeyError -> corrupt
        if n and ids[-1] >= int(meta["next_id"]):
            raise ValueError("next_id is not above the stored ids")
        if any(not tr.ids for tr in self._tracks):
            raise ValueError("a track has no vectors")
        self._store.restore(a["vectors"], ids, a["stamps"], row_tidx, a["boxes"], int(meta["next_id"]))
        self._evict_locked(self._agg.newest_ns)
        self._thumbs.enforce(self._tracks)
        if self._ann is not None:
            self._ann.maybe_train(len(self), self._ann_rows)

"""Search: the best distinct tracks for a query, exact over the blocks or through an IVF index.

Exact search is one FAISS inner-product scan per block (``faiss.knn_inner_product``, the
kernel of ``IndexFlatIP.search``, or the fp16 scalar-quantizer scan) into preallocated
result rows, the per-block top-k merged in numpy. Grouping rows into tracks is
vectorised: a candidate is (score, row reference = block slot << 32 | position, track
index; -1 = dead row); candidates are ranked by (score, reference), which is id order,
``np.unique(..., return_index=True)`` keeps each track's best row, and only the returned
tracks are touched in Python. ``top_k * max_per_track + 16`` candidate rows always hold
top_k tracks; when filters (camera, time) or tombstones eat them, every row is scored
once, rows of tracks that fail the filters are dropped, and the candidate set is widened
4x at a time.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from person_search.core.gallery.policy import TrackTable
from person_search.core.gallery.store import BlockStore
from person_search.core.types import TrackMatch

Cols = Tuple[np.ndarray, np.ndarray, np.ndarray]  # scores, row references, track indices
_SHIFT = 32
_MASK = (1 << _SHIFT) - 1


def best_per_track(scores: np.ndarray, order: np.ndarray, group: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Return the index of each group's best row among rows where ``keep``, best group first.

    Rows rank by score (descending), ties by ``order`` (ascending); a group's best row is
    its first in that ranking.
    """
    idx = np.flatnonzero(keep)
    rank = idx[np.lexsort((order[idx], -scores[idx]))]
    _, first = np.unique(group[rank], return_index=True)
    return rank[np.sort(first)]


def _empty_cols() -> Cols:
    return np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)


class Searcher:
    """Answers queries over a BlockStore and a TrackTable (the caller holds the lock)."""

    def __init__(self, store: BlockStore, tracks: TrackTable, max_per_track: int, ann=None):
        self.store = store
        self.tracks = tracks
        self.max_per_track = max_per_track
        self.ann = ann
        self._buf: Dict[Tuple[int, int], Tuple[np.ndarray, ...]] = {}
        self._blocks: list = []

    def search(self, q: np.ndarray, top_k: int, min_score: float, since_ns: Optional[int],
               until_ns: Optional[int], source_id: Optional[str]) -> List[TrackMatch]:
        if self.store.count == 0:
            return []
        self._blocks = [blk for blk in self.store.blocks if blk.rows]
        total = sum(blk.rows for blk in self._blocks)
        filters = (min_score, since_ns, until_ns, source_id)
        # A track holds at most max_per_track rows, so without filters this many
        # candidate rows always hold top_k distinct tracks (tombstones aside). Fewer do
        # not pay: a person's embeddings score alike, so the best rows come in bunches.
        k = min(total, top_k * self.max_per_track + 16)
        if self.ann is not None and self.ann.ready:
            cols = self.rows_by_id(*self.ann.search(q, k))
        else:
            cols = self.topk_rows(q, k)
        out, complete = self.collect(cols, top_k, *filters)
        if complete or k >= total:
            return out
        # Filters / tombstones ate the candidates: score every row once, drop rows that
        # cannot qualify, and widen the candidate set on that score array.
        cols = self.score_all(q, since_ns, until_ns, source_id)
        n = int(cols[0].shape[0])
        while True:
            k = min(n, k * 4)
            if k >= n:
                return self.collect(cols, top_k, *filters)[0]
            sel = np.argpartition(-cols[0], k - 1)[:k]
            out, complete = self.collect(tuple(c[sel] for c in cols), top_k, *filters)
            if complete:
                return out

    def _buffers(self, nb: int, kk: int) -> Tuple[np.ndarray, ...]:
        buf = self._buf.get((nb, kk))
        if buf is None:
            if len(self._buf) > 64:
                self._buf.clear()
            buf = self._buf[(nb, kk)] = (np.empty((nb, kk), np.float32), np.empty((nb, kk), np.int64),
                                         np.empty((nb, kk), np.int64))
        return buf

    def topk_rows(self, q: np.ndarray, k: int) -> Cols:
        """Return (at least) the k best rows over all blocks, unordered (ties at the k-th kept)."""
        blocks = self._blocks
        kk = min(k, max(blk.rows for blk in blocks))
        dist, lab, tid = self._buffers(len(blocks), kk)
        short = False
        for j, blk in enumerate(blocks):
            m = blk.rows
            if m < kk:  # a small block fills part of its result row
                short = True
                dist[j, m:], lab[j, m:], tid[j, m:] = -np.inf, -1, -1
            else:
                m = kk
            blk.vecs.knn(q, blk.lo, blk.hi, m, dist[j, :m], lab[j, :m])
            np.take(blk.tidx[blk.lo:], lab[j, :m], out=tid[j, :m])
        d, t, pos = dist.ravel(), tid.ravel(), lab.ravel()
        if short:
            keep = pos >= 0
            idx = np.flatnonzero(keep)
        else:
            idx = None
        if d.shape[0] > 4 * k:  # many blocks: keep the k best (and ties at the k-th) before ranking
            cut = np.partition(d, d.shape[0] - k)[d.shape[0] - k]
            idx = np.flatnonzero(d >= cut) if idx is None else idx[d[idx] >= cut]
        if idx is None:
            idx = np.arange(d.shape[0])
        slot = idx // kk
        los = np.fromiter((blk.lo for blk in blocks), np.int64, len(blocks))
        ref = (slot << _SHIFT) + pos[idx] + los[slot]  # (block, row) order = id order
        return d[idx], ref, t[idx]

    def rows_by_id(self, scores: np.ndarray, ids: np.ndarray) -> Cols:
        """Candidates given by row id (from the ANN index); ids no longer stored count as dead."""
        blocks = self._blocks
        if not blocks or ids.shape[0] == 0:
            return _empty_cols()
        bases = np.fromiter((b.base_id for b in blocks), np.int64, len(blocks))
        slot = np.maximum(np.searchsorted(bases, ids, side="right") - 1, 0)
        ref = np.zeros(ids.shape[0], np.int64)
        tid = np.full(ids.shape[0], -1, np.int64)
        for b in np.unique(slot).tolist():
            m = np.flatnonzero(slot == b)
            blk = blocks[b]
            p = np.minimum(np.searchsorted(blk.ids[blk.lo: blk.hi], ids[m]), blk.rows - 1) + blk.lo
            found = blk.ids[p] == ids[m]
            tid[m[found]] = blk.tidx[p[found]]
            ref[m] = p + (b << _SHIFT)
        return scores, ref, tid

    def score_all(self, q: np.ndarray, since_ns, until_ns, source_id) -> Cols:
        """Every live row that can pass the track filters."""
        allowed = None
        if source_id is not None or since_ns is not None or until_ns is not None:
            allowed = self.tracks.allowed(source_id, since_ns, until_ns)
        parts = []
        for j, blk in enumerate(self._blocks):
            tidx = blk.tidx[blk.lo: blk.hi]
            keep = tidx >= 0 if allowed is None else np.isin(tidx, allowed)
            p = np.flatnonzero(keep)
            if p.size:
                s = blk.vecs.scores(q, blk.lo, blk.hi)
                parts.append((s[p], p + blk.lo + (j << _SHIFT), tidx[p]))
        if not parts:
            return _empty_cols()
        return tuple(np.concatenate(c) for c in zip(*parts))

    def collect(self, cols: Cols, top_k: int, min_score: float, since_ns, until_ns, source_id
                ) -> Tuple[List[TrackMatch], bool]:
        """Return (the best tracks among candidate rows, complete).

        complete: top_k were found, or a candidate scored below min_score (every row that
        is not a candidate scores lower still).
        """
        scores, ref, tidx = cols
        if scores.shape[0] == 0:
            return [], False
        rank = np.lexsort((ref, -scores))  # best first, ties in id order ((block, row) order)
        filtered = source_id is not None or since_ns is not None or until_ns is not None
        out: List[TrackMatch] = []
        seen = set()
        tracks, blocks = self.tracks, self._blocks
        # one pass over the ranked candidates in C-built lists: ~100 cheap steps, fewer
        # than the numpy calls a vectorised group-by costs on a cold cache
        for t, s, rf in zip(tidx[rank].tolist(), scores[rank].tolist(), ref[rank].tolist()):
            if s < min_score:
                return out, True  # every further row scores lower
            if t < 0 or t in seen:
                continue
            seen.add(t)
            tr = tracks[t]
            if filtered and not tr.passes(source_id, since_ns, until_ns):
                continue
            box = tuple(blocks[rf >> _SHIFT].boxes[rf & _MASK].tolist())
            out.append(TrackMatch(track_id=tr.track_id, score=s, source_id=tr.source_id,
                                  first_seen_ns=tr.first_seen_ns, last_seen_ns=tr.last_seen_ns, box=box,
                                  crop_jpeg=tr.crop_jpeg, frame_jpeg=tr.frame_jpeg, num_embeddings=len(tr.ids)))
            if len(out) == top_k:
                return out, True
        return out, False

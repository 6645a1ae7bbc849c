"""Search: the best distinct tracks for a query, exact over the blocks or through an IVF index.

Exact search is one FAISS inner-product scan per block (``faiss.knn_inner_product``, the
kernel of ``IndexFlatIP.search``, or the fp16 scalar-quantizer scan) into preallocated
result rows, the per-block top-k merged in numpy. Grouping rows into tracks is
vectorised: candidates ranked by (score, id), ``np.unique(..., return_index=True)``
keeps each track's best row, and only the returned tracks are touched in Python. The
first pass fetches ``2 * top_k + 8`` rows: when they hold top_k distinct tracks the
answer is exact (a track's score is its best row). Otherwise ``top_k * max_per_track +
16`` rows, which always hold top_k tracks; when filters (camera, time) or tombstones
eat them, every row is scored once, rows of tracks that fail the filters are dropped,
and the candidate set is widened 4x at a time on that score array.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from person_search.core.gallery.policy import TrackTable
from person_search.core.gallery.store import BlockStore
from person_search.core.types import TrackMatch

Cols = Tuple[np.ndarray, ...]  # scores, ids, track indices, alive, boxes (per candidate row)


def _empty_cols() -> Cols:
    return (np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool),
            np.zeros((0, 4), np.float32))


class Searcher:
    """Answers queries over a BlockStore and a TrackTable (the caller holds the lock)."""

    def __init__(self, store: BlockStore, tracks: TrackTable, max_per_track: int, ann=None):
        self.store = store
        self.tracks = tracks
        self.max_per_track = max_per_track
        self.ann = ann
        self._buf: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    def search(self, q: np.ndarray, top_k: int, min_score: float, since_ns: Optional[int],
               until_ns: Optional[int], source_id: Optional[str]) -> List[TrackMatch]:
        if self.store.count == 0:
            return []
        total = self.store.total_rows
        filters = (min_score, since_ns, until_ns, source_id)
        if self.ann is not None and self.ann.ready:
            k = min(total, top_k * self.max_per_track + 16)
            out, complete = self.collect(self.rows_by_id(*self.ann.search(q, k)), top_k, *filters)
            if complete or k >= total:
                return out
        else:
            k = 0
            for k in sorted({min(total, 2 * top_k + 8), min(total, top_k * self.max_per_track + 16)}):
                out, complete = self.collect(self.topk_rows(q, k), top_k, *filters)
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

    def _buffers(self, nb: int, kk: int) -> Tuple[np.ndarray, np.ndarray]:
        buf = self._buf.get((nb, kk))
        if buf is None:
            if len(self._buf) > 64:
                self._buf.clear()
            buf = self._buf[(nb, kk)] = (np.empty((nb, kk), np.float32), np.empty((nb, kk), np.int64))
        buf[0].fill(-np.inf)
        buf[1].fill(-1)
        return buf

    def topk_rows(self, q: np.ndarray, k: int) -> Cols:
        """Return (at least) the k best rows over all blocks, unordered (ties at the k-th kept)."""
        blocks = [blk for blk in self.store.blocks if blk.rows]
        kk = min(k, max(blk.rows for blk in blocks))
        dist, lab = self._buffers(len(blocks), kk)
        for j, blk in enumerate(blocks):
            m = min(kk, blk.rows)
            blk.vecs.knn(q, blk.lo, blk.hi, m, dist[j, :m], lab[j, :m])
        d = dist.ravel()
        sel = np.flatnonzero(lab.ravel() >= 0)
        if sel.shape[0] > k:
            ds = d[sel]
            sel = sel[ds >= np.partition(ds, ds.shape[0] - k)[ds.shape[0] - k]]
        slot = sel // kk
        return self._gather(d[sel], slot, lab.ravel()[sel], blocks)

    def _gather(self, scores: np.ndarray, slot: np.ndarray, rel: np.ndarray, blocks) -> Cols:
        """Row metadata of candidates given as (block slot, position relative to the block's lo)."""
        n = scores.shape[0]
        ids, tidx = np.empty(n, np.int64), np.empty(n, np.int64)
        alive, boxes = np.empty(n, bool), np.empty((n, 4), np.float32)
        order = np.argsort(slot, kind="stable")
        bounds = np.flatnonzero(np.diff(slot[order])) + 1
        for grp in np.split(order, bounds):  # one numpy gather per block that holds candidates
            if grp.size == 0:
                continue
            blk = blocks[int(slot[grp[0]])]
            p = rel[grp] + blk.lo
            ids[grp], tidx[grp], alive[grp], boxes[grp] = blk.ids[p], blk.tidx[p], blk.alive[p], blk.boxes[p]
        return scores, ids, tidx, alive, boxes

    def rows_by_id(self, scores: np.ndarray, ids: np.ndarray) -> Cols:
        """Candidates given by row id (from the ANN index); ids no longer stored count as dead."""
        blocks = self.store.blocks
        if not blocks or ids.shape[0] == 0:
            return _empty_cols()
        bases = np.fromiter((b.base_id for b in blocks), np.int64, len(blocks))
        slot = np.maximum(np.searchsorted(bases, ids, side="right") - 1, 0)
        rel = np.zeros(ids.shape[0], np.int64)
        for b in np.unique(slot).tolist():
            m = slot == b
            blk = blocks[b]
            rel[m] = np.minimum(np.searchsorted(blk.ids[blk.lo: blk.hi], ids[m]), max(blk.rows - 1, 0))
        cols = self._gather(scores, slot, rel, blocks)
        return cols[:3] + (cols[3] & (cols[1] == ids),) + cols[4:]

    def score_all(self, q: np.ndarray, since_ns, until_ns, source_id) -> Cols:
        """Every live row that can pass the track filters."""
        allowed = None
        if source_id is not None or since_ns is not None or until_ns is not None:
            allowed = self.tracks.allowed(source_id, since_ns, until_ns)
        parts = []
        for blk in self.store.blocks:
            ids, _, tidx, boxes, alive = blk.meta()
            keep = alive if allowed is None else alive & np.isin(tidx, allowed)
            p = np.flatnonzero(keep)
            if p.size:
                s = blk.vecs.scores(q, blk.lo, blk.hi)
                parts.append((s[p], ids[p], tidx[p], alive[p], boxes[p]))
        if not parts:
            return _empty_cols()
        return tuple(np.concatenate(c) for c in zip(*parts))

    def collect(self, cols: Cols, top_k: int, min_score: float, since_ns, until_ns, source_id
                ) -> Tuple[List[TrackMatch], bool]:
        """Return (the best tracks among candidate rows, complete).

        complete: top_k were found, or a candidate scored below min_score (every row that
        is not a candidate scores lower still).
        """
        scores, ids, tidx, alive, boxes = cols
        if scores.shape[0] == 0:
            return [], False
        cut = bool(scores.min() < min_score)
        idx = np.flatnonzero(alive & (scores >= min_score))
        rank = idx[np.lexsort((ids[idx], -scores[idx]))]  # best first, ties by id (insertion order)
        _, first = np.unique(tidx[rank], return_index=True)
        best = rank[np.sort(first)]  # each track's best row, best track first
        filtered = source_id is not None or since_ns is not None or until_ns is not None
        out: List[TrackMatch] = []
        for r in best.tolist():
            tr = self.tracks[int(tidx[r])]
            if filtered and not tr.passes(source_id, since_ns, until_ns):
                continue
            out.append(TrackMatch(track_id=tr.track_id, score=float(scores[r]), source_id=tr.source_id,
                                  first_seen_ns=tr.first_seen_ns, last_seen_ns=tr.last_seen_ns,
                                  box=tuple(boxes[r].tolist()), crop_jpeg=tr.crop_jpeg, frame_jpeg=tr.frame_jpeg,
                                  num_embeddings=len(tr.ids)))
            if len(out) == top_k:
                return out, True
        return out, cut

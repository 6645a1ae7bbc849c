"""Approximate search (``gallery.index: ivf``): one FAISS IVF index over the stored rows.

Why IVF and not HNSW: HNSW cannot remove vectors, so a rolling window would need
time-bucketed HNSW shards, and a query then pays one graph walk per shard (hundreds at
1M rows with 4096-row shards). An IVF index removes by id (``remove_ids``), so eviction
stays exact per vector; a query scans ``nprobe`` of ``nlist`` inverted lists.

* ``nprobe`` (``gallery.ivf_nprobe``, 0 = a third of the lists, at least 16): on
  person-like clustered data (benchmarks/bench_gallery.py) recall@10 of distinct tracks
  against exact search was 0.90 with 16 of 1,000 lists at 1M vectors, 0.98 with 128; a
  third keeps it >= 0.99 while scanning a third of the vectors.
* The coarse quantizer (``nlist = sqrt(capacity)``, 16..4096 lists) is trained once, on
  the rows held when the gallery first reaches ``39 * nlist`` rows (or its capacity);
  until then search is exact. A restored snapshot retrains on its rows.
* Rows are added with their gallery ids. Removed rows (eviction, replacement) are
  masked at once by the search (an id no longer stored counts as dead) and dropped
  from the IVF lists in batches (``remove_ids`` is one O(N) pass), when 1/16 of the
  index is stale.
* The lists hold their own copy of the vectors (float16 codes with ``storage: fp16``).
"""

from __future__ import annotations

import logging
import math
from typing import List, Tuple

import faiss
import numpy as np

log = logging.getLogger(__name__)

INDEXES = ("flat", "ivf")


class IvfIndex:
    """IVF inner-product index over gallery row ids."""

    def __init__(self, dim: int, *, capacity: int, nprobe: int, storage: str = "fp32"):
        self.dim = dim
        self.nlist = int(min(4096, max(16, round(math.sqrt(capacity)))))
        self.train_rows = int(min(capacity, 39 * self.nlist))
        self.nprobe = int(nprobe) or max(16, round(self.nlist / 3))
        self.storage = storage
        self.index = None
        self._stale: List[np.ndarray] = []
        self._n_stale = 0

    @property
    def ready(self) -> bool:
        return self.index is not None

    def maybe_train(self, count: int, export) -> None:
        """Train and fill once ``count`` rows are held; ``export()`` returns (vectors, ids)."""
        if self.index is not None or count < self.train_rows:
            return
        vecs, ids = export()
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.storage == "fp16":
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, self.nlist, faiss.ScalarQuantizer.QT_fp16,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        index.train(vecs)
        index.own_fields = True
        quantizer.this.disown()  # the index owns (and frees) its quantizer
        index.nprobe = min(self.nprobe, self.nlist)
        index.add_with_ids(vecs, ids)
        self.index = index
        log.info("IVF index trained on %d rows: %d lists, nprobe %d", vecs.shape[0], self.nlist, index.nprobe)

    def add(self, vec: np.ndarray, rid: int) -> None:
        if self.index is not None:
            self.index.add_with_ids(vec.reshape(1, -1), np.array([rid], np.int64))

    def remove(self, ids: np.ndarray) -> None:
        """Drop rows (lazily: search already treats ids no longer stored as dead)."""
        if self.index is None or ids.shape[0] == 0:
            return
        self._stale.append(np.asarray(ids, np.int64))
        self._n_stale += ids.shape[0]
        if self._n_stale * 16 > self.index.ntotal:
            self.flush()

    def flush(self) -> None:
        if self.index is not None and self._stale:
            ids = np.concatenate(self._stale)
            self.index.remove_ids(faiss.IDSelectorBatch(ids.shape[0], faiss.swig_ptr(ids)))
        self._stale, self._n_stale = [], 0

    def search(self, q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids) of up to k + stale rows (stale ones are masked by the caller)."""
        d, i = self.index.search(q, min(k + self._n_stale, max(1, self.index.ntotal)))
        keep = i[0] >= 0
        return d[0][keep], i[0][keep]

    def nbytes(self) -> int:
        if self.index is None:
            return 0
        return self.index.ntotal * (self.index.code_size + 8) + self.nlist * self.dim * 4

"""Vector storage in time-ordered blocks, with exact per-vector eviction.

Vectors (L2-normalised, so inner product == cosine) live in a list of row *blocks* of
at most ``block_rows`` rows, in insertion order. Every row has a time-ordered int64 id
(a counter: ids never repeat), its data stamp, the index of its track and the box of
its observation. The newest block (the tail) grows geometrically (x1.25) up to
``block_rows`` and is then sealed. Vectors are float32 numpy rows (``storage="fp32"``)
or float16 codes in a FAISS ``IndexScalarQuantizer`` per block (``storage="fp16"``: half
the memory; FAISS scans the codes directly).

Eviction is exact at the vector level: a vector is kept while ``stamp >= cutoff`` and at
most ``capacity`` vectors are kept (the lowest ids go first). A block entirely too old is
dropped (O(1)); a partially expired block is cut at its head (O(1)) or, when stamps
arrived out of order, rebuilt from its kept rows (O(block_rows)). A block whose unused
head exceeds 1/8 of its allocation, or a quarter of which is tombstoned, is compacted.
One eviction step costs O(rows evicted + block_rows + number of blocks).
"""

from __future__ import annotations

import bisect
import contextlib
from typing import Iterator, List, Optional, Tuple

import faiss
import numpy as np

DEFAULT_BLOCK_ROWS = 4096
MIN_BLOCK_ALLOC = 256
GROWTH = 1.25
ROW_META_BYTES = 8 + 8 + 8 + 16 + 1  # id, stamp, track index, box, alive flag
STORAGES = ("fp32", "fp16")
_I64_MAX, _I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


@contextlib.contextmanager
def one_thread():
    """Run FAISS on the calling thread only.

    A gallery call works on one query or a few rows: OpenMP threads cannot help there,
    and their start-up and barriers cost ~10 ms on a loaded 2-core machine (an fp16
    scan of 16 rows: 10 ms with 2 threads, 3 us with one). ``omp_set_num_threads``
    acts on the calling thread only, so other threads keep their setting.
    """
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


class F32Rows:
    """Preallocated float32 rows."""

    def __init__(self, dim: int, cap: int, rows: Optional[np.ndarray] = None):
        self.a = np.zeros((cap, dim), np.float32)
        if rows is not None:
            self.a[: rows.shape[0]] = rows

    def nbytes(self) -> int:
        return self.a.nbytes

    def put(self, p: int, vec: np.ndarray) -> None:
        self.a[p] = vec

    def get(self, lo: int, hi: int) -> np.ndarray:
        return self.a[lo:hi]

    def select(self, lo: int, hi: int, keep: Optional[np.ndarray], cap: int) -> "F32Rows":
        """Return new rows holding rows [lo, hi) (only those where ``keep``) in ``cap`` slots."""
        a = self.a[lo:hi]
        return F32Rows(a.shape[1], max(cap, 1), a[keep] if keep is not None else a)

    def kill(self, p: int) -> None:
        self.a[p] = 0.0

    def knn(self, q: np.ndarray, lo: int, hi: int, k: int, dist: np.ndarray, lab: np.ndarray) -> None:
        """Top-k inner products of rows [lo, hi) into dist / lab (positions relative to lo)."""
        # the exhaustive scan IndexFlatIP.search runs, straight into preallocated rows
        faiss.knn_inner_product(faiss.swig_ptr(q), faiss.swig_ptr(self.a[lo:hi]), q.shape[1], 1, hi - lo, k,
                                faiss.swig_ptr(dist), faiss.swig_ptr(lab))

    def scores(self, q: np.ndarray, lo: int, hi: int) -> np.ndarray:
        s = np.empty(hi - lo, np.float32)
        # the same kernel as knn (bit-identical scores), no heap
        faiss.fvec_inner_products_ny(faiss.swig_ptr(s), faiss.swig_ptr(q), faiss.swig_ptr(self.a[lo:hi]),
                                     q.shape[1], hi - lo)
        return s


class F16Rows:
    """Float16 codes in a FAISS scalar-quantizer index; row p of the block is index row p."""

    def __init__(self, dim: int, cap: int, rows: Optional[np.ndarray] = None, codes: Optional[np.ndarray] = None):
        self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        if codes is not None and codes.shape[0]:
            self.index.add_sa_codes(np.ascontiguousarray(codes))
        elif rows is not None and rows.shape[0]:
            self.index.add(np.ascontiguousarray(rows, np.float32))

    def nbytes(self) -> int:
        return self.index.ntotal * self.index.code_size

    def codes(self) -> np.ndarray:
        """Return the stored codes as an (ntotal, D) float16 view (valid until the next add)."""
        n, d = self.index.ntotal, self.index.d
        if n == 0:
            return np.zeros((0, d), np.float16)
        return faiss.rev_swig_ptr(self.index.codes.data(), n * self.index.code_size).view(np.float16).reshape(n, d)

    def put(self, p: int, vec: np.ndarray) -> None:
        assert p == self.index.ntotal  # append only
        self.index.add(vec.reshape(1, -1))

    def get(self, lo: int, hi: int) -> np.ndarray:
        return self.codes()[lo:hi].astype(np.float32)

    def select(self, lo: int, hi: int, keep: Optional[np.ndarray], cap: int) -> "F16Rows":
        """Return a new F16Rows of rows [lo, hi) (where ``keep``), copying codes without re-encoding."""
        c = self.codes()[lo:hi]
        c = c[keep] if keep is not None else c
        return F16Rows(self.index.d, cap, codes=c.view(np.uint8).reshape(c.shape[0], -1))

    def kill(self, p: int) -> None:
        pass  # tombstoned rows are masked by the block's alive flags

    def knn(self, q: np.ndarray, lo: int, hi: int, k: int, dist: np.ndarray, lab: np.ndarray) -> None:
        params = None
        if lo > 0 or hi < self.index.ntotal:
            params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi))
        self.index.search(q, k, params=params, D=dist.reshape(1, -1), I=lab.reshape(1, -1))
        np.subtract(lab, lo, out=lab, where=lab >= 0)

    def scores(self, q: np.ndarray, lo: int, hi: int) -> np.ndarray:
        # through the index's own kernel, so that a row scores the same on every path
        n = hi - lo
        dist, lab = np.empty(n, np.float32), np.empty(n, np.int64)
        self.knn(q, lo, hi, n, dist, lab)
        out = np.empty(n, np.float32)
        out[lab] = dist
        return out


ROWS = {"fp32": F32Rows, "fp16": F16Rows}


class Block:
    """Rows [lo, hi) of preallocated arrays; ids ascending; a dead row has track index -1."""

    __slots__ = ("base_id", "vecs", "ids", "stamps", "tidx", "boxes", "alive", "lo", "hi", "dead", "min_stamp",
                 "max_stamp", "sealed")

    def __init__(self, base_id: int, dim: int, cap: int, rows_cls=F32Rows):
        self.base_id = base_id
        self.vecs = rows_cls(dim, cap)
        self.ids = np.zeros(cap, np.int64)
        self.stamps = np.zeros(cap, np.int64)
        self.tidx = np.zeros(cap, np.int64)
        self.boxes = np.zeros((cap, 4), np.float32)
        self.alive = np.zeros(cap, bool)
        self.lo = self.hi = self.dead = 0
        self.min_stamp, self.max_stamp = _I64_MAX, _I64_MIN  # bounds of the live stamps
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
        return self.vecs.nbytes() + self.cap * ROW_META_BYTES

    def meta(self) -> List[np.ndarray]:
        sl = slice(self.lo, self.hi)
        return [self.ids[sl], self.stamps[sl], self.tidx[sl], self.boxes[sl], self.alive[sl]]

    def realloc(self, cap: int, keep: Optional[np.ndarray] = None) -> None:
        """Copy rows [lo, hi) (only those where ``keep``, if given) into arrays of ``cap`` rows."""
        arrays = self.meta()
        if keep is not None:
            arrays = [a[keep] for a in arrays]
        n = int(arrays[0].shape[0])
        cap = max(cap, n)
        new = []
        for a in arrays:
            b = np.zeros((cap,) + a.shape[1:], a.dtype)
            b[:n] = a
            new.append(b)
        self.ids, self.stamps, self.tidx, self.boxes, self.alive = new
        self.vecs = self.vecs.select(self.lo, self.hi, keep, cap)
        self.lo, self.hi = 0, n
        self.dead = int(n - np.count_nonzero(self.alive[:n]))
        self.refresh_bounds()

    def refresh_bounds(self) -> None:
        sl = slice(self.lo, self.hi)
        st = self.stamps[sl][self.alive[sl]]
        self.min_stamp, self.max_stamp = (int(st.min()), int(st.max())) if st.size else (_I64_MAX, _I64_MIN)


class BlockStore:
    """Time-ordered blocks of rows; returns what it removes so the caller can update its tracks."""

    def __init__(self, dim: int, *, block_rows: int = DEFAULT_BLOCK_ROWS, storage: str = "fp32"):
        if block_rows < 16:
            raise ValueError("block_rows must be >= 16")
        if storage not in ROWS:
            raise ValueError(f"gallery storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        self.dim = dim
        self.block_rows = int(block_rows)
        self.storage = storage
        self._rows_cls = ROWS[storage]
        self.blocks: List[Block] = []
        self._bases: List[int] = []  # base_id of each block, for bisect
        self.count = 0  # live rows
        self.next_id = 0

    def __iter__(self) -> Iterator[Block]:
        return iter(self.blocks)

    @property
    def dead_rows(self) -> int:
        return sum(b.dead for b in self.blocks)

    @property
    def total_rows(self) -> int:
        return sum(b.rows for b in self.blocks)

    def oldest_bound(self) -> Optional[int]:
        return min((b.min_stamp for b in self.blocks if b.live), default=None)

    def nbytes(self) -> int:
        return sum(b.nbytes() for b in self.blocks)

    def _new_block(self, base_id: int, cap: int) -> Block:
        blk = Block(base_id, self.dim, cap, self._rows_cls)
        self.blocks.append(blk)
        self._bases.append(base_id)
        return blk

    def append(self, vec: np.ndarray, stamp: int, tidx: int, box: np.ndarray) -> int:
        """Store one row; return its id."""
        blk = self.blocks[-1] if self.blocks else None
        if blk is None or blk.sealed:
            blk = self._new_block(self.next_id, min(MIN_BLOCK_ALLOC, self.block_rows))
        if blk.hi == blk.cap:
            if blk.cap < self.block_rows or blk.lo > 0:
                blk.realloc(min(self.block_rows, max(int(blk.cap * GROWTH), blk.rows + MIN_BLOCK_ALLOC)))
            if blk.hi == blk.cap:  # full at block_rows
                blk.sealed = True
                return self.append(vec, stamp, tidx, box)
        p = blk.hi
        rid = self.next_id
        self.next_id += 1
        blk.vecs.put(p, vec)
        blk.ids[p], blk.stamps[p], blk.tidx[p], blk.boxes[p], blk.alive[p] = rid, stamp, tidx, box, True
        blk.hi = p + 1
        blk.min_stamp, blk.max_stamp = min(blk.min_stamp, stamp), max(blk.max_stamp, stamp)
        if blk.hi == self.block_rows and blk.lo == 0:
            blk.sealed = True
        self.count += 1
        return rid

    def locate(self, rid: int) -> Tuple[Block, int]:
        b = bisect.bisect_right(self._bases, rid) - 1
        blk = self.blocks[b]
        pos = blk.lo + int(np.searchsorted(blk.ids[blk.lo: blk.hi], rid))
        if b < 0 or pos >= blk.hi or blk.ids[pos] != rid:  # pragma: no cover - internal invariant
            raise RuntimeError(f"gallery row {rid} not found")
        return blk, pos

    def gather(self, ids) -> Tuple[np.ndarray, np.ndarray]:
        """Return the vectors (K, D) float32 and stamps (K,) of rows by id."""
        out = np.empty((len(ids), self.dim), np.float32)
        stamps = np.empty(len(ids), np.int64)
        for k, rid in enumerate(ids):
            blk, pos = self.locate(rid)
            out[k] = blk.vecs.get(pos, pos + 1)[0]
            stamps[k] = blk.stamps[pos]
        return out, stamps

    def kill(self, rid: int) -> None:
        """Tombstone one row (replacement / refresh); compacts the block when 1/4 is dead."""
        blk, pos = self.locate(rid)
        blk.alive[pos] = False
        blk.tidx[pos] = -1  # search reads liveness from the track index alone
        blk.vecs.kill(pos)
        blk.dead += 1
        self.count -= 1
        if blk.live == 0 and blk is not self.blocks[-1]:
            self._drop_block(bisect.bisect_right(self._bases, blk.base_id) - 1)
        elif blk.dead * 4 > blk.rows and blk.rows >= 64:
            keep = blk.alive[blk.lo: blk.hi]
            blk.realloc(int(np.count_nonzero(keep)) if blk.sealed else blk.cap, keep)

    def _drop_block(self, i: int) -> None:
        del self.blocks[i]
        del self._bases[i]

    # ------------------------------------------------------------------ eviction
    def evict(self, cutoff: Optional[int], capacity: int) -> Tuple[np.ndarray, np.ndarray]:
        """Remove rows with stamp < cutoff (None = none), then the oldest beyond capacity.

        Returns:
            (ids, track indices) of the removed live rows.
        """
        removed: List[Tuple[np.ndarray, np.ndarray]] = []
        i = 0
        while cutoff is not None and i < len(self.blocks):
            blk = self.blocks[i]
            if blk.min_stamp >= cutoff:
                i += 1
                continue
            if blk.max_stamp < cutoff:
                removed.append(self._cut_head(blk, blk.hi))
            else:
                sl = slice(blk.lo, blk.hi)
                old = blk.alive[sl] & (blk.stamps[sl] < cutoff)
                if old.any():
                    # cut at the head if the expired rows (with the dead ones) form a prefix
                    last = int(np.flatnonzero(old)[-1]) + 1
                    if not blk.alive[blk.lo: blk.lo + last][~old[:last]].any():
                        removed.append(self._cut_head(blk, blk.lo + last))
                    else:  # out-of-order stamps: rebuild the block from its kept rows
                        removed.append((blk.ids[sl][old], blk.tidx[sl][old]))
                        self.count -= int(np.count_nonzero(old))
                        keep = ~old & blk.alive[sl]
                        blk.realloc(int(np.count_nonzero(keep)) if blk.sealed else blk.cap, keep)
                blk.refresh_bounds()
            if self._finish_block(i):
                i += 1
        excess = self.count - capacity
        while excess > 0 and self.blocks:
            blk = self.blocks[0]
            if blk.live <= excess:
                end = blk.hi
            else:
                end = blk.lo + int(np.flatnonzero(blk.alive[blk.lo: blk.hi])[excess - 1]) + 1
            ids, tidx = self._cut_head(blk, end)
            blk.refresh_bounds()
            removed.append((ids, tidx))
            excess -= ids.shape[0]
            self._finish_block(0)
        if not removed:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([r[0] for r in removed]), np.concatenate([r[1] for r in removed])

    def _cut_head(self, blk: Block, end: int) -> Tuple[np.ndarray, np.ndarray]:
        """Remove rows [lo, end) of a block (O(1) besides the returned arrays)."""
        sl = slice(blk.lo, end)
        alive = blk.alive[sl]
        n = int(np.count_nonzero(alive))
        out = (blk.ids[sl][alive], blk.tidx[sl][alive])
        blk.dead -= int(end - blk.lo - n)
        blk.lo = end
        self.count -= n
        return out

    def _finish_block(self, i: int) -> bool:
        """Drop block i if empty, compact it if its unused head is large. True if it is kept."""
        blk = self.blocks[i]
        if blk.live == 0:
            self._drop_block(i)
            return False
        if blk.lo * 8 > blk.cap:
            keep = blk.alive[blk.lo: blk.hi]
            blk.realloc(blk.live if blk.sealed else max(MIN_BLOCK_ALLOC, blk.rows), keep)
        return True

    # ------------------------------------------------------------------ snapshot
    def export(self) -> dict:
        """Live rows as flat arrays (vectors as float32)."""
        parts = [(b, b.alive[b.lo: b.hi]) for b in self.blocks]
        out = {}
        for name, k, shape, dtype in (("ids", 0, (0,), np.int64), ("stamps", 1, (0,), np.int64),
                                      ("row_tidx", 2, (0,), np.int64), ("boxes", 3, (0, 4), np.float32)):
            chunks = [b.meta()[k][m] for b, m in parts]
            out[name] = np.concatenate(chunks) if chunks else np.zeros(shape, dtype)
        chunks = [b.vecs.get(b.lo, b.hi)[m] for b, m in parts]
        out["vectors"] = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return out

    def restore(self, vectors, ids, stamps, row_tidx, boxes, next_id: int) -> None:
        """Refill an empty store from export()'s arrays (checked by the caller)."""
        n = ids.shape[0]
        for start in range(0, n, self.block_rows):
            end = min(n, start + self.block_rows)
            blk = self._new_block(int(ids[start]), end - start)
            blk.vecs = self._rows_cls(self.dim, end - start, vectors[start:end])
            for dst, src in ((blk.ids, ids), (blk.stamps, stamps), (blk.tidx, row_tidx), (blk.boxes, boxes)):
                dst[:] = src[start:end]
            blk.alive[:] = True
            blk.hi = end - start
            blk.sealed = True
            blk.refresh_bounds()
        self.count = n
        self.next_id = next_id

"""What every gallery backend shares: the protocol, the errors, the input checks."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np

from person_search.core.types import Box, EmbeddingBatch, TrackMatch


class GalleryMismatchError(ValueError):
    """Embeddings (or a snapshot) of another model or dimension than the gallery's."""


class GalleryBackendError(ValueError):
    """The gallery's backend (a Milvus server or file) cannot be reached or refused an operation."""


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


@runtime_checkable
class Gallery(Protocol):
    """What the index node, the query engine and the offline pipeline need from a gallery.

    Implemented by :class:`RollingGallery` (FAISS, embedded) and :class:`MilvusGallery`.
    """

    model_id: str
    dim: int

    def add(self, batch: EmbeddingBatch) -> int:
        """Add one frame's embeddings; return the number of vectors stored."""

    def search(self, query: np.ndarray, top_k: int, *, min_score: float = -1.0, since_ns: Optional[int] = None,
               until_ns: Optional[int] = None, source_id: Optional[str] = None) -> List[TrackMatch]:
        """Return the best distinct tracks for a query embedding, best first."""

    def evict(self, now_ns: Optional[int] = None) -> int:
        """Apply the time window and the capacity; return the number of vectors removed."""

    def __len__(self) -> int:
        """Return the number of vectors held."""

    @property
    def num_tracks(self) -> int:
        """Return the number of tracks held."""

    def tracks(self) -> List[TrackInfo]:
        """All tracks, oldest first."""

    def stats(self) -> Dict[str, object]:
        """Counters and sizes for diagnostics."""

    def save(self, path: str | os.PathLike) -> Optional[Path]:
        """Persist the gallery (a snapshot file, or a flush for a server-side store)."""

    def close(self) -> None:
        """Release connections and files."""


def check_batch(batch: EmbeddingBatch, *, model_id: str, dim: int) -> np.ndarray:
    """Validate a batch against a gallery; return its rows as L2-normalised float32.

    Raises:
        GalleryMismatchError: the batch's model_id or dim differs from the gallery's.
        ValueError: malformed batch or non-finite / zero rows.
    """
    if batch.model_id != model_id:
        raise GalleryMismatchError(
            f"embedding model mismatch: batch is from model {batch.model_id!r} but the gallery holds "
            f"{model_id!r} embeddings (clear the gallery or use the same model)"
        )
    v = np.asarray(batch.vectors)
    if v.ndim != 2:
        raise ValueError(f"batch.vectors must be 2-D (N, D), got shape {v.shape}")
    if v.shape[1] != dim:
        raise GalleryMismatchError(
            f"embedding dimension mismatch: batch vectors have dim {v.shape[1]} but the gallery holds dim {dim} "
            f"(model {model_id!r})"
        )
    n = v.shape[0]
    if np.asarray(batch.track_ids).reshape(-1).shape[0] != n:
        raise ValueError(f"batch.track_ids must have {n} entries")
    if np.asarray(batch.boxes).size != 4 * n:
        raise ValueError(f"batch.boxes must have shape ({n}, 4)")
    quals = batch.qualities if batch.qualities is not None else batch.scores
    if np.asarray(quals).reshape(-1).shape[0] != n:
        raise ValueError(f"batch.{'qualities' if batch.qualities is not None else 'scores'} must have {n} entries")
    if batch.crops_jpeg and len(batch.crops_jpeg) != n:
        raise ValueError(f"batch.crops_jpeg must be empty or have {n} entries, got {len(batch.crops_jpeg)}")
    if n == 0:
        return np.zeros((0, dim), np.float32)
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


class BatchRows(NamedTuple):
    """A checked batch, unpacked: unit float32 rows and per-row arrays."""

    vecs: np.ndarray
    stamp: int
    source_id: str
    track_ids: np.ndarray
    boxes: np.ndarray
    quals: np.ndarray
    crops: List[bytes]
    frame: bytes


def unpack_batch(batch: EmbeddingBatch, *, model_id: str, dim: int) -> Optional[BatchRows]:
    """Check a batch (see check_batch) and unpack it; None when it has no rows."""
    vecs = check_batch(batch, model_id=model_id, dim=dim)
    n = vecs.shape[0]
    if n == 0:
        return None
    quals = batch.qualities if batch.qualities is not None else batch.scores
    return BatchRows(vecs, int(batch.stamp_ns), str(batch.source_id),
                     np.asarray(batch.track_ids).reshape(-1).astype(np.int64),
                     np.asarray(batch.boxes, np.float32).reshape(n, 4), np.asarray(quals, np.float64).reshape(-1),
                     list(batch.crops_jpeg) if batch.crops_jpeg else [b""] * n, bytes(batch.frame_jpeg or b""))


def check_query(query: np.ndarray, top_k: int, min_score: float, *, dim: int, model_id: str) -> np.ndarray:
    """Validate a search request; return the query as a (1, D) L2-normalised float32 array."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, not {top_k!r}")
    if not math.isfinite(float(min_score)):
        raise ValueError(f"min_score must be finite, not {min_score!r}")
    q = np.asarray(query)
    if q.ndim == 2 and q.shape[0] == 1:
        q = q[0]
    if q.ndim != 1:
        raise ValueError(f"query must be a (D,) or (1, D) vector, got shape {q.shape}")
    if q.shape[0] != dim:
        raise ValueError(f"query has dim {q.shape[0]} but the gallery holds dim {dim} (model {model_id!r})")
    if q.dtype.kind not in "fiu":
        raise ValueError(f"query must be numbers, not {q.dtype}")
    q = np.array(q, dtype=np.float32)
    nrm = math.sqrt(float(np.dot(q, q)))
    if not math.isfinite(nrm):
        raise ValueError("query has non-finite values")
    if nrm <= 1e-12:
        raise ValueError("query is an all-zero vector")
    q /= nrm
    return q.reshape(1, -1)


def check_identity(dim: int, model_id: str) -> int:
    """Refuse a bad gallery dim / model id; return the dim as int."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"gallery dim must be a positive integer, not {dim!r}")
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"gallery model_id must be a non-empty string, not {model_id!r}")
    return int(dim)

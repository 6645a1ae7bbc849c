"""Gallery snapshots: one ``.npz`` of numeric arrays (no pickle) with a JSON metadata record.

Written atomically (temporary file in the same folder + ``os.replace``), read with
``allow_pickle=False``; every way a file can be wrong ends in one :class:`SnapshotError`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from person_search.core.gallery.base import GalleryMismatchError, SnapshotError

SNAPSHOT_FORMAT = "person_search.gallery"
SNAPSHOT_VERSION = 1


def write(path: str | os.PathLike, meta: dict, arrays: Dict[str, np.ndarray]) -> Path:
    """Write arrays plus ``meta`` (JSON) to ``path`` atomically."""
    path = Path(path)
    meta = dict(meta, format=SNAPSHOT_FORMAT, version=SNAPSHOT_VERSION)
    arrays = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8))
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
    return path


def read(path: str | os.PathLike, *, model_id: Optional[str] = None,
         dim: Optional[int] = None) -> Tuple[Dict[str, np.ndarray], dict]:
    """Read a snapshot's arrays and metadata.

    Raises:
        SnapshotError: missing, unreadable, corrupt or unknown-format file.
        GalleryMismatchError: ``model_id`` / ``dim`` given and different from the snapshot's.
    """
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"gallery snapshot not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise SnapshotError(f"gallery snapshot {path} is corrupt or unreadable: {_reason(e)}") from e
    if not isinstance(z, np.lib.npyio.NpzFile):  # a plain .npy array: never a snapshot
        raise SnapshotError(f"{path} is not a person_search gallery snapshot (a single array, not an .npz)")
    try:
        with z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise SnapshotError(f"gallery snapshot {path} is corrupt or unreadable: {_reason(e)}") from e
    if "meta" not in a:
        raise SnapshotError(f"{path} is not a person_search gallery snapshot (no 'meta' entry)")
    try:
        meta = json.loads(a.pop("meta").tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"{path} is not a person_search gallery snapshot")
        if meta.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(f"gallery snapshot {path} has format version {meta.get('version')!r}; "
                                f"this build reads {SNAPSHOT_VERSION}")
        snap_model, snap_dim = str(meta["model_id"]), int(meta["dim"])
    except SnapshotError:
        raise
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise SnapshotError(f"gallery snapshot {path} has corrupt metadata: {e}") from e
    if model_id is not None and model_id != snap_model:
        raise GalleryMismatchError(f"gallery snapshot {path} holds embeddings of model {snap_model!r}, "
                                   f"but the running model is {model_id!r}")
    if dim is not None and int(dim) != snap_dim:
        raise GalleryMismatchError(f"gallery snapshot {path} holds dim {snap_dim} embeddings, "
                                   f"but the running model has dim {dim}")
    return a, meta


def _reason(e: BaseException) -> str:
    """Say why numpy refused a file, without numpy's hint to load pickled objects (never safe here)."""
    text = str(e)
    if "allow_pickle" in text:
        return "it holds pickled Python objects, which a snapshot never does (not loaded: unsafe)"
    return text


def check_rows(a: Dict[str, np.ndarray], dim: int) -> int:
    """Check the row and track tables of a snapshot's arrays; return the number of rows."""
    vecs = a["vectors"]
    n = vecs.shape[0] if vecs.ndim == 2 else -1
    if vecs.dtype != np.float32 or vecs.ndim != 2 or vecs.shape[1] != dim:
        raise ValueError(f"vectors have shape {vecs.shape} / {vecs.dtype}, expected (N, {dim}) float32")
    for name in ("ids", "stamps", "row_tidx"):
        if a[name].shape != (n,):
            raise ValueError(f"{name} has shape {a[name].shape}, expected ({n},)")
    if a["boxes"].shape != (n, 4) or not np.isfinite(vecs).all():
        raise ValueError("boxes or vectors malformed")
    if n > 1 and not (np.diff(a["ids"]) > 0).all():
        raise ValueError("row ids are not strictly increasing")
    nt = a["t_tidx"].shape[0]
    for name in ("t_source", "t_track_id", "t_first", "t_last", "t_best_quality"):
        if a[name].shape != (nt,):
            raise ValueError(f"{name} has shape {a[name].shape}, expected ({nt},)")
    if a["t_last_box"].shape != (nt, 4) or a["crop_off"].shape != (nt + 1,) or a["frame_off"].shape != (nt + 1,):
        raise ValueError("track table malformed")
    if int(a["crop_off"][-1]) != a["crop_data"].size or int(a["frame_off"][-1]) != a["frame_data"].size:
        raise ValueError("thumbnail data truncated")
    return n


def pack_blobs(blobs) -> Tuple[np.ndarray, np.ndarray]:
    """Return (offsets (n+1,), concatenated uint8 data) of a list of byte strings."""
    off = np.zeros(len(blobs) + 1, np.int64)
    off[1:] = np.cumsum([len(b) for b in blobs]) if blobs else []
    return off, np.frombuffer(b"".join(blobs), np.uint8)


def unpack_blob(off: np.ndarray, data: bytes, i: int) -> bytes:
    return data[int(off[i]): int(off[i + 1])]

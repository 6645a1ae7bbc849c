"""MilvusGallery: the gallery in Milvus, shared by several index nodes (``gallery.backend: milvus``).

``gallery.milvus_uri`` is a local ``.db`` path (Milvus Lite, embedded: one process only)
or ``http://host:19530`` (a Milvus server or cluster, or ``milvus-lite server`` on one
machine), so that the index nodes of a fleet write one gallery and every query sees all
cameras. The token comes from the ``MILVUS_TOKEN`` environment variable, never from YAML.

Layout: two collections per model id and dimension (names from a slug of the model id,
its SHA-1 and the dim, so two models never share one):

* ``<base>_rows``: one row per kept embedding: ``pk`` (this writer's id << 40 | its row
  counter), ``vec`` (FLAT index, inner product), ``source_id``, ``track_id``, ``stamp``,
  ``box``.
* ``<base>_tracks``: one row per track (key ``"<source_id>#<track_id>"``): first / last
  seen, last box, number of kept embeddings, and the JPEG crop and frame thumbnail of its
  best observation as base64 text (VARCHAR, up to 64 KiB each: the gallery's 256 px crops
  and 480 px frame thumbnails fit; a larger one is left out). So any reader, in any
  process, returns crops and frames without a second store.

With re-id, a third collection per re-id model, ``ps_persons_<slug>_<sha>_d<dim>``
(:class:`MilvusPersons`, from :meth:`MilvusGallery.person_store`), holds every writer's
decided tracks for the person linkers (key, writer, person id, camera, track id, first /
last seen, crops seen, ``vec`` = the track's unit mean re-id feature), so that a track
seen by robot B joins the person robot A already knows (``core/gallery/persons.py``).

Per-track aggregation is the FAISS gallery's (:func:`policy.choose`): each writer keeps
a local mirror of *its own* rows (vectors, stamps, tracks, thumbnails within
``thumb_budget_bytes``) to decide which embeddings a track keeps, and writes the result
(insert, delete by pk, upsert of the track rows). Eviction: the window is applied to the
whole shared gallery with delete expressions on the time fields (``stamp < cutoff`` on
rows, ``last_seen < cutoff`` on tracks), at most once per second of data; ``capacity``
bounds each writer's own rows (the oldest go first).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from person_search.core.config import GalleryConfig
from person_search.core.gallery.base import GalleryBackendError, TrackInfo, check_identity, check_query, unpack_batch
from person_search.core.gallery.persons import SharedTrack
from person_search.core.gallery.policy import Aggregator, Track, TrackTable
from person_search.core.gallery.search import best_per_track
from person_search.core.gallery.store import BlockStore
from person_search.core.gallery.thumbs import ThumbBudget
from person_search.core.types import EmbeddingBatch, TrackMatch

log = logging.getLogger(__name__)

TOKEN_ENV = "MILVUS_TOKEN"
MAX_LIMIT = 16384  # Milvus' largest search limit / query page
MAX_VARCHAR = 65535
_WRITER_SHIFT = 40
_SWEEP_NS = 1_000_000_000
_TRACK_FIELDS = ["key", "source_id", "track_id", "first_seen", "last_seen", "box", "num_embeddings", "crop", "frame"]


def collection_names(model_id: str, dim: int) -> Tuple[str, str]:
    """Return the (rows, tracks) collection names of a model id and dimension."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_")[:40] or "model"
    base = f"ps_{slug}_{hashlib.sha1(model_id.encode('utf-8')).hexdigest()[:12]}_d{int(dim)}"
    return base + "_rows", base + "_tracks"


def no_grpc_fork_support() -> None:
    """Turn gRPC's fork support off (unless set) in this process; it must run before gRPC loads.

    gRPC (under pymilvus and milvus-lite) restarts its poller in a forked child by default, and a
    ``subprocess.Popen`` child, whose fds are closed before exec, then dies with SIGABRT
    (grpc/grpc#43055). A process that uses Milvus and also starts processes needs it off.
    """
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def connect(uri: str):
    """Open a MilvusClient on a Milvus Lite file or a server; GalleryBackendError when that fails."""
    no_grpc_fork_support()
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise GalleryBackendError("gallery.backend=milvus needs pymilvus (and milvus-lite for a .db file): "
                                  "pip install -r requirements.txt") from exc
    if not (uri.endswith(".db") or re.match(r"^(https?|tcp)://[^/]+", uri)):
        raise GalleryBackendError(f"gallery.milvus_uri {uri!r} is neither a local .db file nor http(s)://host:port")
    if uri.endswith(".db") and "://" not in uri:
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    token = os.environ.get(TOKEN_ENV, "")
    try:
        return MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises its own and grpc's errors
        raise GalleryBackendError(f"cannot open Milvus at {uri}: {exc}") from exc


def _lit(value: str) -> str:
    """Return a string as a Milvus filter literal (Milvus Lite has no filter templates)."""
    return json.dumps(value, ensure_ascii=False)


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return text if len(text) <= MAX_VARCHAR else ""


class MilvusGallery:
    """The gallery protocol over Milvus collections; see the module docstring.

    Args:
        cfg: gallery configuration (window_s, capacity, max_per_track, diversity,
            thumb_budget_bytes, milvus_uri).
        dim: embedding dimension; model_id: the embedding model.
        uri: overrides ``cfg.milvus_uri``.
    """

    def __init__(self, cfg: GalleryConfig, *, dim: int, model_id: str, uri: Optional[str] = None):
        self.dim = check_identity(dim, model_id)
        self.cfg, self.model_id = cfg, model_id
        self.uri = uri or cfg.milvus_uri
        self._window_ns = int(round(cfg.window_s * 1e9))
        self._client = connect(self.uri)
        self.rows_name, self.tracks_name = collection_names(model_id, self.dim)
        self._writer = secrets.randbits(22) + 1
        self._mirror = BlockStore(self.dim)  # this writer's own rows
        self._tracks = TrackTable()
        self._thumbs = ThumbBudget(cfg.thumb_budget_bytes)
        self._agg = Aggregator(self._mirror, self._tracks, self._thumbs, diversity=cfg.diversity,
                               max_per_track=cfg.max_per_track, window_ns=self._window_ns)
        self._lock = threading.Lock()
        self._swept_ns: Optional[int] = None
        self._counts: Dict[str, Optional[int]] = {}  # last counts, for diagnostics while Milvus is away
        self._n_added = self._n_searches = 0
        self._persons: Optional["MilvusPersons"] = None
        self._call(self._ensure_collections)
        log.info("Milvus gallery at %s: collections %s, %s", self.uri, self.rows_name, self.tracks_name)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GalleryBackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - MilvusException, grpc errors
            raise GalleryBackendError(f"Milvus at {self.uri}: {exc}") from exc

    def _ensure_collections(self) -> None:
        from pymilvus import DataType
        c = self._client
        for name, vec_field, dim in ((self.rows_name, "vec", self.dim), (self.tracks_name, "v", 2)):
            if c.has_collection(name):
                c.load_collection(name)
                continue
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            if name == self.rows_name:
                schema.add_field("pk", DataType.INT64, is_primary=True)
                schema.add_field("stamp", DataType.INT64)
            else:  # Milvus wants a vector field in every collection: a 2-d placeholder
                schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=600)
                for f in ("first_seen", "last_seen", "num_embeddings"):
                    schema.add_field(f, DataType.INT64)
                for f in ("crop", "frame"):
                    schema.add_field(f, DataType.VARCHAR, max_length=MAX_VARCHAR)
            schema.add_field(vec_field, DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("source_id", DataType.VARCHAR, max_length=512)
            schema.add_field("track_id", DataType.INT64)
            schema.add_field("box", DataType.ARRAY, element_type=DataType.FLOAT, max_capacity=4)
            index = c.prepare_index_params()
            index.add_index(field_name=vec_field, index_type="FLAT", metric_type="IP")
            try:
                c.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
            except Exception:  # noqa: BLE001 - another index node may have created it since the check
                time.sleep(0.5)
                if not c.has_collection(name):
                    raise
                c.load_collection(name)

    # ------------------------------------------------------------------ read-only views
    def _count(self, name: str) -> int:
        """Count a collection's rows; while Milvus is unreachable, the last count (and one warning)."""
        try:
            n = int(self._call(self._client.query, name, filter="", output_fields=["count(*)"])[0]["count(*)"])
        except GalleryBackendError as exc:
            if self._counts.get("error") is None:
                log.warning("gallery counts unavailable, reporting the last ones: %s", exc)
            self._counts["error"] = 1
            return self._counts.get(name, 0)
        self._counts[name], self._counts["error"] = n, None
        return n

    def __len__(self) -> int:
        return self._count(self.rows_name)

    @property
    def num_tracks(self) -> int:
        return self._count(self.tracks_name)

    @property
    def newest_ns(self) -> Optional[int]:
        return self._agg.newest_ns

    def tracks(self) -> List[TrackInfo]:
        """All tracks of the shared gallery (at most 16384), oldest first."""
        rows = self._call(self._client.query, self.tracks_name, filter="", output_fields=_TRACK_FIELDS,
                          limit=MAX_LIMIT)
        rows.sort(key=lambda r: (r["first_seen"], r["source_id"], r["track_id"]))
        return [TrackInfo(r["source_id"], int(r["track_id"]), int(r["first_seen"]), int(r["last_seen"]),
                          tuple(float(x) for x in r["box"]), int(r["num_embeddings"]),
                          len(base64.b64decode(r["crop"])), len(base64.b64decode(r["frame"]))) for r in rows]

    def stats(self) -> Dict[str, object]:
        with self._lock:
            own = self._mirror.count
        return {"backend": "milvus", "uri": self.uri, "collection": self.rows_name, "model_id": self.model_id,
                "dim": self.dim, "vectors": len(self), "tracks": self.num_tracks, "own_vectors": own,
                "own_tracks": len(self._tracks), "thumb_bytes": self._thumbs.bytes, "newest_ns": self._agg.newest_ns,
                "added_total": self._n_added, "searches_total": self._n_searches, "window_s": self.cfg.window_s,
                "capacity": self.cfg.capacity}

    # ------------------------------------------------------------------ add / evict
    def _pk(self, rid) -> int:
        return (self._writer << _WRITER_SHIFT) | int(rid)

    def add(self, batch: EmbeddingBatch) -> int:
        """Add one frame's embeddings; returns the number of vectors stored (see RollingGallery.add)."""
        b = unpack_batch(batch, model_id=self.model_id, dim=self.dim)
        if b is None:
            return 0
        with self._lock:
            if not self._agg.accept(b.stamp):
                return 0
            new_rows, dead, touched = [], [], set()
            for i, tr, rid, removed in self._agg.observe(b):
                if removed is not None:
                    dead.append(self._pk(removed))
                if rid is not None:
                    new_rows.append(dict(pk=self._pk(rid), vec=b.vecs[i].tolist(), source_id=b.source_id,
                                         track_id=tr.track_id, stamp=b.stamp, box=b.boxes[i].tolist()))
                touched.add(tr.tidx)
            self._n_added += len(new_rows)
            self._write(new_rows, dead, touched, self._agg.newest_ns)
            return len(new_rows)

    def _write(self, new_rows: list, dead: list, touched: set, now_ns: int) -> None:
        """Apply the eviction, then send this add's changes to Milvus."""
        ids, tidx, gone = self._agg.evict(now_ns, self.cfg.capacity)
        dead += [self._pk(r) for r in ids.tolist()]
        touched.update(tidx.tolist())
        self._thumbs.enforce(self._tracks)
        c = self._client
        if dead:
            self._call(c.delete, self.rows_name, ids=dead)
        if new_rows:
            self._call(c.insert, self.rows_name, new_rows)
        upserts = [self._track_row(self._tracks[t]) for t in touched if t in self._tracks.by_tidx]
        if upserts:
            self._call(c.upsert, self.tracks_name, upserts)
        if gone:
            self._call(c.delete, self.tracks_name, ids=[f"{t.source_id}#{t.track_id}" for t in gone])
        if self._swept_ns is None or now_ns - self._swept_ns >= _SWEEP_NS:
            self._sweep(now_ns)

    def _track_row(self, tr: Track) -> dict:
        return dict(key=f"{tr.source_id}#{tr.track_id}", source_id=tr.source_id, track_id=tr.track_id,
                    first_seen=tr.first_seen_ns, last_seen=tr.last_seen_ns,
                    box=np.frombuffer(tr.last_box, np.float32).tolist(), num_embeddings=len(tr.ids),
                    crop=_b64(tr.crop_jpeg), frame=_b64(tr.frame_jpeg), v=[0.0, 0.0])

    def _sweep(self, now_ns: int) -> int:
        """Apply the window to every writer's rows and tracks; return the rows deleted."""
        cutoff = int(now_ns - self._window_ns)
        res = self._call(self._client.delete, self.rows_name, filter=f"stamp < {cutoff}")
        self._call(self._client.delete, self.tracks_name, filter=f"last_seen < {cutoff}")
        if self._persons is not None:
            self._call(self._client.delete, self._persons.name, filter=f"last_seen < {cutoff}")
        self._swept_ns = now_ns
        return int(res.get("delete_count", 0)) if isinstance(res, dict) else 0

    def evict(self, now_ns: Optional[int] = None) -> int:
        """Drop every vector with ``stamp_ns < now_ns - window_s`` (all writers) and this writer's beyond capacity.

        Returns:
            Number of vectors removed from the shared gallery.
        """
        with self._lock:
            now = self._agg.newest_ns if now_ns is None else int(now_ns)
            if now is None:
                return 0
            before = len(self)
            self._write([], [], set(), now)
            self._sweep(now)
            return before - len(self)

    # ------------------------------------------------------------------ search
    def search(self, query: np.ndarray, top_k: int, *, min_score: float = -1.0, since_ns: Optional[int] = None,
               until_ns: Optional[int] = None, source_id: Optional[str] = None) -> List[TrackMatch]:
        """Best tracks of the shared gallery for a query embedding, best first (see RollingGallery.search)."""
        q = check_query(query, top_k, min_score, dim=self.dim, model_id=self.model_id)[0].tolist()
        self._n_searches += 1
        expr = f"source_id == {_lit(source_id)}" if source_id is not None else ""
        limit = min(MAX_LIMIT, int(top_k) * self.cfg.max_per_track + 16)
        while True:
            hits = self._call(self._client.search, self.rows_name, data=[q], limit=limit, filter=expr,
                              output_fields=["source_id", "track_id", "box"],
                              search_params={"metric_type": "IP"})[0]
            out, complete = self._collect(hits, int(top_k), float(min_score), since_ns, until_ns)
            if complete or len(hits) < limit or limit >= MAX_LIMIT:
                return out
            limit = min(MAX_LIMIT, limit * 4)

    def _collect(self, hits, top_k, min_score, since_ns, until_ns) -> Tuple[List[TrackMatch], bool]:
        if not hits:
            return [], True
        ent = [h["entity"] for h in hits]
        keys = [f"{e['source_id']}#{e['track_id']}" for e in ent]
        group_of: Dict[str, int] = {}
        group = np.array([group_of.setdefault(k, len(group_of)) for k in keys], np.int64)
        scores = np.array([h["distance"] for h in hits], np.float32)
        best = best_per_track(scores, np.arange(len(hits)), group, scores >= min_score)
        want = [keys[r] for r in best.tolist()]
        expr = f"key in [{', '.join(_lit(k) for k in want)}]"
        if since_ns is not None:
            expr += f" and last_seen >= {int(since_ns)}"
        if until_ns is not None:
            expr += f" and first_seen <= {int(until_ns)}"
        rows = self._call(self._client.query, self.tracks_name, filter=expr, output_fields=_TRACK_FIELDS,
                          limit=max(1, len(want))) if want else []
        meta = {r["key"]: r for r in rows}
        out = []
        for r in best.tolist():
            t = meta.get(keys[r])
            if t is None:
                continue
            out.append(TrackMatch(track_id=int(t["track_id"]), score=float(scores[r]), source_id=t["source_id"],
                                  first_seen_ns=int(t["first_seen"]), last_seen_ns=int(t["last_seen"]),
                                  box=tuple(float(x) for x in ent[r]["box"]), crop_jpeg=base64.b64decode(t["crop"]),
                                  frame_jpeg=base64.b64decode(t["frame"]), num_embeddings=int(t["num_embeddings"])))
            if len(out) == top_k:
                return out, True
        return out, bool(scores.min() < min_score)

    # ------------------------------------------------------------------ persons
    def person_store(self, model_id: str, dim: int) -> "MilvusPersons":
        """Return the shared store of decided re-id tracks of a re-id model (created on first use)."""
        if self._persons is None or (self._persons.model_id, self._persons.dim) != (model_id, int(dim)):
            self._persons = MilvusPersons(self, model_id, int(dim))
        return self._persons

    # ------------------------------------------------------------------ lifetime
    def save(self, path=None) -> None:
        """Nothing to write: Milvus keeps the gallery (``gallery.snapshot_path`` stays empty)."""

    def close(self) -> None:
        """Close the connection (the gallery stays in Milvus)."""
        self._client.close()

    def __repr__(self) -> str:
        return f"MilvusGallery(uri={self.uri!r}, collection={self.rows_name!r})"


_PERSON_FIELDS = ["key", "writer", "person", "source_id", "track_id", "first_seen", "last_seen", "n", "updated", "vec"]


class MilvusPersons:
    """The decided re-id tracks of every writer in one Milvus collection (:class:`persons.SharedPersons`).

    Person ids of this writer are ``writer << 24 | counter`` (``id_base``), so that robots
    that link on their own never hand out the same id.
    """

    def __init__(self, gallery: MilvusGallery, model_id: str, dim: int):
        self.model_id, self.dim = model_id, check_identity(dim, model_id)
        self._g, self._client = gallery, gallery._client
        self.writer = gallery._writer
        self.id_base = self.writer << 24
        slug = re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_")[:40] or "reid"
        # v2: rows carry ``updated`` (the writer's clock at upsert) for incremental reads
        self.name = f"ps_persons_{slug}_{hashlib.sha1(model_id.encode('utf-8')).hexdigest()[:12]}_d{self.dim}_v2"
        self._g._call(self._ensure)

    def _ensure(self) -> None:
        from pymilvus import DataType
        c = self._client
        if c.has_collection(self.name):
            c.load_collection(self.name)
            return
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=600)
        for f in ("writer", "person", "track_id", "first_seen", "last_seen", "n", "updated"):
            schema.add_field(f, DataType.INT64)
        schema.add_field("source_id", DataType.VARCHAR, max_length=512)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=self.dim)
        index = c.prepare_index_params()
        index.add_index(field_name="vec", index_type="FLAT", metric_type="IP")
        try:
            c.create_collection(self.name, schema=schema, index_params=index, consistency_level="Strong")
        except Exception:  # noqa: BLE001 - another index node may have created it since the check
            time.sleep(0.5)
            if not c.has_collection(self.name):
                raise
            c.load_collection(self.name)

    def put(self, tracks) -> None:
        """Upsert this writer's decided tracks, stamped with this writer's clock (``updated``)."""
        now = time.time_ns()
        rows = [dict(key=f"{t.source_id}#{t.track_id}", writer=self.writer, person=int(t.person),
                     source_id=t.source_id, track_id=int(t.track_id), first_seen=int(t.first_ns),
                     last_seen=int(t.last_ns), n=int(t.n), updated=now, vec=np.asarray(t.mean, np.float32).tolist())
                for t in tracks]
        if rows:
            self._g._call(self._client.upsert, self.name, rows)

    def remove(self, keys) -> None:
        """Delete this writer's tracks (forgotten by its linker)."""
        if keys:
            self._g._call(self._client.delete, self.name, ids=[f"{s}#{t}" for s, t in keys])

    def others(self, since: Optional[Dict[int, int]] = None) -> List[SharedTrack]:
        """Return the other writers' decided tracks (at most 16384).

        With ``since`` ({writer: updated_ns}): of the writers named there only the rows updated
        at or after their stamp (each writer's own clock, so clocks need not agree), of the
        others every row.
        """
        expr = f"writer != {self.writer}"
        if since:
            named = ", ".join(str(int(w)) for w in since)
            parts = [f"(writer == {int(w)} and updated >= {int(ns)})" for w, ns in since.items()]
            expr += f" and ({' or '.join(parts)} or writer not in [{named}])"
        rows = self._g._call(self._client.query, self.name, filter=expr, output_fields=_PERSON_FIELDS,
                             limit=MAX_LIMIT)
        return [SharedTrack(r["source_id"], int(r["track_id"]), int(r["person"]), int(r["first_seen"]),
                            int(r["last_seen"]), int(r["n"]), np.asarray(r["vec"], np.float32),
                            writer=int(r["writer"]), updated_ns=int(r["updated"])) for r in rows]

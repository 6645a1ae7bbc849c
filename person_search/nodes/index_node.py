"""Index node: the rolling gallery of everyone seen, tracks linked into persons; answers ``search_gallery``.

Re-id features in the embeddings feed a :class:`~person_search.core.gallery.persons.PersonLinker`
(``reid.*``); answers are one match per person unless a request asks ``by_track``. The
persons are saved next to the gallery snapshot (``<snapshot>.persons.npz``; with Milvus
Lite next to its ``.db``) and restored with it. ``~/similar_tracks`` ranks tracks by re-id.
With the Milvus gallery the decided tracks are shared through it, so a track of this robot
joins a person another robot's index node knows (``core/gallery/persons.py``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Int64

from person_search.core.config import GalleryConfig, ReidConfig
from person_search.core.gallery import GalleryMismatchError, RollingGallery, SnapshotError, make_gallery
from person_search.core.gallery.persons import PersonLinker, persons_path, search_persons
from person_search.core.types import TrackMatch
from person_search.nodes.convert import match_to_msg, msg_to_batch, ns_to_time, time_to_ns
from person_search.nodes.diagnostics import StageStats
from person_search.nodes.params import declare_section
from person_search.nodes.qos import RELIABLE_QOS, SERVICE_QOS, publisher, subscription
from person_search.nodes.runner import run_node


class IndexNode(Node):
    """Subscribes ``person_embeddings``; serves ``~/search_gallery``, publishes ``~/gallery_size``; snapshots."""

    def __init__(self):
        super().__init__("index")
        self.cfg: GalleryConfig = declare_section(self, "gallery", GalleryConfig)
        self.reid_cfg: ReidConfig = declare_section(self, "reid", ReidConfig)
        self.lock = threading.Lock()
        self.gallery: Optional[RollingGallery] = None
        self._dirty = False
        self.persons_file = self._persons_file()
        self.linker = PersonLinker(self.reid_cfg, window_s=self.cfg.window_s)
        if self.persons_file and os.path.exists(self.persons_file):
            try:
                self.linker = PersonLinker.load(self.persons_file, self.reid_cfg, window_s=self.cfg.window_s)
                self.get_logger().info(f"persons restored from {self.persons_file}: {self.linker.stats()}")
            except ValueError as exc:
                self.get_logger().error(f"persons file unreadable, starting without persons: {exc}")
        if self.cfg.snapshot_path and os.path.exists(self.cfg.snapshot_path):
            try:
                self.gallery = RollingGallery.load(self.cfg.snapshot_path, self.cfg)
                self.get_logger().info(f"gallery restored from {self.cfg.snapshot_path}: {len(self.gallery)} "
                                       f"embeddings, {self.gallery.num_tracks} tracks, model {self.gallery.model_id}")
            except SnapshotError as exc:
                aside = f"{self.cfg.snapshot_path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
                os.replace(self.cfg.snapshot_path, aside)
                self.get_logger().error(f"snapshot unreadable, moved aside to {aside}; starting empty: {exc}")
        from person_search_interfaces.msg import PersonEmbeddings
        from person_search_interfaces.srv import SearchGallery, SimilarTracks
        self.stats = StageStats(self, "index")  # age here = capture -> searchable
        subscription(self, PersonEmbeddings, "person_embeddings", self.on_embeddings, RELIABLE_QOS, stats=self.stats)
        self.create_service(SearchGallery, "~/search_gallery", self.on_search, qos_profile=SERVICE_QOS,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(SimilarTracks, "~/similar_tracks", self.on_similar, qos_profile=SERVICE_QOS,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.pub_size = publisher(self, Int64, "~/gallery_size", RELIABLE_QOS)
        self._batches = 0
        self.create_timer(1.0, self._publish_size)
        if self.persons_file:
            self.create_timer(self.cfg.snapshot_interval_s, self.save_snapshot)

    def on_embeddings(self, msg) -> None:
        t0 = time.monotonic()
        try:
            batch = msg_to_batch(msg)
            with self.lock:
                if self.gallery is None:
                    # the first batch sets the gallery's model and dim only if it is valid itself
                    gallery = make_gallery(self.cfg, dim=batch.dim, model_id=batch.model_id)
                    gallery.add(batch)
                    self.gallery = gallery
                    self.get_logger().info(f"gallery started: model {batch.model_id}, dim {batch.dim}")
                else:
                    self.gallery.add(batch)
                if batch.reid_vectors is not None and self.reid_cfg.enabled:
                    try:
                        self._share_persons(batch)
                        self.linker.observe(batch.source_id, batch.track_ids.tolist(), batch.stamp_ns,
                                            batch.reid_vectors, batch.reid_model_id)
                    except ValueError as exc:  # another re-id model: the gallery keeps the batch
                        self.get_logger().error(f"re-id features refused: {exc}", throttle_duration_sec=5.0)
                    self._batches += 1
                    if self._batches % 100 == 0:
                        self.linker.evict(batch.stamp_ns)
                self._dirty = True
        except (GalleryMismatchError, ValueError) as exc:
            self.stats.drops += 1
            self.get_logger().error(f"embeddings refused: {exc}", throttle_duration_sec=5.0)
            return
        self.stats.tick(time.monotonic() - t0, msg.header.stamp)  # age here = capture -> searchable

    def on_search(self, req, resp):
        resp.success = False
        with self.lock:
            g = self.gallery
            if g is None:
                resp.message = "the gallery is empty: no person has been seen yet"
                return resp
            if req.model_id and req.model_id != g.model_id:
                resp.message = (f"model mismatch: the query was encoded by {req.model_id!r} but the gallery "
                                f"holds {g.model_id!r}; configure the same encoder on both nodes")
                return resp
            q = np.asarray(req.embedding, np.float32)
            if q.size != g.dim:
                resp.message = f"query embedding has {q.size} values, the gallery dim is {g.dim}"
                return resp
            since = time_to_ns(req.since) or None
            until = time_to_ns(req.until) or None
            top_k = int(req.top_k)
            try:
                matches, groups = search_persons(g, self.linker, q, top_k,
                                                 by_track=bool(req.by_track),
                                                 min_score=float(req.min_score) if req.min_score else -1.0,
                                                 since_ns=since, until_ns=until, source_id=req.camera or None)
            except ValueError as exc:
                resp.message = str(exc)
                return resp
            crops, frames = bool(req.return_crops), bool(req.return_frames)
            if groups is not None:
                groups = self.linker.group(matches, top_k)
                resp.matches = [match_to_msg(gr.best, with_crop=crops, with_frame=frames, person_id=gr.person_id,
                                             tracks=list(zip(gr.cameras, gr.track_ids))) for gr in groups]
                for msg, gr in zip(resp.matches, groups):
                    msg.first_seen, msg.last_seen = ns_to_time(gr.first_seen_ns), ns_to_time(gr.last_seen_ns)
                what = f"{len(groups)} person(s) from {len(matches)} track match(es)"
            else:
                resp.matches = [self._track_msg(m, crops, frames) for m in matches]
                what = f"{len(matches)} track match(es)"
        resp.success = True
        resp.message = f"{what} among {g.num_tracks} track(s)"
        return resp

    def _track_msg(self, m, crops: bool, frames: bool = False):
        """One track's PersonMatch with its person's id and tracks (lock held)."""
        pid = self.linker.person_of(m.source_id, m.track_id)
        keys = self.linker.tracks_of(pid) if pid >= 0 else []
        key = (m.source_id, int(m.track_id))
        tracks = [key] + [k for k in keys if k != key]
        return match_to_msg(m, with_crop=crops, with_frame=frames, person_id=pid, tracks=tracks)

    def on_similar(self, req, resp):
        """Rank tracks by re-id similarity to a track, a person, or a given re-id feature."""
        resp.success = False
        with self.lock:
            lk, g = self.linker, self.gallery
            try:
                lk.sync()  # the other robots' tracks, with the Milvus gallery
            except ValueError as exc:  # Milvus away: answer from what this node knows
                self.get_logger().warning(f"shared persons unavailable: {exc}", throttle_duration_sec=10.0)
            if g is None or not lk.tracks:
                resp.message = ("no re-id features yet: no person seen, or re-id is off in the embedder "
                                "(reid.enabled, weights: models/README.md)")
                return resp
            exclude = []
            if len(req.reid_embedding):
                if req.reid_model_id and lk.model_id and req.reid_model_id != lk.model_id:
                    resp.message = (f"re-id model mismatch: the image was encoded by {req.reid_model_id!r}, the "
                                    f"persons by {lk.model_id!r}")
                    return resp
                query = np.asarray(req.reid_embedding, np.float32)
                if query.size != next(iter(lk.tracks.values())).mean.size or not np.isfinite(query).all():
                    resp.message = f"re-id feature has {query.size} values or is not finite"
                    return resp
            elif req.person_id > 0:
                query = lk.person_feature(int(req.person_id))
                if query is None:
                    resp.message = (f"person {req.person_id} is unknown (never seen, evicted, or not yet seen on "
                                    f"{self.reid_cfg.min_link_crops} crops)")
                    return resp
            else:
                key = lk.find_track(int(req.track_id), req.camera)
                if key is None:
                    where = f" in camera {req.camera!r}" if req.camera else ""
                    resp.message = f"track {req.track_id}{where} has no re-id features (unknown or evicted)"
                    return resp
                query = lk.track_feature(*key)
                exclude = [key]  # the person's other tracks come first: they are the other sightings
            info = {(t.source_id, t.track_id): t for t in g.tracks()}
            # a track evicted from the gallery but not yet from the persons is left out before the top_k are taken
            ranked = lk.similar(query, int(req.top_k), exclude=exclude, keep=info.__contains__)
            out = []
            for key, score in ranked:
                t = info[key]
                m = TrackMatch(track_id=key[1], score=score, source_id=key[0], first_seen_ns=t.first_seen_ns,
                               last_seen_ns=t.last_seen_ns, box=t.last_box,
                               crop_jpeg=self._crop(g, key) if req.return_crops else b"")
                out.append(self._track_msg(m, bool(req.return_crops)))
        resp.matches = out
        resp.success = True
        resp.message = f"{len(out)} similar track(s) among {len(lk.tracks)} with re-id features"
        return resp

    def _share_persons(self, batch) -> None:
        """With a gallery that can share persons (Milvus), link through it (first re-id batch; lock held)."""
        store = getattr(self.gallery, "person_store", None)
        if store is None or self.linker.shared is not None:
            return
        self.linker.attach(store(batch.reid_model_id, batch.reid_vectors.shape[1]))
        self.get_logger().info(f"persons shared through {self.gallery!r}: {self.linker.stats()}")

    @staticmethod
    def _crop(g, key) -> bytes:
        getter = getattr(g, "track_crop", None)
        return getter(*key) if getter is not None else b""

    def _persons_file(self) -> str:
        if self.cfg.snapshot_path:
            return persons_path(self.cfg.snapshot_path)
        uri = self.cfg.milvus_uri
        if self.cfg.backend == "milvus" and uri and "://" not in uri:
            return persons_path(uri)  # Milvus Lite: next to its .db
        return ""

    def _publish_size(self) -> None:
        with self.lock:
            n = len(self.gallery) if self.gallery is not None else 0
            if self.gallery is not None:
                st = self.gallery.stats()
                for key in ("tracks", "memory_bytes", "thumb_bytes", "evicted_total"):
                    if key in st:  # a Milvus gallery has no local memory figures
                        self.stats.extra[key] = st[key]
        self.stats.extra["gallery_size"] = n
        with self.lock:
            self.stats.extra.update(self.linker.stats())
        self.pub_size.publish(Int64(data=n))

    def save_snapshot(self) -> None:
        with self.lock:
            if self.gallery is None or not self._dirty:
                return
            try:
                if self.cfg.snapshot_path:
                    self.gallery.save(self.cfg.snapshot_path)
                if self.persons_file:
                    self.linker.save(self.persons_file)
                self._dirty = False
            except OSError as exc:  # disk full, read-only: the previous snapshot stays as it was
                self.stats.errors += 1
                self.stats.extra["snapshot_failures"] = int(self.stats.extra.get("snapshot_failures", 0)) + 1
                self.get_logger().error(f"snapshot to {self.cfg.snapshot_path} failed: {exc}",
                                        throttle_duration_sec=30.0)

    def close(self) -> None:
        if self.persons_file:
            self.save_snapshot()


def main(args=None) -> int:
    return run_node(IndexNode, multithreaded=True, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

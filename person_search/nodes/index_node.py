"""Index node: the rolling FAISS gallery of everyone seen; answers ``search_gallery``."""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Int64

from person_search.core.config import GalleryConfig
from person_search.core.gallery import GalleryMismatchError, RollingGallery, SnapshotError, make_gallery
from person_search.nodes.common import (RELIABLE_QOS, SERVICE_QOS, StageStats, declare_section, publisher, run_node,
                                        subscription)
from person_search.nodes.convert import match_to_msg, msg_to_batch, time_to_ns


class IndexNode(Node):
    """Subscribes ``person_embeddings``; serves ``~/search_gallery``, publishes ``~/gallery_size``; snapshots."""

    def __init__(self):
        super().__init__("index")
        self.cfg: GalleryConfig = declare_section(self, "gallery", GalleryConfig)
        self.lock = threading.Lock()
        self.gallery: Optional[RollingGallery] = None
        self._dirty = False
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
        from person_search_interfaces.srv import SearchGallery
        self.stats = StageStats(self, "index")  # age here = capture -> searchable
        subscription(self, PersonEmbeddings, "person_embeddings", self.on_embeddings, RELIABLE_QOS, stats=self.stats)
        self.create_service(SearchGallery, "~/search_gallery", self.on_search, qos_profile=SERVICE_QOS,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.pub_size = publisher(self, Int64, "~/gallery_size", RELIABLE_QOS)
        self.create_timer(1.0, self._publish_size)
        if self.cfg.snapshot_path:
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
            try:
                matches = g.search(q, int(req.top_k), min_score=float(req.min_score) if req.min_score else -1.0,
                                   since_ns=since, until_ns=until, source_id=req.camera or None)
            except ValueError as exc:
                resp.message = str(exc)
                return resp
        resp.matches = [match_to_msg(m, with_crop=bool(req.return_crops), with_frame=bool(req.return_frames))
                        for m in matches]
        resp.success = True
        resp.message = f"{len(matches)} match(es) among {g.num_tracks} track(s)"
        return resp

    def _publish_size(self) -> None:
        with self.lock:
            n = len(self.gallery) if self.gallery is not None else 0
            if self.gallery is not None:
                st = self.gallery.stats()
                for key in ("tracks", "memory_bytes", "thumb_bytes", "evicted_total"):
                    if key in st:  # a Milvus gallery has no local memory figures
                        self.stats.extra[key] = st[key]
        self.stats.extra["gallery_size"] = n
        self.pub_size.publish(Int64(data=n))

    def save_snapshot(self) -> None:
        with self.lock:
            if self.gallery is None or not self._dirty:
                return
            try:
                self.gallery.save(self.cfg.snapshot_path)
                self._dirty = False
            except OSError as exc:  # disk full, read-only: the previous snapshot stays as it was
                self.stats.errors += 1
                self.stats.extra["snapshot_failures"] = int(self.stats.extra.get("snapshot_failures", 0)) + 1
                self.get_logger().error(f"snapshot to {self.cfg.snapshot_path} failed: {exc}",
                                        throttle_duration_sec=30.0)

    def close(self) -> None:
        if self.cfg.snapshot_path:
            self.save_snapshot()


def main(args=None) -> int:
    return run_node(IndexNode, multithreaded=True, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

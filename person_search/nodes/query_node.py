"""Query node: owns the CLIP text tower and serves ``/query_person`` and ``/find_similar``.

``find_similar`` takes a track, a person or an image; an image is encoded here by the re-id
model (``reid.*``, loaded on the first image request), and the index node ranks its tracks
by re-id similarity (``index/similar_tracks``).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Optional

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor

from person_search.core.config import EncoderConfig, QueryConfig, ReidConfig
from person_search.core.query import QueryEngine, QueryError, validate_top_k
from person_search.nodes.convert import float_array, ns_to_time, time_to_ns
from person_search.nodes.diagnostics import StageStats
from person_search.nodes.lifecycle import ManagedNode
from person_search.nodes.params import declare_ros, declare_section
from person_search.nodes.qos import LATCHED_QOS, SERVICE_QOS, publisher
from person_search.nodes.runner import run_node


ATTEMPT_S = 2.0  # one search_gallery attempt; a lost request is sent again after this


class QueryNode(ManagedNode):
    """Encodes the description once, asks the index node, returns ranked tracks.

    The text tower lives from configure to cleanup; requests while the node is not active get
    ``success: false`` saying so.
    """

    def __init__(self):
        super().__init__("query")
        self.enc_cfg: EncoderConfig = declare_section(self, "encoder", EncoderConfig)
        self.cfg: QueryConfig = declare_section(self, "query", QueryConfig)
        self.reid_cfg: ReidConfig = declare_section(self, "reid", ReidConfig)
        self._reid = None  # the re-id encoder for find_similar images, loaded on first use
        self._reid_lock = threading.Lock()
        self.ros = declare_ros(self, search_timeout_s=(10.0, "how long to wait for the index node's answer"),
                               concurrent=(True, "serve requests concurrently (false: one at a time, as before)"))
        self.engine: Optional[QueryEngine] = None
        from person_search_interfaces.msg import QueryResult
        from person_search_interfaces.srv import FindSimilar, QueryPerson, SearchGallery, SimilarTracks
        self._QueryResult = QueryResult
        self._SearchGallery = SearchGallery
        self._SimilarTracks = SimilarTracks
        # The index clients live on a helper node spun by its own thread: a request blocked
        # waiting for the index's answer never holds the thread that would deliver it, so
        # requests are served concurrently (a reentrant group; executor threads = requests in
        # flight) without any risk of all threads waiting on answers nobody receives. One at
        # a time (ros.concurrent: false) served 20 clients one index round trip after another.
        # Not the process's global arguments: `__node:=query` and the parameter file would
        # make it a second /query node, answering parameter services it does not declare.
        self._client_node = rclpy.create_node(f"{self.get_name()}_index_client", namespace=self.get_namespace(),
                                              context=self.context, use_global_arguments=False,
                                              start_parameter_services=False)
        self.client = self._client_node.create_client(SearchGallery, "index/search_gallery", qos_profile=SERVICE_QOS)
        self.similar_client = self._client_node.create_client(SimilarTracks, "index/similar_tracks",
                                                              qos_profile=SERVICE_QOS)
        self._client_exec = SingleThreadedExecutor(context=self.context)
        self._client_exec.add_node(self._client_node)
        self._client_stop = threading.Event()
        self._client_thread = threading.Thread(target=self._spin_client, name="index_client", daemon=True)
        self._client_thread.start()
        group = ReentrantCallbackGroup() if self.ros["concurrent"] else MutuallyExclusiveCallbackGroup()
        self.create_service(QueryPerson, "query_person", self.on_query, qos_profile=SERVICE_QOS, callback_group=group)
        self.create_service(FindSimilar, "find_similar", self.on_find_similar, qos_profile=SERVICE_QOS,
                            callback_group=group)
        self.pub = publisher(self, QueryResult, "query_matches", LATCHED_QOS)
        self.stats = StageStats(self, "query")

    def load(self) -> None:
        from person_search.core.clip_encoder import ClipEncoder
        self.engine = QueryEngine(ClipEncoder(self.enc_cfg, towers=("text",)), self.cfg)
        self.get_logger().info(f"query: model_id={self.engine.model_id}; templates={self.engine.templates}; "
                               f"serving {self.resolve_service_name('query_person')}")

    def unload(self) -> None:
        self.engine = None

    def _since_ns(self, req) -> int:
        """Return the lower time bound of a request: ``since``, raised to now - ``last_s`` (node clock)."""
        since = time_to_ns(req.since)
        if req.last_s:
            if not math.isfinite(req.last_s) or req.last_s < 0:
                raise QueryError(f"last_s must be a number of seconds >= 0, got {req.last_s}")
            since = max(since, self.get_clock().now().nanoseconds - int(req.last_s * 1e9), 1)
        return since

    def _spin_client(self) -> None:
        try:
            while rclpy.ok(context=self.context) and not self._client_stop.is_set():
                self._client_exec.spin_once(timeout_sec=0.1)
        except Exception:  # noqa: BLE001 - the context goes away at shutdown
            pass

    def close(self) -> None:
        self._client_stop.set()
        if self._client_thread.is_alive():
            self._client_thread.join(timeout=2.0)
        self._client_exec.shutdown(timeout_sec=1.0)
        self._client_node.destroy_node()

    def on_query(self, req, resp):
        resp.success = False
        engine = self.engine
        if not self.active or engine is None:
            resp.message = "the query node is not active (lifecycle); activate it or start it with autostart:=true"
            return resp
        try:
            # top_k 0 (the field's default) means query.default_top_k
            top_k = validate_top_k(req.top_k or None, default=self.cfg.default_top_k, max_top_k=self.cfg.max_top_k)
            since = self._since_ns(req)
            emb = engine.encode(req.description)
        except QueryError as exc:
            resp.message = str(exc)
            self.stats.errors += 1
            return resp
        if not self.client.wait_for_service(timeout_sec=min(2.0, self.ros["search_timeout_s"])):
            resp.message = "the index node is not available (service index/search_gallery): is it running?"
            return resp
        sreq = self._SearchGallery.Request()
        sreq.embedding = float_array(emb)
        sreq.model_id = engine.model_id
        sreq.top_k = top_k
        sreq.min_score = req.min_score
        sreq.since, sreq.until = ns_to_time(since), req.until
        sreq.camera = req.camera
        sreq.return_crops = req.return_crops
        sreq.return_frames = req.return_frames
        sreq.by_track = req.by_track
        result = self._call_index(sreq)
        if result is None:
            resp.message = f"the index node did not answer within {self.ros['search_timeout_s']} s"
            return resp
        resp.success, resp.message, resp.matches = result.success, result.message, result.matches
        self.stats.tick()
        if result.success:
            out = self._QueryResult()
            out.header.stamp = self.get_clock().now().to_msg()
            out.description = req.description[:200]
            out.matches = [self._light(m) for m in result.matches]
            self.pub.publish(out)
        return resp

    def on_find_similar(self, req, resp):
        """Other sightings of a track, a person or an image, ranked by re-id similarity."""
        resp.success = False
        try:
            top_k = validate_top_k(req.top_k or None, default=self.cfg.default_top_k, max_top_k=self.cfg.max_top_k)
        except QueryError as exc:
            resp.message = str(exc)
            return resp
        sreq = self._SimilarTracks.Request(track_id=int(req.track_id), camera=req.camera,
                                           person_id=int(req.person_id), top_k=top_k, return_crops=True)
        if len(req.image.data):
            feats, err = self._encode_image(bytes(req.image.data))
            if err:
                resp.message = err
                return resp
            sreq.reid_embedding, sreq.reid_model_id = float_array(feats), self._reid.model_id
        elif req.person_id <= 0 and req.track_id <= 0 and not req.camera:
            resp.message = "find_similar needs a track_id (> 0), a person_id (> 0) or an image"
            return resp
        if not self.similar_client.wait_for_service(timeout_sec=min(2.0, self.ros["search_timeout_s"])):
            resp.message = "the index node is not available (service index/similar_tracks): is it running?"
            return resp
        result = self._call_index(sreq, self.similar_client)
        if result is None:
            resp.message = f"the index node did not answer within {self.ros['search_timeout_s']} s"
            return resp
        resp.success, resp.message, resp.matches = result.success, result.message, result.matches
        self.stats.tick()
        return resp

    def _encode_image(self, data: bytes):
        """Return (re-id feature, "") of an encoded image, or (None, the reason)."""
        from person_search.core.imaging import decode_jpeg
        from person_search.core.reid.encoder import ReidUnavailable
        try:
            img = decode_jpeg(data)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is "not an image"
            return None, f"image: not a decodable JPEG/PNG ({exc})"
        if img is None or getattr(img, "ndim", 0) != 3 or img.shape[0] < 8 or img.shape[1] < 4:
            return None, "image: not a decodable colour JPEG/PNG of at least 4x8 pixels"
        with self._reid_lock:
            if self._reid is None:
                from person_search.core.reid.encoder import ReidEncoder
                try:
                    self._reid = ReidEncoder(self.reid_cfg)
                except ReidUnavailable as exc:
                    return None, str(exc)
            return self._reid.encode([img])[0], ""

    def _call_index(self, sreq, client=None):
        """Call the index (search_gallery by default); retry a request lost while it (re)started (idempotent)."""
        client = client or self.client
        deadline = time.monotonic() + self.ros["search_timeout_s"]
        while time.monotonic() < deadline:
            done = threading.Event()
            future = client.call_async(sreq)
            future.add_done_callback(lambda _f: done.set())
            if done.wait(min(ATTEMPT_S, max(0.05, deadline - time.monotonic()))):
                return future.result()
            client.remove_pending_request(future)
            self.stats.drops += 1
            self.get_logger().warning("search_gallery did not answer; retrying", throttle_duration_sec=5.0)
        return None

    @staticmethod
    def _light(m):
        from person_search_interfaces.msg import PersonMatch
        return PersonMatch(track_id=m.track_id, score=m.score, camera_frame_id=m.camera_frame_id,
                           first_seen=m.first_seen, last_seen=m.last_seen, box=m.box, person_id=m.person_id,
                           person_track_ids=m.person_track_ids, cameras=m.cameras)


def main(args=None) -> int:
    return run_node(QueryNode, multithreaded=True, threads=8, args=args)  # up to 8 requests in flight


if __name__ == "__main__":
    raise SystemExit(main())

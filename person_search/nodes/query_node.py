"""Query node: owns the CLIP text tower and serves ``/query_person``."""

from __future__ import annotations

import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from person_search.core.config import EncoderConfig, QueryConfig
from person_search.core.query import QueryEngine, QueryError, validate_top_k
from person_search.nodes.common import LATCHED_QOS, SERVICE_QOS, StageStats, declare_ros, declare_section, run_node


ATTEMPT_S = 2.0  # one search_gallery attempt; a lost request is sent again after this


class QueryNode(Node):
    """Encodes the description once, asks the index node, returns ranked tracks."""

    def __init__(self):
        super().__init__("query")
        enc_cfg: EncoderConfig = declare_section(self, "encoder", EncoderConfig)
        self.cfg: QueryConfig = declare_section(self, "query", QueryConfig)
        self.ros = declare_ros(self, search_timeout_s=(10.0, "how long to wait for the index node's answer"))
        from person_search.core.encoder import ClipEncoder
        self.encoder = ClipEncoder(enc_cfg, towers=("text",))
        self.engine = QueryEngine(self.encoder, self.cfg)
        from person_search_interfaces.msg import QueryResult
        from person_search_interfaces.srv import QueryPerson, SearchGallery
        self._QueryResult = QueryResult
        self._SearchGallery = SearchGallery
        self.client = self.create_client(SearchGallery, "search_gallery", qos_profile=SERVICE_QOS,
                                         callback_group=ReentrantCallbackGroup())
        self.create_service(QueryPerson, "query_person", self.on_query, qos_profile=SERVICE_QOS,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.pub = self.create_publisher(QueryResult, "query_matches", LATCHED_QOS)
        self.stats = StageStats(self, "query")
        self.get_logger().info(f"query: model_id={self.encoder.model_id}; "
                               f"serving {self.resolve_service_name('query_person')}")

    def on_query(self, req, resp):
        resp.success = False
        try:
            top_k = validate_top_k(req.top_k, default=self.cfg.default_top_k, max_top_k=self.cfg.max_top_k)
            emb = self.engine.encode(req.description)
        except QueryError as exc:
            resp.message = str(exc)
            self.stats.errors += 1
            return resp
        if not self.client.wait_for_service(timeout_sec=min(2.0, self.ros["search_timeout_s"])):
            resp.message = "the index node is not available (service search_gallery): is it running?"
            return resp
        sreq = self._SearchGallery.Request()
        sreq.embedding = emb.astype("float32").tolist()
        sreq.model_id = self.encoder.model_id
        sreq.top_k = top_k
        sreq.min_score = req.min_score
        sreq.since, sreq.until = req.since, req.until
        sreq.camera = req.camera
        sreq.return_frames = req.return_frames
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

    def _call_index(self, sreq):
        """Call search_gallery; retry a request lost while the index (re)started (it is idempotent)."""
        deadline = time.monotonic() + self.ros["search_timeout_s"]
        while time.monotonic() < deadline:
            done = threading.Event()
            future = self.client.call_async(sreq)
            future.add_done_callback(lambda _f: done.set())
            if done.wait(min(ATTEMPT_S, max(0.05, deadline - time.monotonic()))):
                return future.result()
            self.client.remove_pending_request(future)
            self.stats.drops += 1
            self.get_logger().warning("search_gallery did not answer; retrying", throttle_duration_sec=5.0)
        return None

    @staticmethod
    def _light(m):
        from person_search_interfaces.msg import PersonMatch
        return PersonMatch(track_id=m.track_id, score=m.score, camera_frame_id=m.camera_frame_id,
                           first_seen=m.first_seen, last_seen=m.last_seen, box=m.box)


def main(args=None) -> int:
    return run_node(QueryNode, multithreaded=True, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

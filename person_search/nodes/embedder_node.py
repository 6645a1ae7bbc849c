"""Embedder node: person crops -> L2-normalised CLIP image embeddings tagged with the model id."""

from __future__ import annotations

import time
from typing import Optional

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from person_search.core.config import EncoderConfig, ReidConfig
from person_search.core.embed_stage import Embedder
from person_search.nodes.convert import ImageError, batch_to_msg, msg_to_detections
from person_search.nodes.diagnostics import StageStats
from person_search.nodes.lifecycle import ManagedNode, when_downstream_ready
from person_search.nodes.params import declare_ros, declare_section
from person_search.nodes.qos import RELIABLE_QOS, publisher, subscription
from person_search.nodes.runner import run_node


class EmbedderNode(ManagedNode):
    """Subscribes ``person_crops``, publishes ``person_embeddings``; the image tower lives configure..cleanup."""

    def __init__(self):
        super().__init__("embedder")
        self.cfg: EncoderConfig = declare_section(self, "encoder", EncoderConfig, self._on_cfg)
        self.reid_cfg: ReidConfig = declare_section(self, "reid", ReidConfig)
        self.ros = declare_ros(self, wait_for_subscribers_s=(30.0, "take crops only once person_embeddings has "
                                                             "a subscriber, waiting at most this long"),
                               crops_queue=(10, "person_crops messages kept while the embedder is busy (reliable); "
                                            "1 = only the newest, no backlog: older frames' crops are dropped"))
        if int(self.ros["crops_queue"]) < 1:
            raise ValueError(f"ros.crops_queue must be >= 1, not {self.ros['crops_queue']}")
        self.embedder: Optional[Embedder] = None
        from person_search_interfaces.msg import PersonEmbeddings
        self.pub = publisher(self, PersonEmbeddings, "person_embeddings", RELIABLE_QOS)
        self.stats = StageStats(self, "embedder")

    def load(self) -> None:
        from person_search.core.reid.encoder import maybe_reid_encoder
        # re-id on the same admitted crops, in this node: the crops are decoded once, and OSNet
        # costs a fraction of the CLIP tower (docs/reid.md); missing weights: one line, no identities
        reid = maybe_reid_encoder(self.reid_cfg, warn=self.get_logger().warning)
        self.embedder = Embedder(self.cfg, reid=reid)  # raises WeightsError with the fix when weights are missing
        self.stats.extra["model_id"] = self.embedder.model_id
        self.stats.extra["reid_model_id"] = reid.model_id if reid is not None else "(off)"
        self.get_logger().info(f"embedder: model_id={self.embedder.model_id} dim={self.embedder.dim} "
                               f"reid={reid.model_id if reid is not None else 'off'}")

    def unload(self) -> None:
        self.embedder = None

    def start(self) -> None:
        from person_search_interfaces.msg import PersonCrops
        when_downstream_ready(self, self.pub, self.ros["wait_for_subscribers_s"], lambda: subscription(
            self, PersonCrops, "person_crops", self.on_crops,
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self.ros["crops_queue"]),
                       reliability=ReliabilityPolicy.RELIABLE), stats=self.stats))

    def _on_cfg(self) -> None:
        if self.embedder is not None:
            self.embedder.budget.per_track_s = self.cfg.max_crops_per_track_s

    def on_crops(self, msg) -> None:
        embedder = self.embedder
        if not self.active or embedder is None:
            return
        t0 = time.monotonic()
        try:
            det, thumb = msg_to_detections(msg)
        except ImageError as exc:
            self.stats.drops += 1
            self.get_logger().warning(f"dropped crops: {exc}", throttle_duration_sec=5.0)
            return
        batch = embedder.embed(det, frame_jpeg=thumb, arrived_ns=self.get_clock().now().nanoseconds)
        self.stats.extra.update(embedder.budget_state())  # budget, throughput, admitted / dropped, backlog
        self.stats.extra.update({k: round(v, 3) if isinstance(v, float) else v for k, v in embedder.timing.items()})
        if batch is None:
            return
        self.pub.publish(batch_to_msg(batch))
        now = self.get_clock().now().nanoseconds
        for first_seen_ns in embedder.budget.first_seen_of_new:  # capture clock: first seen -> searchable
            self.stats.sample("first_seen_to_searchable", (now - first_seen_ns) / 1e9)
        self.stats.tick(time.monotonic() - t0, msg.header.stamp)


def main(args=None) -> int:
    return run_node(EmbedderNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

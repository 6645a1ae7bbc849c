"""Detector node: Image (or CompressedImage) -> tracked person crops + an RViz overlay."""

from __future__ import annotations

import time
from typing import Dict

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from person_search.core.config import DetectorConfig
from person_search.core.detect import PersonTracker
from person_search.core.gallery.thumbs import frame_thumbnail
from person_search.core.imaging import draw_overlay
from person_search.core.types import Frame
from person_search.nodes.common import (LATCHED_QOS, RELIABLE_QOS, StageStats, declare_ros, declare_section,
                                        run_node, sensor_qos, when_downstream_ready)
from person_search.nodes.convert import (ImageError, bgr_to_image, compressed_to_bgr, detections_to_msg,
                                         image_to_bgr, time_to_ns)


ID_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z


class DetectorNode(Node):
    """Runs the person tracker on the latest frame; publishes ``person_crops`` and ``overlay``."""

    def __init__(self):
        super().__init__("detector")
        self.cfg: DetectorConfig = declare_section(self, "detector", DetectorConfig)
        ros = declare_ros(self, image_reliable=(False, "subscribe to images reliable instead of best effort"),
                          publish_overlay=(True, "publish the annotated overlay image"),
                          thumbnail_side=(480, "longer side of the frame thumbnail sent with the crops (px)"),
                          wait_for_subscribers_s=(30.0, "take frames only once person_crops has a subscriber, "
                                                  "waiting at most this long"))
        self.ros = ros
        self.tracker = PersonTracker(self.cfg)
        # The tracker counts ids from 1 in every process: a restarted detector would hand out
        # ids that the gallery already holds for other people of this camera. Ids therefore
        # start at (seconds since 2024-01-01 at start) x 100, unique across restarts unless
        # a run created more than 100 tracks per second on average.
        self.id_base = max(0, int(time.time()) - ID_EPOCH_S) * 100
        from person_search_interfaces.msg import PersonCrops, QueryResult
        self.pub = self.create_publisher(PersonCrops, "person_crops", RELIABLE_QOS)
        self.pub_overlay = (self.create_publisher(Image, "overlay", sensor_qos(False))
                            if ros["publish_overlay"] else None)
        qos = sensor_qos(ros["image_reliable"])

        def subscribe():
            self.create_subscription(Image, "image_raw", self.on_image, qos)
            self.create_subscription(CompressedImage, "image_compressed", self.on_compressed, qos)
        when_downstream_ready(self, self.pub, ros["wait_for_subscribers_s"], subscribe)
        self.create_subscription(QueryResult, "query_matches", self.on_matches, LATCHED_QOS)
        self.highlights: Dict[str, Dict[int, float]] = {}
        self.last_query = ""
        self.index = 0
        self.stats = StageStats(self, "detector")
        self.get_logger().info(f"detector: backend={self.tracker.backend_name} tracker={self.cfg.tracker} "
                               f"track ids from {self.id_base + 1}")

    def on_image(self, msg: Image) -> None:
        self._decode_and_process(image_to_bgr, msg)

    def on_compressed(self, msg: CompressedImage) -> None:
        self._decode_and_process(compressed_to_bgr, msg)

    def _decode_and_process(self, decode, msg) -> None:
        try:
            img = decode(msg)
        except ImageError as exc:
            self._bad(exc)
            return
        self._process(img, msg.header)

    def _bad(self, exc: Exception) -> None:
        self.stats.drops += 1
        self.get_logger().warning(f"dropped a frame: {exc}", throttle_duration_sec=5.0)

    def _process(self, img, header) -> None:
        t0 = time.monotonic()
        frame = Frame(image=img, stamp_ns=time_to_ns(header.stamp), source_id=header.frame_id or "camera",
                      index=self.index)
        self.index += 1
        try:
            det = self.tracker.update(frame)
        except ValueError as exc:
            self._bad(exc)
            return
        for p in det.people:
            p.track_id += self.id_base
        thumb = frame_thumbnail(img, int(self.ros["thumbnail_side"])) if det.people else b""
        self.pub.publish(detections_to_msg(det, frame_jpeg=thumb))
        if self.pub_overlay is not None:
            over = draw_overlay(img, det, self.highlights.get(frame.source_id), self.last_query)
            self.pub_overlay.publish(bgr_to_image(over, stamp_ns=frame.stamp_ns, frame_id=frame.source_id))
        self.stats.tick(time.monotonic() - t0, header.stamp)
        self.stats.extra["people"] = len(det.people)

    def on_matches(self, msg) -> None:
        self.last_query = msg.description
        hl: Dict[str, Dict[int, float]] = {}
        for m in msg.matches:
            hl.setdefault(m.camera_frame_id, {})[int(m.track_id)] = float(m.score)
        self.highlights = hl

    def close(self) -> None:
        self.tracker.close()


def main(args=None) -> int:
    return run_node(DetectorNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

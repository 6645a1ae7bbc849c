"""Detector node: one image input (raw or compressed) -> tracked person crops, detections, an overlay."""

from __future__ import annotations

import posixpath
import time
from typing import Dict, Optional

from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import SetBool

from person_search.core.config import DetectorConfig
from person_search.core.detect import PersonTracker
from person_search.core.gallery.thumbs import frame_thumbnail
from person_search.core.imaging import draw_overlay
from person_search.core.types import Frame
from person_search.nodes.convert import (ImageError, bgr_to_image, compressed_to_bgr, detections_to_msg,
                                         detections_to_vision, image_to_bgr, time_to_ns, vision_msgs_available)
from person_search.nodes.diagnostics import StageStats
from person_search.nodes.lifecycle import ManagedNode, when_downstream_ready
from person_search.nodes.params import declare_ros, declare_section
from person_search.nodes.qos import LATCHED_QOS, RELIABLE_QOS, publisher, sensor_qos, subscription
from person_search.nodes.runner import run_node


ID_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z
TRANSPORTS = ("raw", "compressed")


class DetectorNode(ManagedNode):
    """Runs the person tracker on the latest frame; publishes ``person_crops``, ``detections``, ``overlay``.

    Input: exactly one subscription, image_transport style: ``image_raw`` (remap it to any
    camera's topic) with ``ros.image_transport: raw``, or ``<image_raw>/compressed`` with
    ``compressed``. ``camera_info`` beside the input is passed through to ``camera_info``
    beside the outputs when the two names differ.
    """

    def __init__(self):
        super().__init__("detector")
        self.cfg: DetectorConfig = declare_section(self, "detector", DetectorConfig, self._on_cfg)
        self.ros = declare_ros(
            self, image_reliable=(False, "subscribe to images reliable instead of best effort"),
            image_transport=("raw", "input: 'raw' subscribes image_raw, 'compressed' image_raw/compressed"),
            publish_overlay=(True, "publish the annotated overlay image"),
            thumbnail_side=(480, "longer side of the frame thumbnail sent with the crops, each person's box drawn "
                                 "with its track id (px)"),
            wait_for_subscribers_s=(30.0, "take frames only once person_crops has a subscriber, "
                                    "waiting at most this long"))
        if self.ros["image_transport"] not in TRANSPORTS:
            raise ValueError(f"ros.image_transport must be one of {', '.join(TRANSPORTS)}, "
                             f"not {self.ros['image_transport']!r}")
        self.tracker: Optional[PersonTracker] = None
        self.enabled = True
        # The tracker counts ids from 1 in every process: a restarted detector would hand out
        # ids that the gallery already holds for other people of this camera. Ids therefore
        # start at (seconds since 2024-01-01 at start) x 100, unique across restarts unless
        # a run created more than 100 tracks per second on average.
        self.id_base = max(0, int(time.time()) - ID_EPOCH_S) * 100
        from person_search_interfaces.msg import PersonCrops, QueryResult
        self.pub = publisher(self, PersonCrops, "person_crops", RELIABLE_QOS)
        self.pub_overlay = (publisher(self, Image, "overlay", sensor_qos(False))
                            if self.ros["publish_overlay"] else None)
        self.pub_det = None
        if vision_msgs_available():
            from vision_msgs.msg import Detection2DArray
            self.pub_det = publisher(self, Detection2DArray, "detections", RELIABLE_QOS)
        else:
            self.get_logger().info("vision_msgs is not installed: no Detection2DArray on detections")
        subscription(self, QueryResult, "query_matches", self.on_matches, LATCHED_QOS)
        self.create_service(SetBool, "enable", self.on_enable)
        self.highlights: Dict[str, Dict[int, float]] = {}
        self.last_query = ""
        self.index = 0
        self.stats = StageStats(self, "detector")

    def input_topics(self):
        """Return (image topic, camera_info topic) as image_transport resolves them."""
        base = self.resolve_topic_name("image_raw")
        topic = base if self.ros["image_transport"] == "raw" else f"{base}/compressed"
        return topic, posixpath.join(posixpath.dirname(base), "camera_info")

    def load(self) -> None:
        self.tracker = PersonTracker(self.cfg)
        self.get_logger().info(f"detector: backend={self.tracker.backend_name} tracker={self.cfg.tracker} "
                               f"track ids from {self.id_base + 1}")

    def unload(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        self.tracker = None

    def start(self) -> None:
        topic, info = self.input_topics()
        qos = sensor_qos(self.ros["image_reliable"])
        raw = self.ros["image_transport"] == "raw"
        if info != self.resolve_topic_name("camera_info"):
            pub_info = publisher(self, CameraInfo, "camera_info", sensor_qos(False))
            subscription(self, CameraInfo, info, lambda m: self.active and pub_info.publish(m), sensor_qos(False))
        when_downstream_ready(self, self.pub, self.ros["wait_for_subscribers_s"], lambda: subscription(
            self, Image if raw else CompressedImage, topic,
            self.on_image if raw else self.on_compressed, qos, stats=self.stats))
        self.get_logger().info(f"input: {topic} ({'sensor_msgs/Image' if raw else 'sensor_msgs/CompressedImage'})")

    def _on_cfg(self) -> None:
        if self.tracker is not None:
            self.tracker.apply_config()

    def on_enable(self, req, resp):
        self.enabled = bool(req.data)
        resp.success = True
        resp.message = "detector enabled" if self.enabled else "detector paused: frames are dropped"
        self.get_logger().info(resp.message)
        return resp

    def on_image(self, msg: Image) -> None:
        self._decode_and_process(image_to_bgr, msg)

    def on_compressed(self, msg: CompressedImage) -> None:
        self._decode_and_process(compressed_to_bgr, msg)

    def _decode_and_process(self, decode, msg) -> None:
        if not (self.active and self.enabled) or self.tracker is None:
            return
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
        thumb = frame_thumbnail(img, int(self.ros["thumbnail_side"]), people=det.people) if det.people else b""
        self.pub.publish(detections_to_msg(det, frame_jpeg=thumb))
        if self.pub_det is not None:
            self.pub_det.publish(detections_to_vision(det))
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
        self.unload()


def main(args=None) -> int:
    return run_node(DetectorNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

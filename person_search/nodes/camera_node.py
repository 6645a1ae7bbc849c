"""Camera node: a video file, V4L2 device, RTSP/HTTP stream or image folder -> sensor_msgs/Image."""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from person_search.core.config import VideoConfig
from person_search.core.imaging import encode_jpeg
from person_search.core.video import SourceError, open_source
from person_search.nodes.convert import bgr_to_image, jpeg_msg, ns_to_time
from person_search.nodes.diagnostics import StageStats
from person_search.nodes.lifecycle import when_downstream_ready
from person_search.nodes.params import declare_ros, declare_section
from person_search.nodes.qos import publisher, sensor_qos
from person_search.nodes.runner import run_node


class CameraNode(Node):
    """Publishes ``image_raw`` (and optionally ``image_raw/compressed``, image_transport's name) stamped at capture.

    Stamps are the capture time (a monotonic clock anchored to the wall clock), for a file too:
    with ``video.realtime`` (the default) a file plays like a camera, at its rate on the wall
    clock, frames it cannot deliver in time dropped and counted (``late`` on /diagnostics),
    never queued. Under ``use_sim_time`` stamps come from the node clock instead, so that
    they compare with /clock.
    """

    def __init__(self):
        super().__init__("camera")
        self.cfg: VideoConfig = declare_section(self, "video", VideoConfig)
        ros = declare_ros(self, image_reliable=(False, "publish images reliable instead of best effort"),
                          publish_compressed=(False, "also publish a JPEG on image_raw/compressed"),
                          wait_for_subscribers_s=(30.0, "file and folder sources: start playing once image_raw "
                                                  "has a subscriber, waiting at most this long"))
        if not self.cfg.source:
            raise ValueError("video.source is empty: give a file, device, URL or folder")
        qos = sensor_qos(ros["image_reliable"])
        self.pub = publisher(self, Image, "image_raw", qos)
        self.pub_c = (publisher(self, CompressedImage, self.resolve_topic_name("image_raw") + "/compressed", qos)
                      if ros["publish_compressed"] else None)
        self.sim_time = bool(self.get_parameter("use_sim_time").value)
        self.source = open_source(self.cfg)  # raises SourceError naming the source
        self.stats = StageStats(self, "camera")
        self.get_logger().info(f"camera {self.cfg.source_id}: {self.cfg.source} (loop={self.cfg.loop})")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        if getattr(self.source, "is_live", True):
            self._thread.start()
        else:  # a file would play to its end before the detector is up
            when_downstream_ready(self, self.pub, ros["wait_for_subscribers_s"], self._thread.start)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except SourceError as exc:
                self.get_logger().error(f"{exc}")
                self.stats.errors += 1
                break
            if frame is None:
                self.get_logger().info(f"end of {self.cfg.source} after {self.stats.count} frames; exiting")
                self._stop.set()
                rclpy.try_shutdown(context=self.context)  # ends spin(): the node exits with 0 like a player
                break
            t0 = time.monotonic()
            stamp = self.get_clock().now().nanoseconds if self.sim_time else frame.stamp_ns
            try:
                self.pub.publish(bgr_to_image(frame.image, stamp_ns=stamp, frame_id=frame.source_id))
                if self.pub_c is not None:
                    self.pub_c.publish(jpeg_msg(encode_jpeg(frame.image), stamp_ns=stamp, frame_id=frame.source_id))
            except Exception:  # noqa: BLE001 - the context goes away on Ctrl-C while we publish
                if not rclpy.ok(context=self.context) or self._stop.is_set():
                    break
                raise
            self.stats.tick(time.monotonic() - t0, ns_to_time(stamp))
            self.stats.extra.update(self.source.stats())

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.source.close()


def main(args=None) -> int:
    return run_node(CameraNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())

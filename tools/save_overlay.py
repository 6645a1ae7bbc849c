"""Save one frame of the overlay topic (what RViz shows) from a real run of the graph, as a PNG.

    tools/env.sh python tools/save_overlay.py --out docs/overlay.png

Starts the camera and detector nodes of ``config/cpu.yaml`` (the shared pretrained YOLO11n
where ../shared is beside the repository, else HOG) on a generated sample video, in a DDS
domain of its own, subscribes to ``/cam0/overlay`` and writes the first frame, after
``--skip`` frames, whose overlay shows at least ``--min-people`` boxes. The sample video is
generated from photos that packages ship (person_search.demo.sample).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path


def main(argv=None) -> int:
    """Run the graph's first two nodes and write one overlay frame; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/overlay.png", help="PNG to write (default docs/overlay.png)")
    ap.add_argument("--config", default="cpu", help="cpu, test, orin or a YAML path (default cpu)")
    ap.add_argument("--skip", type=int, default=20, help="overlay frames to let pass first (tracks settle)")
    ap.add_argument("--min-people", type=int, default=2, help="boxes the saved frame must show (default 2)")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    a = ap.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))

    import cv2
    import rclpy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from person_search.demo.sample import make_sample_video
    from person_search.graph import CameraSpec, Graph, config_path, node_set
    from person_search.nodes.qos import RELIABLE_QOS, sensor_qos
    from person_search.nodes.convert import image_to_bgr, time_to_ns

    work = Path(tempfile.mkdtemp(prefix="person_search_overlay_"))
    video = make_sample_video(work / "sample.mp4", seconds=8.0)
    specs = [s for s in node_set([CameraSpec("cam0", str(video))], loop=True) if s.name in ("camera", "detector")]
    graph = Graph(specs, config_path(a.config), log_dir=work / "logs")
    rclpy.init()
    node = rclpy.create_node("person_search_save_overlay")
    lock = threading.Lock()
    people = {}  # frame stamp -> boxes in that frame (Detection2DArray)
    frames = []

    def on_det(msg):
        with lock:
            people[time_to_ns(msg.header.stamp)] = len(msg.detections)

    def on_overlay(msg):
        with lock:
            frames.append(msg)
            del frames[:-10]

    node.create_subscription(Detection2DArray, "/cam0/detections", on_det, RELIABLE_QOS)
    node.create_subscription(Image, "/cam0/overlay", on_overlay, sensor_qos(False))
    seen = 0
    try:
        with graph:
            deadline = time.monotonic() + a.timeout
            while time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.2)
                if graph.dead():
                    print(f"error: a node exited: {graph.dead()} (logs in {work / 'logs'})", file=sys.stderr)
                    return 1
                with lock:
                    ready = [f for f in frames if people.get(time_to_ns(f.header.stamp), 0) >= a.min_people]
                    seen = max(seen, len(people))
                if ready and seen >= a.skip:
                    frame = ready[-1]
                    out = Path(a.out)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(out), image_to_bgr(frame))
                    n = people[time_to_ns(frame.header.stamp)]
                    print(f"wrote {out}: {frame.width}x{frame.height} overlay of frame {frame.header.frame_id} "
                          f"with {n} people (config {a.config}, generated sample video)")
                    return 0
        print(f"error: no overlay frame with {a.min_people} people within {a.timeout:.0f} s "
              f"(logs in {work / 'logs'})", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())

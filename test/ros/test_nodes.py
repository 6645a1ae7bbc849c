"""Single nodes as real processes: bad parameters, bad frames, conversions."""

from __future__ import annotations

import subprocess
import sys
import time

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rclpy.qos import ReliabilityPolicy

from person_search.demo.sample import sample_images
from person_search.graph import CameraSpec, Graph, config_path, node_set
from person_search.nodes import convert

pytestmark = pytest.mark.ros
TEST_CFG = str(config_path("test"))


def _run_node(module: str, *params: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", f"person_search.nodes.{module}", "--ros-args", "--params-file", TEST_CFG]
    for p in params:
        cmd += ["-p", p]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("module,param,needle", [
    ("detector_node", "detector.conf:=1.5", "detector.conf out of range Min: 0.0, Max: 1.0"),
    ("detector_node", "detector.tracker:=sort", "detector.tracker must be bytetrack or botsort"),
    ("detector_node", "detector.imgsz:=100000", "detector.imgsz"),
    ("camera_node", "video.source:=/nonexistent/video.mp4", "/nonexistent/video.mp4"),
    ("embedder_node", "encoder.weights:=/nonexistent/clip.pt", "/nonexistent/clip.pt"),
    ("index_node", "gallery.window_s:=-1.0", "gallery.window_s out of range"),
    ("query_node", "query.max_chars:=0", "query.max_chars out of range"),
    ("detector_node", "detector.conf:=high", "detector.conf must be a number"),
])
def test_bad_parameters_exit_with_a_clear_message(module, param, needle):
    proc = _run_node(module, param)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_detector_survives_bad_frames_and_keeps_publishing(probe):
    from sensor_msgs.msg import Image
    from person_search.nodes.qos import sensor_qos
    g = Graph([s for s in node_set([CameraSpec("camx", image_topic="image_raw")]) if s.name == "detector"],
              config_path("test"), extra_params={"ros.wait_for_subscribers_s": 0.0})
    with g:
        pub = probe.node.create_publisher(Image, "/camx/image_raw", sensor_qos(True))
        probe.wait_for(lambda: pub.get_subscription_count() > 0, 60, "the detector to subscribe", graph=g)
        bus = cv2.imread(str(next(p for p in sample_images() if p.name == "bus.jpg")))
        bus = cv2.resize(bus, (480, 640))
        good = convert.bgr_to_image(bus, stamp_ns=time.time_ns(), frame_id="camx")
        bad_enc = convert.bgr_to_image(bus, frame_id="camx")
        bad_enc.encoding = "16UC1"
        short = convert.bgr_to_image(bus, frame_id="camx")
        short.data = bytes(short.data[:1000])
        n0 = len(probe.crops)
        for msg in (bad_enc, short, bad_enc):
            pub.publish(msg)
            time.sleep(0.3)
        for _ in range(3):
            good.header.stamp = convert.ns_to_time(time.time_ns())
            pub.publish(good)
            time.sleep(0.5)
        probe.wait_for(lambda: any(cam == "camx" for cam, _, _ in probe.crops[n0:]), 30,
                       "crops after the bad frames", graph=g)
        assert not g.dead(), g.dead()
        # exactly one input subscription, and no compressed one next to it; best effort by default
        assert probe.node.count_subscribers("/camx/image_raw/compressed") == 0
        info, = probe.node.get_subscriptions_info_by_topic("/camx/image_raw")
        assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        probe.node.destroy_publisher(pub)


def test_external_compressed_camera_feeds_the_detector(probe, tmp_path):
    """Bring your own camera: an arbitrary topic, image_transport's /compressed, no camera node.

    The subscription's reliability is overridden from the parameter YAML, as a user whose
    camera publishes reliable-only would do.
    """
    from sensor_msgs.msg import CameraInfo, CompressedImage
    from person_search.core.imaging import encode_jpeg
    from person_search.nodes.qos import sensor_qos
    specs = node_set([CameraSpec("ext", image_topic="/vendor/front/image_raw")], image_transport="compressed")
    assert [s.fqn for s in specs if s.namespace == "/ext"] == ["/ext/detector"]  # no camera node
    params = yaml.safe_load(Path(config_path("test")).read_text())
    params["/**"]["ros__parameters"]["qos_overrides"] = {
        "/vendor/front/image_raw/compressed": {"subscription": {"reliability": "reliable"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    g = Graph([s for s in specs if s.namespace == "/ext"], tmp_path / "params.yaml",
              extra_params={"ros.wait_for_subscribers_s": 0.0})
    infos = []
    probe.node.create_subscription(CameraInfo, "/ext/camera_info", infos.append, sensor_qos(False))
    with g:
        topic = "/vendor/front/image_raw/compressed"
        cpub = probe.node.create_publisher(CompressedImage, topic, sensor_qos(True))
        ipub = probe.node.create_publisher(CameraInfo, "/vendor/front/camera_info", sensor_qos(False))
        probe.wait_for(lambda: cpub.get_subscription_count() > 0, 60, "the detector to subscribe", graph=g)
        assert probe.node.count_subscribers("/vendor/front/image_raw") == 0  # one input only
        info, = probe.node.get_subscriptions_info_by_topic(topic)
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # the YAML override
        bus = cv2.resize(cv2.imread(str(next(p for p in sample_images() if p.name == "bus.jpg"))), (480, 640))
        stamp = time.time_ns()
        cpub.publish(convert.jpeg_msg(b"garbage", stamp_ns=stamp - 1, frame_id="front"))

        def fed() -> bool:
            cpub.publish(convert.jpeg_msg(encode_jpeg(bus), stamp_ns=time.time_ns(), frame_id="front"))
            ipub.publish(CameraInfo(width=480, height=640))
            return any(cam == "front" and st >= stamp and ids for cam, st, ids in probe.crops)
        probe.wait_for(fed, 60, "crops from the external compressed camera", graph=g)
        assert not any(st == stamp - 1 for _, st, _ in probe.crops)
        probe.wait_for(lambda: bool(infos), 10, "camera_info passed through to /ext/camera_info")
        assert infos[-1].width == 480
        assert not g.dead(), g.dead()
        probe.node.destroy_publisher(cpub)
        probe.node.destroy_publisher(ipub)


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8", "mono8"])
def test_image_conversion_roundtrip(encoding):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    if encoding == "mono8":
        bgr = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    conv = {"bgr8": None, "rgb8": cv2.COLOR_BGR2RGB, "bgra8": cv2.COLOR_BGR2BGRA, "rgba8": cv2.COLOR_BGR2RGBA,
            "mono8": cv2.COLOR_BGR2GRAY}[encoding]
    raw = bgr if conv is None else cv2.cvtColor(bgr, conv)
    msg = convert.bgr_to_image(bgr)
    msg.encoding = encoding
    msg.data = raw.tobytes()
    msg.step = raw.shape[1] * (raw.shape[2] if raw.ndim == 3 else 1)
    out = convert.image_to_bgr(msg, use_bridge=False)
    np.testing.assert_array_equal(out, bgr)


def test_image_conversion_with_row_padding():
    bgr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    padded = np.zeros((4, 20), np.uint8)
    padded[:, :15] = bgr.reshape(4, 15)
    msg = convert.bgr_to_image(bgr)
    msg.step, msg.data = 20, padded.tobytes()
    np.testing.assert_array_equal(convert.image_to_bgr(msg, use_bridge=False), bgr)


@pytest.mark.parametrize("mutate,needle", [
    (lambda m: setattr(m, "encoding", "32FC1"), "unsupported image encoding"),
    (lambda m: setattr(m, "data", bytes(10)), "does not fit"),
    (lambda m: (setattr(m, "height", 0)), "empty image"),
])
def test_bad_images_raise_clear_errors(mutate, needle):
    msg = convert.bgr_to_image(np.zeros((8, 8, 3), np.uint8))
    mutate(msg)
    with pytest.raises(convert.ImageError, match=needle):
        convert.image_to_bgr(msg, use_bridge=False)


def test_numpy_conversion_matches_cv_bridge():
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge is not installed (ROS 2 distribution package)")
    rng = np.random.default_rng(1)
    for enc, conv in (("bgr8", None), ("rgb8", cv2.COLOR_BGR2RGB), ("mono8", cv2.COLOR_BGR2GRAY)):
        bgr = rng.integers(0, 255, (31, 17, 3), dtype=np.uint8)
        raw = bgr if conv is None else cv2.cvtColor(bgr, conv)
        msg = cv_bridge.CvBridge().cv2_to_imgmsg(raw, encoding=enc)
        np.testing.assert_array_equal(convert.image_to_bgr(msg, use_bridge=False),
                                      convert.image_to_bgr(msg, use_bridge=True))


def test_compressed_roundtrip_and_garbage():
    img = np.full((20, 30, 3), 120, np.uint8)
    from person_search.core.imaging import encode_jpeg
    out = convert.compressed_to_bgr(convert.jpeg_msg(encode_jpeg(img)))
    assert out.shape == img.shape and abs(int(out.mean()) - 120) <= 2
    with pytest.raises(convert.ImageError, match="could not be decoded"):
        convert.compressed_to_bgr(convert.jpeg_msg(b"not a jpeg at all"))


def test_camera_stamps_follow_the_node_clock_under_sim_time(probe, sample_video):
    """use_sim_time: frames are stamped from /clock, not from the wall clock."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from person_search.nodes.qos import sensor_qos
    sim_ns = 1_000_000_000_000  # 1000 s after the epoch: far from the wall clock
    clock_pub = probe.node.create_publisher(Clock, "/clock", 10)
    state = {"t": sim_ns}

    def tick():
        state["t"] += 100_000_000
        clock_pub.publish(Clock(clock=convert.ns_to_time(state["t"])))
    timer = probe.node.create_timer(0.1, tick)
    stamps = []
    sub = probe.node.create_subscription(Image, "/cam9/image_raw",
                                         lambda m: stamps.append(convert.time_to_ns(m.header.stamp)),
                                         sensor_qos(False))
    spec = next(s for s in node_set([CameraSpec("cam9", str(sample_video))]) if s.name == "camera")
    g = Graph([spec], config_path("test"), extra_params={"use_sim_time": True})
    try:
        with g:
            probe.wait_for(lambda: len(stamps) >= 3, 60, "frames from the sim-time camera")
        assert all(sim_ns <= s <= state["t"] + 1_000_000_000 for s in stamps[-3:]), (stamps[-3:], state["t"])
    finally:
        probe.node.destroy_timer(timer)
        probe.node.destroy_subscription(sub)
        probe.node.destroy_publisher(clock_pub)

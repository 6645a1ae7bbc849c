"""Config files, validation and the node-set declaration."""

from __future__ import annotations

import pytest

from person_search.core.config import ConfigError, DetectorConfig, PipelineConfig, load_config
from person_search.graph import CameraSpec, node_set, parse_cameras
from person_search.launcher import CONFIG_DIR


@pytest.mark.parametrize("name", ["cpu", "orin", "test"])
def test_shipped_configs_load_and_validate(name):
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert isinstance(cfg, PipelineConfig)


def test_ros_parameter_file_and_plain_form_agree(tmp_path):
    ros = tmp_path / "ros.yaml"
    ros.write_text("/**:\n  ros__parameters:\n    detector: {conf: 0.4}\n    ros: {image_reliable: true}\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("detector: {conf: 0.4}\n")
    assert load_config(ros) == load_config(plain)
    assert load_config(ros).detector.conf == 0.4


@pytest.mark.parametrize("text,needle", [
    ("detector: {conf: 2.0}\n", "detector.conf must be in [0, 1]"),
    ("detector: {confidence: 0.3}\n", "unknown detector key(s): confidence"),
    ("detectr: {conf: 0.3}\n", "unknown config section(s): detectr"),
    ("detector: {conf: high}\n", "detector.conf must be a number"),
    ("detector: {tracker: sort}\n", "bytetrack or botsort"),
    ("video: {loop: 1}\n", "video.loop must be true or false"),
    ("query: {templates: ['no placeholder']}\n", "must each contain {}"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_bad_values_are_refused_with_the_parameter_named(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert needle in str(exc.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_ints_are_accepted_for_floats_and_overrides_apply():
    cfg = load_config(None, {"detector": {"conf": 1, "imgsz": 320}})
    assert cfg.detector.conf == 1.0 and isinstance(cfg.detector.conf, float)
    assert cfg.detector.imgsz == 320
    assert DetectorConfig().conf == 0.25


def test_node_set_one_pipeline_per_camera_and_shared_stages():
    specs = node_set([CameraSpec("front", "a.mp4"), CameraSpec("back", "rtsp://x")], loop=True)
    names = [s.fqn for s in specs]
    assert names == ["/front/camera", "/front/detector", "/back/camera", "/back/detector", "/embedder", "/index",
                     "/query"]
    cam = specs[0]
    assert cam.parameters == {"video.source_id": "front", "video.source": "a.mp4", "video.loop": True}
    args = cam.ros_args("/p.yaml")
    assert "__ns:=/front" in args and "/p.yaml" in args
    assert "video.source:='a.mp4'" in args
    assert "person_crops:=/person_crops" in specs[1].ros_args(None)  # the detector publishes to the shared topic


def test_node_set_refuses_bad_cameras():
    with pytest.raises(ValueError, match="unique"):
        node_set([CameraSpec("a"), CameraSpec("a")])
    with pytest.raises(ValueError, match="ROS name"):
        CameraSpec("front-door")
    with pytest.raises(ValueError, match="at least one"):
        node_set([])


def test_parse_cameras():
    cams = parse_cameras(["front=/dev/video0", "rtsp://host/stream", "/data/v.mp4"])
    got = [(c.name, c.source) for c in cams]
    assert got == [("front", "/dev/video0"), ("cam1", "rtsp://host/stream"), ("cam2", "/data/v.mp4")]

"""Config files, validation and the node-set declaration."""

from __future__ import annotations

import dataclasses

import pytest

from person_search.core.config import (AttentionConfig, ConfigError, DetectorConfig, EncoderConfig, PipelineConfig,
                                       load_config)
from person_search.graph import CONFIG_DIR, CameraSpec, node_set, parse_cameras


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
    ("encoder: {crop_budget: lots}\n", "encoder.crop_budget must be auto, all or a number of crops/s > 0"),
    ("encoder: {crop_budget: 0}\n", "encoder.crop_budget must be auto, all or a number"),
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


@pytest.mark.parametrize("text", [
    "encoder: {attention: {kind: eager}}\n",  # the nested section
    "encoder: {attention: eager}\n",  # the old flat string form
    "/**:\n  ros__parameters:\n    encoder: {attention: {kind: eager}}\n",  # as ROS reads encoder.attention.kind
])
def test_attention_section_nested_and_flat_forms(tmp_path, text):
    f = tmp_path / "a.yaml"
    f.write_text(text)
    cfg = load_config(f)
    assert isinstance(cfg.encoder.attention, AttentionConfig) and cfg.encoder.attention.kind == "eager"


def test_attention_dotted_overrides_as_set_and_ros_give_them():
    assert load_config(None, {"encoder": {"attention.kind": "eager"}}).encoder.attention.kind == "eager"
    assert load_config(None, {"encoder": {"attention": "eager"}}).encoder.attention.kind == "eager"
    assert load_config(None).encoder.attention == AttentionConfig(kind="sdpa")


@pytest.mark.parametrize("overrides,needle", [
    ({"encoder": {"attention": {"kind": "flash"}}},
     "encoder.attention.kind must be one of sdpa, eager, window, sparse, lam, prune, not 'flash'"),
    ({"encoder": {"attention": {"size": 3}}}, "unknown encoder.attention key(s): size"),
    ({"encoder": {"attention": {"kind": [3.5]}}}, "encoder.attention.kind must be a string"),
    ({"encoder": {"attention": {"kind": 3.5}}},
     "encoder.attention.kind must be one of sdpa, eager, window, sparse, lam, prune, not '3.5'"),
    ({"encoder": {"arch.kind": "x"}}, "unknown encoder key(s): arch.kind"),
])
def test_bad_attention_values_name_the_parameter(overrides, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(None, overrides)
    assert needle in str(exc.value)


def test_descriptions_and_ranges_live_in_field_metadata():
    fields = {f.name: f for f in dataclasses.fields(EncoderConfig)}
    assert fields["batch_size"].metadata == {"description": "crops per forward pass", "range": (1, 1024)}
    assert "sdpa" in dataclasses.fields(AttentionConfig)[0].metadata["description"]
    with pytest.raises(ConfigError, match=r"encoder.batch_size must be in \[1, 1024\], got 0"):
        load_config(None, {"encoder": {"batch_size": 0}})
    assert not hasattr(EncoderConfig, "RANGES")


def test_crop_budget_values_and_shipped_choices(tmp_path):
    f = tmp_path / "b.yaml"
    f.write_text("encoder: {crop_budget: 12.5}\n")  # a YAML number is a rate in crops/s
    assert load_config(f).encoder.crop_budget == "12.5"
    assert load_config(None).encoder.crop_budget == "auto"
    assert load_config(CONFIG_DIR / "cpu.yaml").encoder.crop_budget == "auto"
    assert load_config(CONFIG_DIR / "test.yaml").encoder.crop_budget == "all"


def test_attention_config_gathers_each_kernels_settings():
    """AttentionConfig = kind + each kernel's settings (attention/settings.py), as the registry pairs them."""
    from person_search.core.attention.registry import KERNEL_SETTINGS, KERNELS, settings_classes
    from person_search.core.config import load_config
    gathered = [f.name for cls in settings_classes() for f in dataclasses.fields(cls)]
    assert [f.name for f in dataclasses.fields(AttentionConfig)] == ["kind"] + gathered
    for kind in KERNELS.names():  # the kernel class names the same settings class as the registry
        assert KERNELS.get(kind).settings is KERNEL_SETTINGS.get(kind), kind
    # only the chosen kernel's own checks run: an even window is refused for window, ignored for sdpa
    AttentionConfig(kind="sdpa", window_size=4).validate()
    with pytest.raises(ConfigError, match="window_size must be odd"):
        AttentionConfig(kind="window", window_size=4).validate()
    cfg = load_config("config/test.yaml", {"encoder": {"attention.kind": "prune", "attention.prune_keep": 0.25}})
    assert (cfg.encoder.attention.kind, cfg.encoder.attention.prune_keep) == ("prune", 0.25)
    KERNEL_SETTINGS["copy"] = KERNEL_SETTINGS["window"]
    try:
        with pytest.raises(ValueError, match="window_size.*declared by window and copy"):
            settings_classes()
    finally:
        del KERNEL_SETTINGS["copy"]

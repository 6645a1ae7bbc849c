"""The image-backend registry: the one list of backends, device checks, a backend added at run time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from person_search.core.backends.registry import BACKENDS
from person_search.core.backends.torch import TorchBackend
from person_search.core.config import ConfigError, load_config
from person_search.core.clip_encoder import ClipEncoder


from tinykit import cfg


def test_unknown_backend_is_one_config_error():
    want = "encoder.backend must be one of torch, torch-int8, onnx, onnx-int8, openvino, tensorrt, not 'tensorflow'"
    with pytest.raises(ConfigError) as ei:
        load_config(None, {"encoder": {"backend": "tensorflow"}})
    assert str(ei.value) == want
    with pytest.raises(ConfigError, match="must be one of .*not 'tensorflow'"):
        ClipEncoder(cfg(), backend="tensorflow")


@pytest.mark.parametrize("name,cuda_ok", [("torch", True), ("torch-int8", False), ("onnx", False),
                                          ("onnx-int8", False), ("openvino", False)])
def test_each_backend_declares_its_devices(name, cuda_ok):
    cls = BACKENDS.get(name)
    assert cls.name == name
    cls.check_device(torch.device("cpu"))
    if cuda_ok:
        cls.check_device(torch.device("cuda:0"))
    else:
        with pytest.raises(ConfigError, match=f"encoder.backend {name} runs on cpu only, not cuda:0"):
            cls.check_device(torch.device("cuda:0"))


def test_tensorrt_is_listed_for_cuda_only():
    assert "tensorrt" in BACKENDS.names()
    cls = BACKENDS.get("tensorrt")
    assert cls.name == "tensorrt" and cls.devices == ("cuda",)
    cls.check_device(torch.device("cuda:0"))
    with pytest.raises(ConfigError, match="encoder.backend tensorrt runs on cuda only, not cpu"):
        cls.check_device(torch.device("cpu"))


def test_tensorrt_on_cpu_is_one_config_error_at_start():
    with pytest.raises(ConfigError) as ei:
        ClipEncoder(cfg(backend="tensorrt"), towers=("image",))
    assert str(ei.value).startswith("encoder.backend tensorrt runs on cuda only, not cpu") and "\n" not in str(ei.value)


def test_text_only_encoder_ignores_the_image_backend():
    # the query node builds the text tower alone: a tensorrt image backend must not matter there
    enc = ClipEncoder(cfg(backend="tensorrt"), towers=("text",))
    assert enc.backend is None and enc.encode_text(["a man in a red jacket"]).shape == (1, 64)


def test_bad_tensorrt_batch_profile_is_one_config_error():
    with pytest.raises(ConfigError, match="trt_min_batch <= trt_opt_batch <= trt_max_batch must hold, got 8/4/32"):
        load_config(None, {"encoder": {"trt_min_batch": 8, "trt_opt_batch": 4}})


def test_backend_device_mismatch_refused_before_building():
    with pytest.raises(ConfigError) as ei:
        ClipEncoder(cfg(device="cuda", backend="onnx"), towers=("image",))
    assert "encoder.backend onnx runs on cpu only" in str(ei.value) and "\n" not in str(ei.value)


class _Float64Backend(TorchBackend):
    """A runtime registered at run time: the torch tower in float64."""

    name = "test-float64"
    devices = ("cpu",)

    def __init__(self, tower, facts, ctx):
        super().__init__(tower.double(), facts, ctx)

    def run(self, batch):
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch).double()).float().numpy()


def test_a_registered_backend_is_accepted_by_the_config_and_used():
    BACKENDS.register(_Float64Backend.name, _Float64Backend)
    try:
        c = cfg(backend="test-float64")
        c.validate()
        enc = ClipEncoder(c, towers=("image",))
        assert isinstance(enc.backend, _Float64Backend) and enc.backend.describe()["backend"] == "test-float64"
        crops = [np.full((80, 30, 3), v, np.uint8) for v in (0, 128, 255)]
        ref = ClipEncoder(cfg(), towers=("image",)).encode_images(crops)
        np.testing.assert_allclose(enc.encode_images(crops), ref, atol=1e-5)
    finally:
        BACKENDS.unregister(_Float64Backend.name)
    with pytest.raises(ConfigError):
        cfg(backend="test-float64").validate()


def test_orin_config_runs_the_image_tower_as_a_tensorrt_engine_on_tall_crops():
    from person_search.graph import CONFIG_DIR

    cfg = load_config(CONFIG_DIR / "orin.yaml")
    enc = cfg.encoder
    assert (enc.backend, enc.device, enc.precision) == ("tensorrt", "cuda", "fp16")
    assert (enc.image_height, enc.image_width) == (384, 128)
    assert enc.trt_min_batch <= enc.trt_opt_batch <= enc.trt_max_batch and cfg.detector.model.endswith(".engine")

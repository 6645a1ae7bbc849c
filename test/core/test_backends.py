"""The image-backend registry: the one list of backends, device checks, a backend added at run time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from person_search.core.backends.registry import BACKENDS
from person_search.core.backends.torch import TorchBackend
from person_search.core.config import ConfigError, EncoderConfig, load_config
from person_search.core.encoder import ClipEncoder


def cfg(**kw) -> EncoderConfig:
    base = dict(arch="PS-Tiny-ViT", image_height=64, image_width=64, batch_size=4)
    base.update(kw)
    return EncoderConfig(**base)


def test_unknown_backend_is_one_config_error():
    want = "encoder.backend must be one of torch, torch-int8, onnx, onnx-int8, not 'tensorflow'"
    with pytest.raises(ConfigError) as ei:
        load_config(None, {"encoder": {"backend": "tensorflow"}})
    assert str(ei.value) == want
    with pytest.raises(ConfigError, match="must be one of .*not 'tensorflow'"):
        ClipEncoder(cfg(), backend="tensorflow")


@pytest.mark.parametrize("name,cuda_ok", [("torch", True), ("torch-int8", False), ("onnx", False),
                                          ("onnx-int8", False)])
def test_each_backend_declares_its_devices(name, cuda_ok):
    cls = BACKENDS.get(name)
    assert cls.name == name
    cls.check_device(torch.device("cpu"))
    if cuda_ok:
        cls.check_device(torch.device("cuda:0"))
    else:
        with pytest.raises(ConfigError, match=f"encoder.backend {name} runs on cpu only, not cuda:0"):
            cls.check_device(torch.device("cuda:0"))


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

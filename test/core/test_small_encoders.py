"""The shipped small vision encoders (timm CNN image towers + a small text tower) build through build_clip."""

from __future__ import annotations

import pytest
import torch

from person_search.core.config import EncoderConfig
from person_search.core.models.factory import build_clip
from person_search.core.models.archs import model_config, shipped_archs

SMALL = {"PS-MobileNetV3-L": "mobilenetv3_large_100", "PS-EfficientNet-B0": "efficientnet_b0",
         "PS-MobileNetV4-S": "mobilenetv4_conv_small"}


def test_small_encoders_are_shipped_timm_towers_with_a_small_text_tower():
    assert set(SMALL) <= set(shipped_archs())
    for arch, timm_name in SMALL.items():
        cfg = model_config(arch)
        assert cfg["vision_cfg"]["timm_model_name"] == timm_name
        assert cfg["text_cfg"]["layers"] <= 4 and cfg["text_cfg"]["width"] <= 256


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_small_encoder_takes_a_tall_crop_and_gives_the_text_dim(arch):
    built = build_clip(EncoderConfig(arch=arch, image_height=256, image_width=128), for_training=True)
    model = built.model
    text_dim = model.text_projection.shape[1]
    assert built.facts.dim == text_dim == 512
    img = model.encode_image(torch.randn(2, 3, 256, 128))
    txt = model.encode_text(built.tokenizer(["a man in a red coat", "a child"]))
    assert img.shape == txt.shape == (2, text_dim)
    (img @ txt.t()).sum().backward()
    assert model.visual.trunk.conv_stem.weight.grad.abs().sum() > 0

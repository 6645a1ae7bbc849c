"""TensorRT image backend on a real GPU: agreement with torch fp32, dynamic batch, engine cache.

Skipped with the reason without a CUDA GPU or without TensorRT (``requirements-gpu.txt``).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from person_search.core.backends.tensorrt import sidecar_path
from person_search.core.config import EncoderConfig
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.models.factory import build_clip
from tinykit import cfg

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]
LOGGER = "person_search.core.backends.tensorrt"


def _crops(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (int(rng.integers(96, 300)), int(rng.integers(40, 120)), 3), dtype=np.uint8)
            for _ in range(n)]


def _cfg(arch="PS-Tiny-ViT", size=(64, 32), profile=(1, 2, 4), **kw):
    return EncoderConfig(arch=arch, image_height=size[0], image_width=size[1], device="cuda", precision="fp16",
                         backend="tensorrt", batch_size=64, trt_min_batch=profile[0], trt_opt_batch=profile[1],
                         trt_max_batch=profile[2], **kw)


def _engines(root):
    return sorted((root / "tensorrt").glob("*.engine"))


def test_vit_b16_engine_matches_torch_fp32_at_every_batch(tmp_path):
    ref = ClipEncoder(EncoderConfig(arch="ViT-B-16", image_height=384, image_width=128, device="cuda",
                                    precision="fp32", batch_size=64), towers=("image",))
    enc = ClipEncoder(_cfg("ViT-B-16", (384, 128), (1, 8, 16)), towers=("image",), cache_dir=str(tmp_path))
    assert enc.model_id == ref.model_id and enc.backend.describe()["precision"] == "fp16"
    crops = _crops(21)
    for n in (1, 2, 8, 16, 21):  # 21 > max batch 16: split into 16 + 5
        a = ref.encode_images(crops[:n])
        b = enc.encode_images(crops[:n])
        assert b.shape == a.shape == (n, 512) and b.dtype == np.float32
        assert (a * b).sum(1).min() >= 0.999, n


def test_engine_is_cached_and_rebuilt_when_stale(tmp_path, caplog):
    crops = _crops(5)
    first = ClipEncoder(_cfg(), towers=("image",), cache_dir=str(tmp_path))
    (engine,) = _engines(tmp_path)
    assert (tmp_path / "tensorrt" / "timing.cache").is_file()
    mtime, out = engine.stat().st_mtime_ns, first.encode_images(crops)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        again = ClipEncoder(_cfg(), towers=("image",), cache_dir=str(tmp_path))
    assert engine.stat().st_mtime_ns == mtime and any("loaded from cache" in r.message for r in caplog.records)
    assert not any("building the TensorRT engine" in r.message for r in caplog.records)
    np.testing.assert_allclose(again.encode_images(crops), out, atol=1e-3)
    # metadata of another GPU beside our engine (copied from another machine): rebuilt, never used
    meta = json.loads(sidecar_path(engine).read_text())
    sidecar_path(engine).write_text(json.dumps({**meta, "gpu_name": "Some Other GPU"}))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ClipEncoder(_cfg(), towers=("image",), cache_dir=str(tmp_path))
    assert any("built for another setup" in r.message for r in caplog.records)
    assert sum("building the TensorRT engine" in r.message for r in caplog.records) == 1
    assert json.loads(sidecar_path(engine).read_text())["gpu_name"] == meta["gpu_name"]


def test_new_weights_build_a_new_engine_through_the_whole_path(tmp_path):
    # a fine-tuned (e.g. LoRA-merged) checkpoint is a plain open_clip state dict: save one with changed weights
    ClipEncoder(_cfg(), towers=("image",), cache_dir=str(tmp_path))
    model = build_clip(cfg()).model  # native size
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "merged.pt"
    torch.save(state, ckpt)
    tuned = ClipEncoder(_cfg(weights=str(ckpt)), towers=("image",), cache_dir=str(tmp_path))
    assert len(_engines(tmp_path)) == 2
    ref = ClipEncoder(cfg(image_width=32, weights=str(ckpt)), towers=("image",))
    crops = _crops(6)
    assert (tuned.encode_images(crops) * ref.encode_images(crops)).sum(1).min() >= 0.999

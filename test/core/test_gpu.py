"""GPU paths: CLIP fp16 on CUDA and the YOLO detector on CUDA (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.core.config import DetectorConfig, EncoderConfig
from person_search.core.clip_encoder import ClipEncoder

pytestmark = pytest.mark.gpu


def _crops(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (int(rng.integers(96, 300)), int(rng.integers(40, 120)), 3), dtype=np.uint8)
            for _ in range(n)]


@pytest.mark.parametrize("arch,size", [("PS-Tiny-ViT", (64, 64)), ("ViT-B-16", (224, 224)), ("ViT-B-16", (384, 128))])
def test_fp16_cuda_matches_fp32_cpu(arch, size):
    base = dict(arch=arch, image_height=size[0], image_width=size[1], batch_size=4)
    cpu = ClipEncoder(EncoderConfig(**base), towers=("image", "text"))
    gpu = ClipEncoder(EncoderConfig(**base, device="cuda", precision="fp16"), towers=("image", "text"))
    assert gpu.model_id == cpu.model_id
    crops = _crops()
    a, b = cpu.encode_images(crops), gpu.encode_images(crops)
    assert b.dtype == np.float32 and b.shape == a.shape
    assert np.min(np.sum(a * b, axis=1)) > 0.99
    t = ["a man in a red jacket", "a woman with a black backpack"]
    assert np.min(np.sum(cpu.encode_text(t) * gpu.encode_text(t), axis=1)) > 0.99


def test_yolo_on_cuda_runs_the_tracker(tmp_path):
    from ultralytics import YOLO
    from person_search.core.detect import PersonTracker
    from person_search.core.types import Frame
    import torch
    torch.manual_seed(0)
    path = tmp_path / "yolo11n_random.pt"
    YOLO("yolo11n.yaml").save(str(path))
    cfg = DetectorConfig(backend="yolo", model=str(path), device="0", conf=0.0001)
    with PersonTracker(cfg, tracker_args={"fuse_score": False}) as tr:
        img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        for i in range(3):
            det = tr.update(Frame(image=img, stamp_ns=i * 66_000_000, source_id="cam", index=i))
            assert det.frame_size == (640, 480)

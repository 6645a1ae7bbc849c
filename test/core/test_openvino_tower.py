"""OpenVINO image backend (CPU): same embeddings as torch, IR cached with its metadata checked on load."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tinykit import cfg
from person_search.core.clip_encoder import ClipEncoder

pytest.importorskip("openvino")
LOGGER = "person_search.core.backends.openvino"


def _cfg(**kw):
    return cfg(image_width=32, threads=1, **kw)


def test_openvino_matches_torch_and_reuses_its_cache(tmp_path, caplog):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (int(rng.integers(60, 200)), int(rng.integers(30, 90)), 3), dtype=np.uint8)
             for _ in range(6)]  # 6 > batch_size 4: two calls of different batch sizes
    ref = ClipEncoder(_cfg(), towers=("image",)).encode_images(crops)
    enc = ClipEncoder(_cfg(backend="openvino"), towers=("image",), cache_dir=str(tmp_path))
    out = enc.encode_images(crops)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-4)
    (xml,) = (tmp_path / "openvino").glob("*.xml")
    assert xml.with_suffix(".bin").is_file() and not list((tmp_path / "openvino").glob("*.onnx"))
    mtime = xml.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger=LOGGER):
        again = ClipEncoder(_cfg(backend="openvino"), towers=("image",), cache_dir=str(tmp_path))
    assert xml.stat().st_mtime_ns == mtime and any("loaded from cache" in r.message for r in caplog.records)
    np.testing.assert_allclose(again.encode_images(crops), out, atol=1e-6)
    # an IR whose metadata says another model (stale, or copied in) is converted again, never used
    xml.write_text(xml.read_text().replace(f'value="{enc.model_id}"', 'value="ViT-B-16@openai"'))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        third = ClipEncoder(_cfg(backend="openvino"), towers=("image",), cache_dir=str(tmp_path))
    assert any("unusable" in r.message and "model_id" in r.message for r in caplog.records)
    assert f'value="{enc.model_id}"' in xml.read_text()
    np.testing.assert_allclose(third.encode_images(crops), out, atol=1e-6)

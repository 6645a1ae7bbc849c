"""ClipEncoder with real open_clip models (the tiny PS-Tiny-ViT config: fast on CPU)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch

from person_search.core import paths
from person_search.core.attention.module import ClipAttention
from person_search.core.backends.export import expected_metadata
from person_search.core.config import ConfigError, EncoderConfig
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.models.pos_embed import resize_pos_embed_2d
from person_search.core.models.archs import open_clip_registered, register_model_configs
from person_search.core.models.weights import WeightsError, file_digest, resolve_weights
from person_search.core.preprocess import preprocess_crops

from tinykit import ARCH, cfg


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (int(rng.integers(20, 200)), int(rng.integers(10, 90)), 3), dtype=np.uint8)
            for _ in range(7)]


@pytest.fixture(scope="module")
def enc():
    return ClipEncoder(cfg())


def _random_checkpoint(path, seed=123):
    torch.manual_seed(seed)
    model = open_clip_registered().create_model(ARCH)
    torch.save(model.state_dict(), path)
    return model.eval()


def test_image_embeddings_shape_dtype_norm(enc, crops):
    out = enc.encode_images(crops)
    assert out.shape == (len(crops), enc.dim) == (7, 64)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert enc.model_id == f"{ARCH}@random-seed0" and enc.pretrained is False


def test_text_embeddings_shape_dtype_norm(enc):
    out = enc.encode_text(["a man in a red jacket", "a woman with a blue backpack", ""])
    assert out.shape == (3, enc.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(out[0], out[1])


def test_batching_matches_one_by_one(enc, crops):
    batched = enc.encode_images(crops)  # batch_size 4: two forward passes
    single = np.concatenate([enc.encode_images([c]) for c in crops])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_empty_lists(enc):
    assert enc.encode_images([]).shape == (0, enc.dim)
    assert enc.encode_text([]).shape == (0, enc.dim)
    assert enc.encode_images([]).dtype == np.float32


def test_random_init_is_identical_and_restores_rng(crops):
    torch.manual_seed(42)
    expected_next = torch.rand(3)
    torch.manual_seed(42)
    a = ClipEncoder(cfg())
    after = torch.rand(3)
    assert torch.equal(after, expected_next), "building the encoder must not change the caller's RNG"
    b = ClipEncoder(cfg(), towers=("text",))
    c = ClipEncoder(cfg(), towers=("image",))
    assert a.model_id == b.model_id == c.model_id
    np.testing.assert_array_equal(a.encode_images(crops), c.encode_images(crops))
    np.testing.assert_array_equal(a.encode_text(["red coat"]), b.encode_text(["red coat"]))


def test_checkpoint_loads_with_digest_model_id(tmp_path, crops):
    path = tmp_path / "tiny.pt"
    model = _random_checkpoint(path)
    enc = ClipEncoder(cfg(weights=str(path)))
    assert enc.pretrained is True
    assert enc.model_id == f"{ARCH}@sha256-{file_digest(path)[:12]}"
    assert enc.model_id != f"{ARCH}@random-seed0"
    with torch.inference_mode():
        x = torch.from_numpy(enc.preprocess(crops))
        ref = torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()
        tok = enc._tokenizer(["a person"])
        ref_t = torch.nn.functional.normalize(model.encode_text(tok), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_images(crops), ref, atol=1e-5)
    np.testing.assert_allclose(enc.encode_text(["a person"]), ref_t, atol=1e-5)
    # the native size keeps the checkpoint's positional embedding exactly
    sd = torch.load(path)
    assert torch.equal(enc.backend.module.positional_embedding, sd["visual.positional_embedding"])


def test_missing_weights_path_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "model.safetensors"
    with pytest.raises(WeightsError) as ei:
        ClipEncoder(cfg(weights=str(missing)))
    assert str(missing) in str(ei.value)
    assert isinstance(ei.value, RuntimeError)


def _isolate_model_folders(tmp_path, monkeypatch):
    """Point every model folder and weights cache of this process into ``tmp_path``."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/person_search/models, ~/.cache/clip
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("PERSON_SEARCH_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("PERSON_SEARCH_SHARED_MODELS", str(tmp_path / "shared"))  # the shared test models
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "ament"))  # no installed share/person_search/models
    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path / "repo_models")
    monkeypatch.chdir(tmp_path)
    dirs = paths.model_dirs()
    assert dirs and all(tmp_path in d.parents for d in dirs), dirs  # nothing of this machine is searched


def test_offline_pretrained_tag_fails_fast(tmp_path, monkeypatch):
    _isolate_model_folders(tmp_path, monkeypatch)
    t0 = time.monotonic()
    with pytest.raises(WeightsError) as ei:
        ClipEncoder(cfg(arch="ViT-B-32", weights="openai", image_height=224, image_width=224))
    assert time.monotonic() - t0 < 10
    msg = str(ei.value)
    assert "ViT-B-32/openai" in msg and "HF_HUB_OFFLINE" in msg and "models/README.md" in msg
    assert "\n" not in msg


def test_pretrained_tag_found_in_the_isolated_model_folder(tmp_path, monkeypatch):
    """The isolation above is real: a file put in $PERSON_SEARCH_MODELS is what resolves the tag."""
    _isolate_model_folders(tmp_path, monkeypatch)
    with pytest.raises(WeightsError):
        resolve_weights("ViT-B-32", "openai")
    local = tmp_path / "models" / "ViT-B-32_openai.safetensors"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"not read by resolve_weights")
    got = resolve_weights("ViT-B-32", "openai")
    assert got.weights_id == "openai" and got.path == str(local)


def test_unknown_tag_is_weights_error():
    with pytest.raises(WeightsError, match="neither a file nor a pretrained tag"):
        ClipEncoder(cfg(weights="no-such-tag"))


def test_tall_crops_random_init(crops):
    enc = ClipEncoder(cfg(image_height=192, image_width=64), towers=("image",))
    out = enc.encode_images(crops)
    assert out.shape == (7, 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert enc.backend.module.positional_embedding.shape == (1 + 12 * 4, 64)
    assert enc.model_id == f"{ARCH}@random-seed0"  # the embedding space is the same model


def test_tall_crops_checkpoint_pos_embed(tmp_path, crops):
    path = tmp_path / "tiny.pt"
    _random_checkpoint(path, seed=7)
    sd = torch.load(path)
    pe = sd["visual.positional_embedding"]
    enc = ClipEncoder(cfg(weights=str(path), image_height=192, image_width=64), towers=("image",))
    new = enc.backend.module.positional_embedding
    assert new.shape == (1 + 12 * 4, 64)
    assert torch.equal(new[0], pe[0])  # class token kept
    expected = resize_pos_embed_2d(pe, (4, 4), (12, 4))
    assert torch.allclose(new, expected)
    assert enc.encode_images(crops).shape == (7, 64)


def test_resize_pos_embed_identity_and_smoothness():
    pe = torch.randn(1 + 14 * 14, 8)
    assert resize_pos_embed_2d(pe, (14, 14), (14, 14)) is pe
    # a spatially constant embedding stays constant; the class token is untouched
    const = torch.cat([torch.full((1, 8), 5.0), torch.ones(16, 8)])
    out = resize_pos_embed_2d(const, (4, 4), (12, 4))
    assert out.shape == (49, 8)
    assert torch.allclose(out[0], torch.full((8,), 5.0))
    assert torch.allclose(out[1:], torch.ones(48, 8), atol=1e-5)
    with pytest.raises(ValueError):
        resize_pos_embed_2d(pe, (10, 10), (12, 4))


def test_sdpa_and_eager_agree(crops):
    a = ClipEncoder(cfg(attention="sdpa"))
    b = ClipEncoder(cfg(attention="eager"))
    assert any(isinstance(m, ClipAttention) and m.kind == "eager" for m in b.backend.module.modules())
    assert any(isinstance(m, ClipAttention) and m.kind == "sdpa" for m in a.backend.module.modules())
    assert a.model_id == b.model_id == f"{ARCH}@random-seed0"  # same function, same embedding space
    np.testing.assert_allclose(a.encode_images(crops), b.encode_images(crops), atol=1e-4)
    texts = ["a man in a red jacket", "child"]
    np.testing.assert_allclose(a.encode_text(texts), b.encode_text(texts), atol=1e-4)


def test_attention_matches_open_clip_reference(tmp_path, crops):
    """Our attention replacement reproduces open_clip's own nn.MultiheadAttention model."""
    path = tmp_path / "tiny.pt"
    model = _random_checkpoint(path, seed=3)
    enc = ClipEncoder(cfg(weights=str(path), attention="eager"))
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(model.encode_image(torch.from_numpy(enc.preprocess(crops))), dim=-1)
    np.testing.assert_allclose(enc.encode_images(crops), ref.numpy(), atol=1e-5)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16"):
        ClipEncoder(cfg(precision="fp16", device="cpu"))


def test_image_only_tower_has_no_text(crops):
    enc = ClipEncoder(cfg(), towers=("image",))
    assert enc.has_image_tower and not enc.has_text_tower
    assert enc._text_model is None and enc._tokenizer is None
    with pytest.raises(RuntimeError, match="no text tower"):
        enc.encode_text(["a person"])
    txt = ClipEncoder(cfg(), towers=("text",))
    assert not txt.has_image_tower
    assert not any(p.ndim == 4 for p in txt._text_model.parameters())  # no conv patch embed left
    with pytest.raises(RuntimeError, match="no image tower"):
        txt.encode_images(crops)


def test_bad_towers_and_backend():
    with pytest.raises(ConfigError):
        ClipEncoder(cfg(), towers=("audio",))
    with pytest.raises(ConfigError):
        ClipEncoder(cfg(), backend="tensorflow")


def test_preprocess_bgr_to_rgb_and_modes():
    blue = np.zeros((30, 10, 3), np.uint8)
    blue[..., 0] = 255  # BGR blue
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    x = preprocess_crops([blue], (64, 32), mean, std)
    assert x.shape == (1, 3, 64, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 2], 1.0, atol=1e-5)  # RGB channel 2 = blue
    np.testing.assert_allclose(x[0, 0], -1.0, atol=1e-5)
    wide = np.full((10, 40, 3), 255, np.uint8)
    lb = preprocess_crops([wide], (64, 32), mean, std, mode="letterbox")
    assert np.allclose(lb[0, :, 32, :], 1.0, atol=1e-5)  # centre rows hold the image
    assert np.allclose(lb[0, :, 0, :], 0.0, atol=1e-2)  # top rows are mean-colour padding
    gray = np.zeros((20, 20), np.uint8)
    assert preprocess_crops([gray], (16, 16), mean, std).shape == (1, 3, 16, 16)
    with pytest.raises(TypeError):
        preprocess_crops([blue.astype(np.float32)], (16, 16), mean, std)
    with pytest.raises(ValueError):
        preprocess_crops([np.zeros((0, 5, 3), np.uint8)], (16, 16), mean, std)


def test_torch_int8_backend_close_to_fp32(crops):
    ref = ClipEncoder(cfg(), towers=("image",))
    q = ClipEncoder(cfg(), towers=("image",), backend="torch-int8")
    cos = (ref.encode_images(crops) * q.encode_images(crops)).sum(1)
    assert cos.min() > 0.99
    assert q.model_id == ref.model_id


@pytest.mark.parametrize("backend,tol", [("onnx", 1e-4), ("onnx-int8", None)])
def test_onnx_backend_matches_torch(tmp_path, crops, backend, tol, caplog):
    c = cfg(image_height=192, image_width=64)
    ref = ClipEncoder(c, towers=("image",)).encode_images(crops)
    enc = ClipEncoder(c, towers=("image",), backend=backend, cache_dir=str(tmp_path))
    out = enc.encode_images(crops)
    assert out.shape == ref.shape and out.dtype == np.float32
    if tol is not None:
        np.testing.assert_allclose(out, ref, atol=tol)
    else:
        assert (out * ref).sum(1).min() > 0.99
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    meta = expected_metadata(files[0])
    assert meta["model_id"] == enc.model_id and meta["input_height"] == "192" and meta["input_width"] == "64"
    assert meta["dim"] == "64" and meta["arch"] == ARCH
    # second build reuses the cached export
    mtime = files[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="person_search.core.backends.export"):  # the cache's own logger
        again = ClipEncoder(c, towers=("image",), backend=backend, cache_dir=str(tmp_path))
    assert files[0].stat().st_mtime_ns == mtime
    assert any("loaded from cache" in r.message for r in caplog.records)
    np.testing.assert_allclose(again.encode_images(crops), out, atol=1e-6)


def test_onnx_cache_with_wrong_metadata_is_reexported(tmp_path, crops):
    c = cfg()
    a = ClipEncoder(c, towers=("image",), backend="onnx", cache_dir=str(tmp_path))
    path = next((tmp_path / "onnx").glob("*.onnx"))
    import onnx

    m = onnx.load(str(path))
    for p in m.metadata_props:
        if p.key == "dim":
            p.value = "999"
    onnx.save(m, str(path))
    b = ClipEncoder(c, towers=("image",), backend="onnx", cache_dir=str(tmp_path))
    assert expected_metadata(path)["dim"] == "64"
    np.testing.assert_allclose(a.encode_images(crops), b.encode_images(crops), atol=1e-6)


@pytest.mark.slow
def test_mobileclip_tall_input_builds_offline(crops):
    enc = ClipEncoder(EncoderConfig(arch="MobileCLIP-S1", image_height=256, image_width=128, batch_size=8))
    out = enc.encode_images(crops[:2])
    assert out.shape == (2, 512)
    assert enc.encode_text(["a person"]).shape == (1, 512)


def test_shipped_configs_are_registered():
    names = register_model_configs()
    assert names == ["PS-EfficientNet-B0", "PS-MobileNetV3-L", "PS-MobileNetV4-S", "PS-Small-ViT", "PS-Tiny-ViT",
                     "TinyCLIP-ViT-40M-32-Text-19M", "TinyCLIP-ViT-8M-16-Text-3M"]
    open_clip = open_clip_registered()
    for name in names:
        assert name in open_clip.list_models()
    assert open_clip.get_model_config("TinyCLIP-ViT-8M-16-Text-3M")["vision_cfg"]["width"] == 256

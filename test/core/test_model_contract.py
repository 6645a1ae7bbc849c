"""The model contract (core/models/run.py): run folders and sidecars read strictly, served as trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from person_search.core.config import AttentionConfig
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.models.factory import build_clip
from person_search.core.models.run import RunError, describe_checkpoint, read_model_json, servable, write_model_json
from person_search.core.models.weights import WeightsError, file_digest
from tinykit import ARCH, cfg, model_json


def _run(tmp_path, attention="sdpa", settings=None, size=(64, 32)):
    """A run folder as training leaves it: a plain checkpoint (random PS-Tiny-ViT) and model.json."""
    run = tmp_path / "run"
    run.mkdir()
    model = build_clip(cfg(image_height=size[0], image_width=size[1]), for_training=True, init_seed=3).model
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(run / "best.safetensors"))
    write_model_json(run, model_json(ARCH, size, attention, settings))
    return run


def test_encoder_weights_accepts_a_run_folder(tmp_path):
    run = _run(tmp_path)
    enc = ClipEncoder(cfg(weights=str(run), image_height=64, image_width=32))
    assert enc.model_id == f"{ARCH}@sha256-{file_digest(run / 'best.safetensors')[:12]}"
    by_file = ClipEncoder(cfg(weights=str(run / "best.safetensors"), image_height=64, image_width=32))
    crops = [np.random.default_rng(0).integers(0, 255, (80, 40, 3), np.uint8)]
    assert np.allclose(enc.encode_images(crops), by_file.encode_images(crops), atol=1e-6)


def test_a_run_is_served_with_the_attention_it_was_trained_with(tmp_path):
    run = _run(tmp_path, attention="window", settings={"window_size": 3})
    with pytest.raises(WeightsError, match=r"trained as PS-Tiny-ViT with attention .*window.*"
                                           r"encoder.attention.kind=window encoder.attention.window_size=3"):
        ClipEncoder(cfg(weights=str(run)))
    path, facts = servable(run)
    assert facts.attention_dict() == {"kind": "window", "window_size": 3} and facts.image_size == (64, 32)
    attention = AttentionConfig(**facts.attention_dict())
    enc = ClipEncoder(cfg(weights=str(run), image_height=64, image_width=32, attention=attention))
    assert "+window(window_size=3" in enc.model_id


def test_sidecar_is_read_strictly_and_its_encoder_block_used(tmp_path):
    run = _run(tmp_path, attention="eager")
    out = tmp_path / "m.safetensors"
    out.write_bytes((run / "best.safetensors").read_bytes())
    side = tmp_path / "m.safetensors.json"
    side.write_text(json.dumps(describe_checkpoint(read_model_json(run), source="x")))
    path, facts = servable(out)
    assert path == out and (facts.arch, facts.attention, facts.image_size) == (ARCH, "eager", (64, 32))
    with pytest.raises(WeightsError, match="attention"):
        build_clip(cfg(weights=str(out)))  # sdpa asked, eager trained
    side.write_text(json.dumps({"format": "open_clip", "arch": ARCH}))
    with pytest.raises(RunError, match="not a checkpoint sidecar"):
        servable(out)


def test_model_json_reader_is_strict(tmp_path):
    run = _run(tmp_path)
    (run / "model.json").write_text(json.dumps({"arch": ARCH, "image_size": [64, 32]}))
    with pytest.raises(RunError, match="not a person_search.train/1 model.json"):
        read_model_json(run)
    (run / "model.json").write_text(json.dumps({k: v for k, v in model_json().items() if k != "mean"}))
    with pytest.raises(RunError, match="missing mean"):
        read_model_json(run)
    (run / "best.safetensors").unlink()
    write_model_json(run, model_json())
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        servable(run)
    with pytest.raises(WeightsError, match="no such checkpoint"):
        build_clip(cfg(weights=str(run)))


def test_file_digest_is_the_sha256_of_the_contents(tmp_path):
    import hashlib
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"abc")
    b.write_bytes(b"def")
    assert file_digest(a) == hashlib.sha256(b"abc").hexdigest()
    assert file_digest(a, b) == hashlib.sha256(b"abcdef").hexdigest()
    assert torch.__version__  # torch imported: the tiny model above builds in this process


def test_a_run_is_asked_in_the_words_it_was_trained_with(tmp_path):
    from person_search.core.config import QueryConfig
    from person_search.core.query import QueryEngine
    run = _run(tmp_path)
    info = read_model_json(run)
    assert "text_templates" not in info  # a run written before the key: captions as written
    assert servable(run)[1].text_templates == ("{}",)
    enc = ClipEncoder(cfg(weights=str(run), image_height=64, image_width=32), towers=("text",))
    assert enc.text_templates == ("{}",)
    assert QueryEngine(enc).prompts("a man in red") == ["a man in red"]
    # an explicit query.templates wins; random (or CLIP) weights get CLIP's prompt
    assert QueryEngine(enc, QueryConfig(templates=["a photo of {}."])).prompts("x") == ["a photo of x."]
    rnd = ClipEncoder(cfg(image_height=64, image_width=32), towers=("text",))
    assert QueryEngine(rnd).prompts("a man in red") == ["a photo of a man in red."]
    # what a run says is carried by its model.json and by the sidecar of a merged checkpoint
    write_model_json(run, {**info, "text_templates": ["a pedestrian: {}", "{}"]})
    assert servable(run)[1].text_templates == ("a pedestrian: {}", "{}")
    out = tmp_path / "m.safetensors"
    out.write_bytes((run / "best.safetensors").read_bytes())
    (tmp_path / "m.safetensors.json").write_text(json.dumps(describe_checkpoint(read_model_json(run), source="x")))
    assert servable(out)[1].text_templates == ("a pedestrian: {}", "{}")
    write_model_json(run, {**info, "text_templates": ["no placeholder"]})
    with pytest.raises(RunError, match="text_templates"):
        servable(run)

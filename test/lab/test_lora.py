"""LoRA through peft on the split q/k/v: what trains, merge exactness, and serving the merged file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from trainkit import ARCH, Outfits, config

from person_search.core.attention.patch import split_qkv
from person_search.lab.train.lora import apply_lora, fold_qkv, merge_lora
from person_search.cli import main as cli_main
from person_search.core.config import EncoderConfig
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.models.weights import file_digest
from person_search.lab.train import train
from person_search.lab.train.checkpoint import load_weights, save_weights
from person_search.lab.train.merge import MergeError, merge_run
from person_search.lab.train.model import build_model, build_trainable, count_parameters, load_run, skeleton

CPU = torch.device("cpu")


def _embeddings(encoder, images: np.ndarray, texts):
    return encoder.encode_preprocessed(images), encoder.encode_text(texts)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())


def _probe(size):
    images = np.random.RandomState(0).randn(5, 3, *size).astype(np.float32)
    return images, ["a person in a red shirt", "blue trousers", "someone"]


def test_only_adapters_and_projections_train():
    t = build_trainable(config(mode="lora"))
    names = [n for n, p in t.clip.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n or n in ("visual.proj", "text_projection") for n in names)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[1] for n in names if ".lora_" in n}
    assert adapted == {"qkv", "out_proj", "c_fc", "c_proj"}
    trainable, total = t.parameter_counts()
    assert trainable / total <= 0.05
    frozen = build_trainable(config(mode="lora", lora_train_projections=False, lora_targets=("qkv",)))
    assert all(".qkv.lora_" in n for n, p in frozen.clip.named_parameters() if p.requires_grad)


def test_vit_b16_lora_r16_share_is_below_5_percent():
    """Counted on the meta device (no memory, no forward), checked against r * (in + out) per Linear."""
    model = skeleton("ViT-B-16")
    base = count_parameters(model)[1]
    apply_lora(model, rank=16, alpha=32)
    trainable, total = count_parameters(model)
    per_block = {768: 3072 + 1536 + 3840 + 3840, 512: 2048 + 1024 + 2560 + 2560}  # qkv, out_proj, c_fc, c_proj
    adapters = 16 * 12 * (per_block[768] + per_block[512])
    assert total == base + adapters
    assert trainable == adapters + 768 * 512 + 512 * 512  # + visual.proj and text_projection
    assert trainable / total < 0.05  # 4.59 M of 153.6 M = 2.99 %


def test_fold_qkv_inverts_split_exactly():
    model = build_model(config(mode="full"))[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert split_qkv(model) == 4 and not any("in_proj" in k for k in model.state_dict())
    assert fold_qkv(model) == 4
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    import open_clip
    with pytest.raises(ValueError, match="no ClipAttention"):
        apply_lora(open_clip.create_model(ARCH), rank=4, alpha=8)  # open_clip's own blocks: no q/k/v to reach


def test_merged_model_gives_the_unmerged_embeddings():
    t = build_trainable(config(mode="lora", image_height=64, image_width=64))
    with torch.no_grad():  # non-zero adapters (lora_B starts at 0)
        for name, p in t.clip.named_parameters():
            if ".lora_B." in name:
                p.normal_(0.0, 0.05)
    t.clip.eval()
    images, texts = _probe((64, 64))
    img_a, txt_a = _embeddings(t.encoder(device=CPU), images, texts)
    merged = merge_lora(t.peft)
    import open_clip
    plain = open_clip.create_model(ARCH)  # registered by the build above
    assert sorted(merged.state_dict()) == sorted(plain.state_dict())  # open_clip's key names, nothing else
    t.clip = merged
    img_b, txt_b = _embeddings(t.encoder(device=CPU), images, texts)
    assert _min_cosine(img_a, img_b) >= 0.9999 and _min_cosine(txt_a, txt_b) >= 0.9999
    assert not np.allclose(img_a, _embeddings(build_trainable(config(
        mode="lora", image_height=64, image_width=64)).encoder(device=CPU), images, texts)[0], atol=1e-3)


def _train_lora(run, size):
    cfg = config(mode="lora", image_height=size[0], image_width=size[1], max_steps=4, lr=3e-3)
    train(cfg, Outfits(size=size), run, progress=False)
    return cfg


def _served_vs_trained(run, cfg, merged_file, size):
    if (run / "model.json").is_file():  # the model as the run folder rebuilds it (adapters and all)
        trained, info = load_run(run)
        assert info["mode"] == cfg.mode
    else:
        trained = build_trainable(cfg, weights="")
        load_weights(trained.clip, run / "best.safetensors")
        trained.clip.eval()
    served = ClipEncoder(EncoderConfig(arch=ARCH, weights=str(merged_file), image_height=size[0],
                                       image_width=size[1]))
    images, texts = _probe(size)
    (img_a, txt_a), (img_b, txt_b) = (_embeddings(trained.encoder(device=CPU), images, texts),
                                      _embeddings(served, images, texts))
    return served, _min_cosine(img_a, img_b), _min_cosine(txt_a, txt_b)


def test_merged_checkpoint_is_served_by_clip_encoder(tmp_path, capsys):
    size = (64, 64)
    run, merged = tmp_path / "run", tmp_path / "models" / "new" / "merged.safetensors"  # folders not there yet
    cfg = _train_lora(run, size)
    assert cli_main(["lora", "merge", str(run), "--out", str(merged)]) == 0
    assert "encoder.weights=" in capsys.readouterr().out
    from person_search.lab.eval.evaluate import resolve_checkpoint
    assert resolve_checkpoint(merged)[1].arch == ARCH  # eval --weights FILE reads FILE.json
    served, cos_img, cos_txt = _served_vs_trained(run, cfg, merged, size)
    assert served.model_id == f"{ARCH}@sha256-{file_digest(merged)[:12]}"
    assert cos_img >= 0.9999 and cos_txt >= 0.9999
    # the run's own best.safetensors is the same plain checkpoint (what the eval command reads)
    assert (run / "best.safetensors").read_bytes() == merged.read_bytes()
    assert {p.name for p in run.iterdir()} >= {"best.adapters.safetensors", "last.adapters.safetensors"}
    meta = json.loads((merged.parent / "merged.safetensors.json").read_text())
    assert meta["arch"] == ARCH and meta["image_size"] == [64, 64] and meta["attention"] == "sdpa"
    assert meta["lora"]["rank"] == 4 and meta["mode"] == "lora" and meta["trained_steps"] == 4


def test_full_run_best_checkpoint_is_servable_as_is(tmp_path):
    size = (64, 64)
    cfg = config(mode="full", image_height=64, image_width=64, max_steps=3)
    train(cfg, Outfits(size=size), tmp_path / "run", progress=False)
    _, cos_img, cos_txt = _served_vs_trained(tmp_path / "run", cfg, tmp_path / "run" / "best.safetensors", size)
    assert cos_img >= 0.9999 and cos_txt >= 0.9999


def test_tall_checkpoint_is_served_exactly(tmp_path):
    """A full fine-tune at 96x32 learns its own 6x2 positional embedding; serving must keep it as it is."""
    size = (96, 32)
    cfg = config(mode="full", image_height=size[0], image_width=size[1])
    t = build_trainable(cfg)
    with torch.no_grad():  # detail on the target grid, as training leaves it
        t.clip.visual.positional_embedding.normal_(0.0, 0.5)
    (tmp_path / "run").mkdir()
    save_weights(t.clip, tmp_path / "run" / "best.safetensors")
    _, cos_img, _ = _served_vs_trained(tmp_path / "run", cfg, tmp_path / "run" / "best.safetensors", size)
    assert cos_img >= 0.9999


def test_merge_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(MergeError, match="no such file"):
        merge_run(tmp_path, tmp_path / "m.safetensors")
    assert cli_main(["lora", "merge", str(tmp_path / "nope"), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    with pytest.raises(MergeError, match="must be a .safetensors file"):
        merge_run(tmp_path, tmp_path / "m.pt")


def test_lora_mode_trains_the_learned_attention_masks_too():
    """LAM's per-layer mask generators are new parameters: they train beside the adapters."""
    t = build_trainable(config(mode="lora", attention="lam"))
    trainable = {n for n, p in t.clip.named_parameters() if p.requires_grad}
    kernels = {n for n in trainable if ".attn.kernel." in n}
    assert kernels and all("lora_" in n or ".attn.kernel." in n or n.endswith(("proj", "projection"))
                           for n in trainable), sorted(trainable)[:10]


def test_attention_settings_reach_the_model():
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        outs = {w: build_trainable(config(attention="window", attention_settings={"window_size": w}))
                .clip.eval().encode_image(x) for w in (1, 3, 9)}
        full = build_trainable(config(attention="eager")).clip.eval().encode_image(x)
    assert torch.allclose(outs[9], full, atol=1e-4)  # a 9x9 window covers the 4x2 grid: full attention
    assert not torch.allclose(outs[1], full, atol=1e-3) and not torch.allclose(outs[1], outs[3], atol=1e-3)
    with pytest.raises(Exception, match="unknown attention setting"):
        config(attention="window", attention_settings={"size": 3}).validate()

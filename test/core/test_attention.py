"""The attention variants (window, sparse, lam, prune) on kernels and on real open_clip models (PS-Tiny-ViT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from person_search.core.attention.kernels import EagerKernel, LayerContext, SdpaKernel
from person_search.core.attention.lam import LamKernel
from person_search.core.attention.local import SparseKernel, WindowKernel, sparse_mask, window_mask
from person_search.core.config import AttentionConfig, ConfigError, EncoderConfig
from person_search.core.models.factory import build_clip
from person_search.core.models.weights import WeightsError

from tinykit import ARCH, cfg as tiny_cfg

GRID = (8, 4)  # 128x64 input
CTX = LayerContext(tower="image", layer=0, num_layers=2, embed_dim=64, num_heads=2, grid=GRID,
                   prefix_tokens=1, seq_len=1 + 32)


def qkv(n=2, heads=2, length=33, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, heads, length, dim, generator=g) for _ in range(3)]


def additive(allow):
    return torch.zeros(allow.shape).masked_fill(~allow, float("-inf"))


def cfg(**kw) -> EncoderConfig:
    """The shared tiny encoder at 128x64 (a 8x4 patch grid)."""
    return tiny_cfg(**{"image_height": 128, "image_width": 64, **kw})


def test_sdpa_equals_eager_with_and_without_a_causal_mask():
    q, k, v = qkv()
    causal = torch.full((33, 33), float("-inf")).triu(1)
    sdpa, eager = SdpaKernel(AttentionConfig(), CTX), EagerKernel(AttentionConfig(), CTX)
    for mask in (None, causal):
        torch.testing.assert_close(sdpa(q, k, v, mask, None), eager(q, k, v, mask, None), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("size,dilation", [(3, 1), (3, 2), (5, 1), (1, 1)])
def test_window_equals_eager_with_its_dense_mask(size, dilation):
    a = AttentionConfig(kind="window", window_size=size, window_dilation=dilation)
    q, k, v = qkv()
    allow = window_mask(GRID, 1, size, dilation)
    assert allow[0].all() and allow[:, 0].all()  # class token: global both ways
    reach = (size // 2) * dilation
    assert allow.sum() < 33 * 33 or reach >= 7  # a real restriction
    ref = EagerKernel(a, CTX)(q, k, v, additive(allow), None)
    out = WindowKernel(a, CTX)(q, k, v, None, None)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(WindowKernel(a, CTX).for_export()(q, k, v, None, None), ref, atol=1e-5, rtol=1e-4)
    # patch (0, 0) is token 1; patch (7, 3) is token 32: far apart, never neighbours
    assert not allow[1, 32] and allow[1, 1]


def test_window_bands_read_fewer_keys_than_full_attention():
    kernel = WindowKernel(AttentionConfig(kind="window", window_size=3), LayerContext(
        tower="image", layer=0, num_layers=12, embed_dim=768, num_heads=12, grid=(48, 16), prefix_tokens=1,
        seq_len=769))
    band_scores = max(getattr(kernel, f"band{i}").numel() for i in range(len(kernel.bands)))
    assert band_scores * 10 < 769 * 769  # one band's score matrix vs the dense L x L one


def test_sparse_equals_eager_with_its_pattern():
    a = AttentionConfig(kind="sparse", sparse_block=2, sparse_stride=5)
    q, k, v = qkv(seed=1)
    allow = sparse_mask(GRID, 1, 2, 5)
    assert allow[0].all() and allow[:, 0].all() and not allow.all()
    # token 2 = patch (0, 1): sees patch (1, 0) (its block), patch 5 (global), not patch (0, 2) nor (7, 3)
    assert allow[2, 5] and allow[2, 6] and not allow[2, 3] and not allow[2, 32]
    ref = EagerKernel(a, CTX)(q, k, v, additive(allow), None)
    torch.testing.assert_close(SparseKernel(a, CTX)(q, k, v, None, None), ref, atol=1e-5, rtol=1e-4)


def test_grid_kernels_leave_the_text_tower_as_sdpa():
    text = LayerContext(tower="text", layer=0, num_layers=2, embed_dim=64, num_heads=2, seq_len=33)
    q, k, v = qkv(seed=2)
    causal = torch.full((33, 33), float("-inf")).triu(1)
    ref = SdpaKernel(AttentionConfig(), text)(q, k, v, causal, None)
    for kernel in (WindowKernel(AttentionConfig(kind="window", window_size=3), text),
                   SparseKernel(AttentionConfig(kind="sparse"), text)):
        torch.testing.assert_close(kernel(q, k, v, causal, None), ref)


def test_lam_text_kernel_keeps_the_causal_mask():
    text = LayerContext(tower="text", layer=0, num_layers=2, embed_dim=64, num_heads=2, seq_len=33)
    kernel = LamKernel(AttentionConfig(kind="lam"), text)
    nn.init.normal_(kernel.generator[-1].weight, std=1.0)  # a trained, non-zero mask
    q, k, v = qkv(seed=3)
    x = torch.randn(2, 33, 64)
    causal = torch.full((33, 33), float("-inf")).triu(1)
    out = kernel(q, k, v, causal, x)
    v2 = v.clone()
    v2[:, :, 20:] += 5.0  # later tokens change: earlier positions must not see it
    torch.testing.assert_close(kernel(q, k, v2, causal, x)[:, :, :20], out[:, :, :20])
    assert not torch.allclose(out, SdpaKernel(AttentionConfig(), text)(q, k, v, causal, None))


def test_lam_starts_as_the_base_model_and_trains_per_layer():
    base = build_clip(cfg(), for_training=True).model
    lam = build_clip(cfg(attention=AttentionConfig(kind="lam", lam_hidden=16)), for_training=True).model
    x = torch.randn(2, 3, 128, 64)
    tokens = open_clip_tokens(["a man in a red coat", "a child"])
    with torch.no_grad():
        torch.testing.assert_close(lam.encode_image(x), base.encode_image(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(lam.encode_text(tokens), base.encode_text(tokens), atol=1e-5, rtol=1e-4)
    gens = {n: m for n, m in lam.named_modules() if isinstance(m, LamKernel)}
    assert sorted(gens) == ["transformer.resblocks.0.attn.kernel", "transformer.resblocks.1.attn.kernel",
                            "visual.transformer.resblocks.0.attn.kernel", "visual.transformer.resblocks.1.attn.kernel"]
    assert gens["visual.transformer.resblocks.0.attn.kernel"].generator[-1].out_features == 33  # 1 + 8 x 4
    assert gens["transformer.resblocks.0.attn.kernel"].generator[-1].out_features == 77  # text context
    (lam.encode_image(x).pow(2).sum() + lam.encode_text(tokens).pow(2).sum()).backward()
    for name, kernel in gens.items():
        last = kernel.generator[-1].weight
        assert last.requires_grad and last.grad is not None and last.grad.abs().sum() > 0, name


def open_clip_tokens(texts):
    from person_search.core.models.archs import open_clip_registered
    return open_clip_registered().get_tokenizer(ARCH)(texts)


def test_prune_keeps_the_requested_tokens_and_the_class_token():
    built = build_clip(cfg(attention=AttentionConfig(kind="prune", prune_keep=0.25)), towers=("image",))
    blocks = built.model.transformer.resblocks
    seen = {}
    blocks[0].register_forward_hook(lambda _m, _a, out: seen.setdefault("out0", out.clone()), prepend=True)
    blocks[1].register_forward_pre_hook(lambda _m, args: seen.setdefault("in1", args[0]))
    x = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        assert built.model(x).shape == (3, 64)
    kernel = blocks[0].attn.kernel
    assert (kernel.tokens, kernel.keep) == (33, 8)
    assert seen["in1"].shape == (3, 1 + 8 + 1, 64)  # class + kept + one fused token
    torch.testing.assert_close(seen["in1"][:, 0], seen["out0"][:, 0])  # the class token stays first
    kept = kernel.last_kept
    assert kept.shape == (3, 8) and all(len(set(r.tolist())) == 8 for r in kept)
    patches = seen["out0"][:, 1:]
    torch.testing.assert_close(seen["in1"][:, 1:9], torch.stack([p[i] for p, i in zip(patches, kept)]))
    assert seen["out0"].shape == (3, 33, 64)  # what block 0 gave before pruning
    assert built.facts.model_id.endswith("+prune(prune_keep=0.25,prune_layers=)")


def _randomise_kernels(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".attn.kernel." in name:
                p.normal_(0, 0.5)


VARIANTS = [AttentionConfig(kind="window", window_size=3), AttentionConfig(kind="sparse", sparse_block=2),
            AttentionConfig(kind="lam", lam_hidden=8), AttentionConfig(kind="prune", prune_keep=0.5)]


@pytest.mark.parametrize("att", VARIANTS, ids=lambda a: a.kind)
def test_variant_survives_checkpoint_round_trip_and_onnx_export(att, tmp_path):
    import onnxruntime as ort

    from person_search.core.backends.export import export_image_tower

    # square 64x64 (grid 4x4): a checkpoint saved at a tall size is resized through the native grid on load
    trained = build_clip(cfg(attention=att, image_height=64), for_training=True).model
    _randomise_kernels(trained)
    path = tmp_path / "ckpt.pt"
    torch.save(trained.state_dict(), path)
    served = build_clip(cfg(attention=att, weights=str(path), image_height=64), towers=("image",))
    x = torch.randn(2, 3, 64, 64)
    trained.eval()
    with torch.no_grad():
        ref = trained.encode_image(x)
        out = served.model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    onnx_path = tmp_path / "tower.onnx"
    export_image_tower(served.model, onnx_path, (64, 64), {"k": "v"}, int8=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (x, torch.randn(3, 3, 64, 64)):  # the batch axis stays dynamic
        got = sess.run(None, {"image": batch.numpy()})[0]
        with torch.no_grad():
            want = served.model(batch).numpy()
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() >= 0.999, (att.kind, cos)


def test_lam_checkpoint_refused_by_another_kernel(tmp_path):
    trained = build_clip(cfg(attention=AttentionConfig(kind="lam", lam_hidden=8)), for_training=True).model
    path = tmp_path / "lam.pt"
    torch.save(trained.state_dict(), path)
    with pytest.raises(WeightsError, match="attention-kernel parameters.*'sdpa'"):
        build_clip(cfg(weights=str(path)), towers=("image",))
    sdpa = build_clip(cfg(), for_training=True).model
    torch.save(sdpa.state_dict(), path)  # a plain checkpoint starts lam from its no-op init
    assert build_clip(cfg(attention="lam", weights=str(path)), towers=("image",)).facts.attention == "lam"


@pytest.mark.parametrize("att,arch,match", [
    (AttentionConfig(kind="window"), "PS-MobileNetV4-S", "'window' needs a ViT image tower.*MobileNet"),
    (AttentionConfig(kind="lam"), "PS-MobileNetV4-S", "'lam' needs a ViT image tower"),
    (AttentionConfig(kind="prune", prune_layers="5"), ARCH, r"prune_layers \[5\] out of range.*1\.\.1"),
    (AttentionConfig(kind="window", window_size=4), ARCH, "window_size must be odd"),
    (AttentionConfig(kind="prune", prune_layers="a,b"), ARCH, "prune_layers must be comma-separated"),
    (AttentionConfig(kind="prune", prune_keep=0.0), ARCH, r"prune_keep must be in \[0.01, 1\]"),
])
def test_unsupported_combinations_are_one_config_error(att, arch, match):
    with pytest.raises(ConfigError, match=match) as ei:
        build_clip(cfg(arch=arch, attention=att), towers=("image",))
    assert "\n" not in str(ei.value)


def test_text_only_build_of_a_grid_variant_is_allowed_and_carries_the_same_id():
    att = AttentionConfig(kind="window", window_size=5)
    text = build_clip(cfg(attention=att), towers=("text",))
    image = build_clip(cfg(attention=att), towers=("image",))
    assert text.facts.model_id == image.facts.model_id == f"{ARCH}@random-seed0+window(window_size=5,window_dilation=1)"


def test_model_id_changes_with_function_changing_variants_and_their_settings():
    from person_search.core.models.factory import model_id_for

    ids = {model_id_for(ARCH, "w", a) for a in [
        AttentionConfig(kind="window", window_size=3), AttentionConfig(kind="window", window_size=5),
        AttentionConfig(kind="window", window_size=3, window_dilation=2), AttentionConfig(kind="sparse"),
        AttentionConfig(kind="sparse", sparse_stride=4), AttentionConfig(kind="lam"),
        AttentionConfig(kind="lam", lam_hidden=32), AttentionConfig(kind="prune"),
        AttentionConfig(kind="prune", prune_keep=0.7), AttentionConfig(kind="prune", prune_layers="1")]}
    assert len(ids) == 10 and f"{ARCH}@w" not in ids
    assert model_id_for(ARCH, "w", AttentionConfig(kind="sdpa", window_size=3)) == f"{ARCH}@w"


@pytest.mark.parametrize("backend", ["torch-int8", "onnx-int8"])
@pytest.mark.parametrize("kind", ["lam", "prune"])
def test_parameterised_and_token_reducing_variants_run_on_the_int8_backends(kind, backend):
    from person_search.core.clip_encoder import ClipEncoder

    crops = [np.random.default_rng(i).integers(0, 256, (90, 40, 3), dtype=np.uint8) for i in range(3)]
    att = AttentionConfig(kind=kind, prune_keep=0.25)
    ref = ClipEncoder(cfg(attention=att)).encode_images(crops)
    out = ClipEncoder(cfg(attention=att, backend=backend)).encode_images(crops)  # a quantised copy of the tower
    assert (out * ref).sum(1).min() >= 0.99

"""build_clip and the attention package on real open_clip models (PS-Tiny-ViT: 2 vision + 2 text blocks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from person_search.core.attention.kernels import AttentionKernel, EagerKernel, SdpaKernel
from person_search.core.attention.module import ClipAttention
from person_search.core.attention.patch import AttentionPatchError, apply_attention, find_sites, split_qkv
from person_search.core.attention.registry import KERNELS
from person_search.core.config import AttentionConfig, ConfigError
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.models.factory import build_clip
from person_search.core.models.archs import open_clip_registered

from tinykit import ARCH, cfg


def _open_clip_model(seed=0):
    torch.manual_seed(seed)
    return open_clip_registered().create_model(ARCH).eval()


def test_swap_count_and_checkpoint_names_on_a_real_config():
    model = _open_clip_model()
    keys = list(model.state_dict())
    assert sum(isinstance(m, nn.MultiheadAttention) for m in model.modules()) == 4
    x = torch.randn(2, 3, 64, 64)
    tokens = open_clip_registered().get_tokenizer(ARCH)(["a red coat", "a child"])
    with torch.no_grad():
        ref_img, ref_txt = model.encode_image(x), model.encode_text(tokens)
    assert apply_attention(model, AttentionConfig(kind="eager")) == 4
    sites = find_sites(model)
    assert sorted(s.path for s in sites) == [
        "transformer.resblocks.0.attn", "transformer.resblocks.1.attn",
        "visual.transformer.resblocks.0.attn", "visual.transformer.resblocks.1.attn"]
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    assert list(model.state_dict()) == keys  # checkpoint-compatible parameter names
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), ref_img, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.encode_text(tokens), ref_txt, atol=1e-5, rtol=1e-4)
    # applying again swaps kernels in place, same count
    assert apply_attention(model, AttentionConfig(kind="sdpa")) == 4
    assert {m.kind for m in model.modules() if isinstance(m, ClipAttention)} == {"sdpa"}


class _RenamedAttention(nn.Module):
    """What an open_clip upgrade that renames the attention internals looks like to patch.py."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        self.heads = mha.num_heads
        self.w_qkv, self.b_qkv, self.proj = mha.in_proj_weight, mha.in_proj_bias, mha.out_proj
        self.use_flash = True  # a renamed fused switch

    def forward(self, q, k=None, v=None, need_weights=False, attn_mask=None):
        n, length, c = q.shape
        qkv = nn.functional.linear(q, self.w_qkv, self.b_qkv).reshape(n, length, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, c)), None


def test_unrecognised_attention_fails_loudly():
    model = _open_clip_model()
    for block in model.visual.transformer.resblocks:
        block.attn = _RenamedAttention(block.attn)
    with torch.no_grad():
        assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 64)  # still a working model
    with pytest.raises(AttentionPatchError, match="visual.transformer.resblocks.*patch.py") as ei:
        apply_attention(model, AttentionConfig(kind="sdpa"))
    assert "\n" not in str(ei.value)


def test_unknown_kernel_is_one_config_error():
    kinds = "sdpa, eager, window, sparse, lam, prune"
    with pytest.raises(ConfigError, match=f"encoder.attention.kind must be one of {kinds}, not 'flash'"):
        cfg(attention=AttentionConfig(kind="flash")).validate()


def test_training_build_is_trainable_and_backprops():
    built = build_clip(cfg(image_height=96, image_width=64), for_training=True)
    model = built.model
    assert built.towers == ("image", "text") and model.training
    assert all(p.requires_grad for p in model.parameters())
    assert built.facts.attention_modules == 4 and built.tokenizer is not None
    assert model.visual.positional_embedding.shape == (1 + 6 * 4, 64)  # resized for 96x64 crops
    split_qkv(model)  # what LoRA will target: q/k/v as one nn.Linear, same function
    assert all(isinstance(m.qkv, nn.Linear) for m in model.modules() if isinstance(m, ClipAttention))
    images = torch.randn(3, 3, 96, 64)
    tokens = built.tokenizer(["a man in a red jacket", "a child", "a woman with a bag"])
    img = nn.functional.normalize(model.encode_image(images), dim=-1)
    txt = nn.functional.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    labels = torch.arange(3)
    loss = (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.t(), labels)) / 2
    loss.backward()
    attn = model.visual.transformer.resblocks[0].attn
    for p in (model.visual.conv1.weight, model.visual.positional_embedding, attn.qkv.weight,
              model.transformer.resblocks[1].attn.qkv.weight, model.token_embedding.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_serving_build_is_frozen_and_image_only_drops_text():
    built = build_clip(cfg(), towers=("image",))
    assert not built.model.training and not any(p.requires_grad for p in built.model.parameters())
    assert built.image_tower is built.model and built.text_model is None and built.tokenizer is None
    assert not hasattr(built.model, "token_embedding")


@dataclass
class _ScaledSettings:  # the test kernel's settings, as core/attention/settings.py declares a kernel's
    scale: float = 2.0


@dataclass
class _ScaledConfig(AttentionConfig):
    scale: float = 2.0


class _ScaledKernel(EagerKernel):
    """Test-only kernel: sharper softmax with a learnable per-head temperature (changes the function)."""

    name = "test-scaled"
    changes_function = True
    settings = _ScaledSettings
    flag_value = None

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.temperature = nn.Parameter(torch.ones(ctx.num_heads, 1, 1))

    def forward(self, q, k, v, attn_mask, x):
        return super().forward(q * self.cfg.scale * self.temperature, k, v, attn_mask, x)


@pytest.fixture
def scaled_kernel():
    KERNELS.register(_ScaledKernel.name, _ScaledKernel)
    yield _ScaledKernel
    KERNELS.unregister(_ScaledKernel.name)


def test_model_id_changes_only_with_a_kernel_that_changes_the_function(scaled_kernel):
    crops = [np.random.default_rng(i).integers(0, 256, (90, 40, 3), dtype=np.uint8) for i in range(3)]
    sdpa, eager = ClipEncoder(cfg(attention="sdpa")), ClipEncoder(cfg(attention="eager"))
    assert sdpa.model_id == eager.model_id == f"{ARCH}@random-seed0"
    scaled = ClipEncoder(cfg(attention=_ScaledConfig(kind="test-scaled", scale=2.0)))
    assert scaled.model_id == f"{ARCH}@random-seed0+test-scaled(scale=2.0)"
    other = ClipEncoder(cfg(attention=_ScaledConfig(kind="test-scaled", scale=3.0)), towers=("text",))
    assert other.model_id == f"{ARCH}@random-seed0+test-scaled(scale=3.0)"
    assert not np.allclose(scaled.encode_images(crops), sdpa.encode_images(crops), atol=1e-3)
    kernels = [m for m in scaled.backend.module.modules() if isinstance(m, AttentionKernel)]
    assert [(k.ctx.tower, k.ctx.layer, k.ctx.num_layers, k.ctx.grid, k.ctx.prefix_tokens) for k in kernels] == [
        ("image", 0, 2, (4, 4), 1), ("image", 1, 2, (4, 4), 1)]
    assert "transformer.resblocks.0.attn.kernel.temperature" in scaled.backend.module.state_dict()


class _DropKernel(SdpaKernel):
    """Test-only token-reducing kernel: after image layer 0, the last 4 patch tokens are dropped."""

    name = "test-drop"
    changes_function = True
    reduces_tokens = True
    flag_value = None

    def reduce_tokens(self, x):
        return x[:, :-4] if self.ctx.tower == "image" and self.ctx.layer == 0 else x


def test_a_token_reducing_kernel_changes_the_token_count_between_blocks():
    KERNELS.register(_DropKernel.name, _DropKernel)
    try:
        built = build_clip(cfg(attention=AttentionConfig(kind="test-drop")), towers=("image",))
        assert built.facts.model_id == f"{ARCH}@random-seed0+test-drop"
        blocks = built.model.transformer.resblocks
        seen = []
        blocks[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
        with torch.no_grad():
            out = built.model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 64) and seen == [1 + 16 - 4]
        ctx = blocks[0].attn.kernel.ctx
        assert (ctx.grid, ctx.prefix_tokens, ctx.seq_len) == ((4, 4), 1, 17)
        apply_attention(built.model, AttentionConfig(kind="test-drop"))  # re-applied: still one hook per block
        assert [len(b._forward_hooks) for b in blocks] == [1, 1]
        apply_attention(built.model, AttentionConfig(kind="sdpa"))
        assert [len(b._forward_hooks) for b in blocks] == [0, 0]
    finally:
        KERNELS.unregister(_DropKernel.name)

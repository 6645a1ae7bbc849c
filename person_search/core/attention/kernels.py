"""Attention kernels: what happens between the q/k/v projections and the output projection.

A kernel is a small ``nn.Module`` built once per attention layer by
:func:`person_search.core.attention.patch.apply_attention`, with the layer's
:class:`LayerContext` (tower, layer index, heads, patch grid). It may own parameters (they
appear in the state dict under ``<block>.attn.kernel.``). Class attributes tell the rest
of the package what it does:

* ``changes_function``: True when the kernel computes a different function than full
  softmax attention (window, sparse, learned mask, token pruning): the model id then
  carries the kind and its ``settings`` (the kernel's settings dataclass, ``settings.py``)
  so embeddings of different variants are never mixed.
* ``flag_value``: for attention modules that keep their own fused/unfused switch (timm,
  open_clip ``Attention`` with extras) the value to set; None = the kernel needs
  :class:`~person_search.core.attention.module.ClipAttention`.
* ``reduces_tokens``: True when :meth:`AttentionKernel.reduce_tokens` drops or merges
  tokens after its block (EViT-style pruning); patch.py then hooks the block.
* ``needs_vit``: True when the kernel is defined on a ViT image tower (patch grid, fixed
  token count): a model whose image tower has no such attention is refused at build.

Kernels: ``sdpa``, ``eager`` (here), ``window`` and ``sparse`` (``local.py``), ``lam``
(``lam.py``), ``prune`` (``prune.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LayerContext:
    """Where a kernel sits: tower, layer, width and the image patch grid."""

    tower: str  # "image" or "text"
    layer: int  # index of the block in its transformer
    num_layers: int
    embed_dim: int
    num_heads: int
    grid: Optional[Tuple[int, int]] = None  # (rows, cols) of image patches; None for text
    prefix_tokens: int = 0  # tokens before the grid (the class token)
    seq_len: Optional[int] = None  # tokens entering the tower (image: prefix + grid; text: context length)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


class AttentionKernel(nn.Module):
    """Base of every kernel: ``forward(q, k, v, attn_mask, x) -> (N, heads, L, head_dim)``.

    Args:
        cfg: the ``encoder.attention`` config (kind + settings).
        ctx: the layer this kernel serves.
    """

    name: ClassVar[str] = ""
    changes_function: ClassVar[bool] = False
    settings: ClassVar[Optional[type]] = None  # its settings dataclass (settings.py): its fields enter the model id
    flag_value: ClassVar[Optional[bool]] = None
    reduces_tokens: ClassVar[bool] = False
    needs_vit: ClassVar[bool] = False

    def __init__(self, cfg: Any, ctx: LayerContext):
        super().__init__()
        self.cfg = cfg
        self.ctx = ctx

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Optional[torch.Tensor],
                x: torch.Tensor) -> torch.Tensor:
        """Attend: q, k, v (N, heads, L, head_dim), float additive mask or None, x (N, L, C) the input."""
        raise TypeError(f"{type(self).__name__} must define forward(q, k, v, attn_mask, x): every kernel does")

    def reduce_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block output with tokens dropped or merged (only when ``reduces_tokens``)."""
        return x

    def for_export(self) -> "AttentionKernel":
        """Return the kernel to trace for ONNX / TensorRT (plain ops); default: itself."""
        return self

    @classmethod
    def function_id(cls, cfg: Any) -> str:
        """Return the model-id suffix of this kernel with ``cfg``'s settings (e.g. ``window(size=7)``)."""
        names = [f.name for f in fields(cls.settings)] if cls.settings is not None else []
        args = ",".join(f"{s}={getattr(cfg, s)}" for s in names)
        return f"{cls.name}({args})" if args else cls.name


class SdpaKernel(AttentionKernel):
    """``F.scaled_dot_product_attention``: the fused kernel (flash / memory-efficient on GPU)."""

    name = "sdpa"
    flag_value = True

    def forward(self, q, k, v, attn_mask, x):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)

    def for_export(self) -> AttentionKernel:
        # plain MatMul/Softmax: quantisable by ONNX Runtime, fused again by TensorRT
        return EagerKernel(self.cfg, self.ctx)


class EagerKernel(AttentionKernel):
    """Explicit ``softmax(Q K^T / sqrt(d) + mask) V``, the scale applied to Q first."""

    name = "eager"
    flag_value = False

    def forward(self, q, k, v, attn_mask, x):
        attn = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-2, -1))
        if attn_mask is not None:
            attn = attn + attn_mask
        return torch.matmul(attn.softmax(dim=-1), v)


class VariantKernel(AttentionKernel):
    """Base of the function-changing ViT variants: SDPA at run time, plain MatMul/Softmax in the export form."""

    changes_function = True
    flag_value = None
    needs_vit = True

    def __init__(self, cfg: Any, ctx: LayerContext, eager: bool = False):
        super().__init__(cfg, ctx)
        self.eager = eager

    def attend(self, q, k, v, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Return softmax attention of q, k, v with an additive ``mask`` (SDPA, or eager in the export form)."""
        if self.eager:
            return EagerKernel.forward(self, q, k, v, mask, None)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def for_export(self) -> AttentionKernel:
        """Return the same kernel built in its eager form (no parameters to share)."""
        return type(self)(self.cfg, self.ctx, eager=True)

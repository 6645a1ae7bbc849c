"""Self-attention with ``nn.MultiheadAttention``'s parameter names and a pluggable kernel."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from person_search.core.attention.kernels import AttentionKernel


class ClipAttention(nn.Module):
    """Self-attention: input projection, a kernel, output projection.

    Parameters ``in_proj_weight`` (3D, D), ``in_proj_bias`` (3D,) and ``out_proj`` (Linear)
    are the ones of ``nn.MultiheadAttention`` and of open_clip's ``Attention``, so state
    dicts load unchanged. :meth:`split_qkv_linear` moves the input projection into an
    ``nn.Linear`` (``self.qkv``) for dynamic int8 quantisation and LoRA. The kernel
    (``self.kernel``) computes the attention itself; see ``kernels.py``.
    """

    def __init__(self, embed_dim: int, num_heads: int, kernel: AttentionKernel, batch_first: bool = True,
                 return_tuple: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        self.return_tuple = return_tuple  # (out, None) like nn.MultiheadAttention, else out alone
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.qkv: Optional[nn.Linear] = None
        self.kernel = kernel

    @classmethod
    def wrap(cls, attn: nn.Module, kernel: AttentionKernel, batch_first: bool = True,
             return_tuple: bool = True) -> "ClipAttention":
        """Take over the parameters (shared, not copied) of a module with in_proj_* and out_proj."""
        weight = attn.in_proj_weight
        with torch.random.fork_rng(devices=[]):  # the throw-away init must not touch the RNG
            new = cls(weight.shape[1], attn.num_heads, kernel, batch_first=batch_first, return_tuple=return_tuple)
        new.in_proj_weight = weight
        bias = getattr(attn, "in_proj_bias", None)
        new.in_proj_bias = bias if bias is not None else nn.Parameter(
            torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device), requires_grad=weight.requires_grad)
        new.out_proj = attn.out_proj
        new.train(attn.training)
        return new

    @property
    def kind(self) -> str:
        """Return the name of the kernel in use."""
        return self.kernel.name

    def split_qkv_linear(self) -> None:
        """Move in_proj_* into ``self.qkv = nn.Linear`` (same parameters; for quantisation and LoRA)."""
        if self.qkv is not None:
            return
        with torch.random.fork_rng(devices=[]):
            lin = nn.Linear(self.embed_dim, 3 * self.embed_dim, device=self.in_proj_weight.device,
                            dtype=self.in_proj_weight.dtype)
        lin.weight = self.in_proj_weight
        lin.bias = self.in_proj_bias
        del self.in_proj_weight, self.in_proj_bias
        self.qkv = lin

    def forward(self, query, key=None, value=None, need_weights: bool = False, attn_mask=None, **_):
        if key is not None and key is not query:
            raise ValueError("ClipAttention supports self-attention only (key and value must be the query)")
        x = query if self.batch_first else query.transpose(0, 1)
        n, length, c = x.shape
        qkv = self.qkv(x) if self.qkv is not None else F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:  # True = masked (MHA semantics)
                attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill_(attn_mask, float("-inf"))
            if attn_mask.ndim == 3:  # (N * heads, L, L), as nn.MultiheadAttention takes it
                attn_mask = attn_mask.reshape(n, self.num_heads, length, length)
        out = self.kernel(q, k, v, attn_mask.to(q.dtype) if attn_mask is not None else None, x)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, c))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return (out, None) if self.return_tuple else out

"""``lam``: the multi-layer Learnable Attention Mask (Barrios & Jin, arXiv 2406.02761).

Every attention layer owns a small generator (``lam_layers`` Linear layers of width
``lam_hidden`` with ReLU between) that maps each token of the layer's input sequence to
one row of an ``L x L`` mask; the mask is added to the scaled scores before the softmax
(the same for every head), on top of the causal and padding masks of the text tower (an
additive ``-inf`` stays ``-inf``). The last Linear starts at zero, so the mask is zero and
a pretrained model is unchanged at step 0; it trains through the task loss. ``L`` is the
sequence length of the layer, fixed when the model is built (image: class token + grid at
the configured input size; text: the context length). Its parameters live under
``<block>.attn.kernel.generator.*`` and are saved with the model.
"""

from __future__ import annotations

import torch
from torch import nn

from person_search.core.attention.kernels import AttentionKernel, VariantKernel
from person_search.core.attention.settings import LamSettings
from person_search.core.errors import ConfigError


class LamKernel(VariantKernel):
    """Additive learnable attention mask per layer, generated from the layer's tokens."""

    name = "lam"
    changes_function = True
    settings = LamSettings

    def __init__(self, cfg, ctx, eager: bool = False):
        super().__init__(cfg, ctx, eager)
        if not ctx.seq_len:
            raise ConfigError(f"encoder.attention.kind lam needs a fixed sequence length ({ctx.tower} tower, "
                              f"layer {ctx.layer} has none)")
        dims = [ctx.embed_dim] + [int(cfg.lam_hidden)] * (int(cfg.lam_layers) - 1) + [int(ctx.seq_len)]
        layers = []
        for i in range(len(dims) - 1):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
        self.generator = nn.Sequential(*layers[:-1])
        last = self.generator[-1]
        nn.init.zeros_(last.weight)  # a no-op at step 0: pretrained weights unchanged
        nn.init.zeros_(last.bias)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Return the learned additive mask, (N, 1, L, L), of the layer input ``x``, (N, L, C)."""
        if x.shape[1] != self.ctx.seq_len:
            raise ValueError(f"lam attention was built for {self.ctx.seq_len} tokens, got {x.shape[1]}")
        return self.generator(x).unsqueeze(1)

    def forward(self, q, k, v, attn_mask, x):
        m = self.mask(x).to(q.dtype)
        m = m if attn_mask is None else m + attn_mask
        return self.attend(q, k, v, m)

    def for_export(self) -> AttentionKernel:
        """Return a kernel sharing this one's generator that attends with plain MatMul/Softmax."""
        twin = LamKernel.__new__(LamKernel)
        nn.Module.__init__(twin)
        twin.cfg, twin.ctx, twin.eager = self.cfg, self.ctx, True
        twin.generator = self.generator
        return twin

"""``prune``: EViT-style token pruning in the image tower (Liang et al., youweiliang/evit).

Before each image layer listed in ``prune_layers`` ("" = the layer at a third of the depth,
so the last two thirds run on the kept tokens) the patch tokens are ranked by the
class token's attention in the previous layer (softmax probabilities averaged over heads);
the top ``prune_keep`` fraction is kept, the rest is fused into one token (their
attention-weighted average, appended last) and the class token stays first. Token counts
are fixed when the model is built (from the build-time grid), so the graph has static
shapes: the ranking is one TopK over all patch tokens and the split two Gathers, which
export to ONNX. The attention itself is SDPA (eager in the export form); the text tower is
untouched (plain SDPA).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from person_search.core.attention.kernels import VariantKernel
from person_search.core.attention.settings import PruneSettings
from person_search.core.errors import ConfigError


def prune_layers(cfg, num_layers: int) -> List[int]:
    """Return the sorted image layers whose input is pruned (``prune_layers`` or the default)."""
    text = str(cfg.prune_layers).strip()
    if not text:
        return [max(1, num_layers // 3)] if num_layers > 1 else []
    try:
        layers = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"encoder.attention.prune_layers must be comma-separated layer numbers, "
                          f"not {cfg.prune_layers!r}") from None
    bad = [n for n in layers if not 1 <= n < num_layers]
    if bad:
        raise ConfigError(f"encoder.attention.prune_layers {bad} out of range: the image tower has "
                          f"{num_layers} layers; use 1..{num_layers - 1}")
    return layers


def token_schedule(cfg, num_layers: int, seq_len: int, prefix: int) -> List[Tuple[int, int]]:
    """Return, per layer, (tokens entering it, patch tokens kept after it; 0 = no pruning after it)."""
    at = set(prune_layers(cfg, num_layers))
    out, tokens = [], seq_len
    for layer in range(num_layers):
        keep = 0
        if layer + 1 in at:
            n = tokens - prefix
            keep = min(n, max(1, math.ceil(float(cfg.prune_keep) * n)))
            keep = 0 if keep >= n else keep
        out.append((tokens, keep))
        if keep:
            tokens = prefix + keep + 1
    return out


class PruneKernel(VariantKernel):
    """SDPA attention; after a pruning layer's block, keep the top tokens by class attention, fuse the rest."""

    name = "prune"
    changes_function = True
    settings = PruneSettings
    reduces_tokens = True

    def __init__(self, cfg, ctx, eager: bool = False):
        super().__init__(cfg, ctx, eager)
        self.tokens, self.keep = 0, 0
        if ctx.tower == "image" and ctx.grid is not None and ctx.seq_len:
            self.tokens, self.keep = token_schedule(cfg, ctx.num_layers, ctx.seq_len, ctx.prefix_tokens)[ctx.layer]
        self._cls_attn: Optional[torch.Tensor] = None
        self.last_kept: Optional[torch.Tensor] = None  # (N, keep) patch indices of the last pruning

    def forward(self, q, k, v, attn_mask, x):
        if self.keep:
            if q.shape[2] != self.tokens:
                raise ValueError(f"prune layer {self.ctx.layer} was built for {self.tokens} tokens, got {q.shape[2]}")
            p = self.ctx.prefix_tokens
            scores = torch.matmul(q[:, :, :1] * (q.shape[-1] ** -0.5), k.transpose(-2, -1))
            self._cls_attn = scores.softmax(dim=-1).mean(dim=1)[:, 0, p:]  # (N, patches)
        return self.attend(q, k, v, attn_mask)

    def reduce_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if not self.keep:
            return x
        p, attn = self.ctx.prefix_tokens, self._cls_attn
        self._cls_attn = None
        patches = x[:, p:]
        order = torch.topk(attn, attn.shape[1], dim=1).indices  # static k: every patch, best first
        kept_idx, rest_idx = order[:, :self.keep], order[:, self.keep:]
        c = x.shape[-1]
        kept = torch.gather(patches, 1, kept_idx.unsqueeze(-1).expand(-1, -1, c))
        rest = torch.gather(patches, 1, rest_idx.unsqueeze(-1).expand(-1, -1, c))
        w = torch.gather(attn, 1, rest_idx).unsqueeze(-1)
        fused = (w * rest).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        self.last_kept = kept_idx.detach()
        return torch.cat([x[:, :p], kept, fused], dim=1)

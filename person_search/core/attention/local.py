"""Local attention kernels of the image tower: ``window`` (2-D neighbourhood) and ``sparse`` (block-sparse).

Both are defined on the patch grid of a ViT image tower (``LayerContext.grid``); the
prefix (class) token attends to every token and every token attends to it. In the text
tower they do not apply: text keeps plain ``sdpa`` there (the model id still names the
variant, so the text tower serving an image tower with ``window`` carries the same id).

* ``window``: patch (r, c) attends to patch (r', c') when ``|r - r'|`` and ``|c - c'|`` are at
  most ``(window_size // 2) * window_dilation`` and multiples of ``window_dilation``.
  Computed in bands of grid rows: each band's queries see only the rows its window can
  reach (plus the prefix), so the score tensor of one band is ``band x reach`` instead of
  ``L x L`` and cost and memory grow linearly with the number of grid rows. The dense
  equivalent mask is :func:`window_mask` (for tests).
* ``sparse``: a fixed block-sparse pattern: a patch attends to the patches of its own
  ``sparse_block x sparse_block`` block of the grid and to the global tokens (every
  ``sparse_stride``-th patch in row-major order, and the prefix); global tokens attend to all.
  It is applied as a precomputed dense mask through SDPA: it changes what is attended, not
  the memory (the L x L scores and the L x L mask are both materialised).
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from person_search.core.attention.kernels import VariantKernel
from person_search.core.attention.settings import SparseSettings, WindowSettings

NEG_INF = float("-inf")


def _additive(allow: torch.Tensor) -> torch.Tensor:
    """Return the float mask (0 where allowed, -inf elsewhere) of a boolean ``allow`` matrix."""
    return torch.zeros(allow.shape, dtype=torch.float32).masked_fill_(~allow, NEG_INF)


def _grid_coords(grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    rows, cols = grid
    idx = torch.arange(rows * cols)
    return idx // cols, idx % cols


def _window_allow(rq, cq, rk, ck, size: int, dilation: int) -> torch.Tensor:
    """Return the (Q, K) boolean matrix of query patches (rq, cq) that may see key patches (rk, ck)."""
    reach = (size // 2) * dilation
    dr = (rq[:, None] - rk[None, :]).abs()
    dc = (cq[:, None] - ck[None, :]).abs()
    return (dr <= reach) & (dc <= reach) & (dr % dilation == 0) & (dc % dilation == 0)


def window_mask(grid: Tuple[int, int], prefix: int, size: int, dilation: int = 1) -> torch.Tensor:
    """Return the dense (L, L) boolean mask (True = attend) equivalent to the ``window`` kernel."""
    r, c = _grid_coords(grid)
    n = prefix + grid[0] * grid[1]
    allow = torch.ones(n, n, dtype=torch.bool)
    allow[prefix:, prefix:] = _window_allow(r, c, r, c, size, dilation)
    return allow


def sparse_mask(grid: Tuple[int, int], prefix: int, block: int, stride: int) -> torch.Tensor:
    """Return the (L, L) boolean block-sparse pattern (True = attend) of the ``sparse`` kernel."""
    r, c = _grid_coords(grid)
    n = prefix + grid[0] * grid[1]
    bid = (r // block) * ((grid[1] + block - 1) // block) + c // block
    glob = torch.arange(grid[0] * grid[1]) % stride == 0
    allow = torch.ones(n, n, dtype=torch.bool)
    allow[prefix:, prefix:] = (bid[:, None] == bid[None, :]) | glob[None, :] | glob[:, None]
    return allow


class _GridKernel(VariantKernel):
    """Shared part: image layers with a patch grid use the pattern, the text tower plain SDPA."""

    def __init__(self, cfg, ctx, eager: bool = False):
        super().__init__(cfg, ctx, eager)
        self.active = ctx.tower == "image" and ctx.grid is not None

    def _check_len(self, length: int) -> None:
        if length != self.ctx.seq_len:
            raise ValueError(f"{self.name} attention was built for {self.ctx.seq_len} tokens "
                             f"(grid {self.ctx.grid}), got {length}")


class WindowKernel(_GridKernel):
    """2-D neighbourhood attention over the patch grid, computed in bands of rows (linear memory)."""

    name = "window"
    settings = WindowSettings
    band_rows = 4  # grid rows of queries per band

    def __init__(self, cfg, ctx, eager: bool = False):
        super().__init__(cfg, ctx, eager)
        self.bands: List[Tuple[int, int, int, int]] = []  # (q_row0, q_row1, k_row0, k_row1)
        if not self.active:
            return
        rows, cols = ctx.grid
        reach = (cfg.window_size // 2) * cfg.window_dilation
        r_all, c_all = _grid_coords(ctx.grid)
        for i, q0 in enumerate(range(0, rows, self.band_rows)):
            q1 = min(rows, q0 + self.band_rows)
            k0, k1 = max(0, q0 - reach), min(rows, q1 + reach)
            qs, ks = slice(q0 * cols, q1 * cols), slice(k0 * cols, k1 * cols)
            allow = torch.ones(q1 * cols - q0 * cols, ctx.prefix_tokens + (k1 - k0) * cols, dtype=torch.bool)
            allow[:, ctx.prefix_tokens:] = _window_allow(r_all[qs], c_all[qs], r_all[ks], c_all[ks],
                                                         cfg.window_size, cfg.window_dilation)
            self.register_buffer(f"band{i}", _additive(allow), persistent=False)
            self.bands.append((q0, q1, k0, k1))

    def forward(self, q, k, v, attn_mask, x):
        if not self.active:
            return self.attend(q, k, v, attn_mask)
        self._check_len(q.shape[2])
        p, cols = self.ctx.prefix_tokens, self.ctx.grid[1]
        outs = [self.attend(q[:, :, :p], k, v, None)]  # the prefix attends globally
        for i, (q0, q1, k0, k1) in enumerate(self.bands):
            qb = q[:, :, p + q0 * cols:p + q1 * cols]
            kb = torch.cat([k[:, :, :p], k[:, :, p + k0 * cols:p + k1 * cols]], dim=2)
            vb = torch.cat([v[:, :, :p], v[:, :, p + k0 * cols:p + k1 * cols]], dim=2)
            outs.append(self.attend(qb, kb, vb, getattr(self, f"band{i}").to(q)))
        return torch.cat(outs, dim=2)


class SparseKernel(_GridKernel):
    """Fixed block-sparse pattern (local blocks + strided global tokens) as a dense SDPA mask."""

    name = "sparse"
    settings = SparseSettings

    def __init__(self, cfg, ctx, eager: bool = False):
        super().__init__(cfg, ctx, eager)
        if self.active:
            allow = sparse_mask(ctx.grid, ctx.prefix_tokens, cfg.sparse_block, cfg.sparse_stride)
            self.register_buffer("pattern", _additive(allow), persistent=False)

    def forward(self, q, k, v, attn_mask, x):
        if not self.active:
            return self.attend(q, k, v, attn_mask)
        self._check_len(q.shape[2])
        return self.attend(q, k, v, self.pattern.to(q))

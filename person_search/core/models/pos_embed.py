"""Positional embeddings of ViT image towers at another input shape (tall person crops)."""

from __future__ import annotations

import logging
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from person_search.core.errors import ConfigError

logger = logging.getLogger(__name__)


def resize_pos_embed_2d(pos_embed: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int],
                        extra_tokens: int = 1) -> torch.Tensor:
    """Interpolate a ViT positional embedding (T + gh*gw, D) from ``old_grid`` to ``new_grid``.

    Bicubic on the 2-D grid (antialiased when shrinking), the ``extra_tokens`` leading rows
    (class token) kept as they are. Equal grids return the input unchanged (same values).

    Args:
        pos_embed: (extra_tokens + rows * cols, D).
        old_grid: (rows, cols) the embedding is laid out on.
        new_grid: (rows, cols) wanted.
        extra_tokens: leading rows that are not on the grid.

    Returns:
        (extra_tokens + new rows * new cols, D), same dtype.
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if pos_embed.shape[0] != extra_tokens + old_grid[0] * old_grid[1]:
        raise ValueError(f"positional embedding has {pos_embed.shape[0]} rows, expected "
                         f"{extra_tokens} + {old_grid[0]}x{old_grid[1]}")
    if old_grid == new_grid:
        return pos_embed
    tok, grid = pos_embed[:extra_tokens], pos_embed[extra_tokens:]
    dtype = grid.dtype
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(dtype)
    return torch.cat([tok, grid], dim=0)


def is_vit_tower(visual: nn.Module) -> bool:
    """Return True for open_clip's VisionTransformer (a patch grid with a positional embedding)."""
    return hasattr(visual, "positional_embedding") and hasattr(visual, "grid_size") and hasattr(visual, "conv1")


def patch_grid(visual: nn.Module, size: Tuple[int, int]) -> Tuple[int, int]:
    """Return the patch grid of a ViT tower at input ``size`` = (H, W)."""
    ph, pw = _patch(visual)
    return size[0] // ph, size[1] // pw


def set_image_size(visual: nn.Module, arch: str, size: Tuple[int, int]) -> None:
    """Adapt the image tower to ``size`` = (H, W) after its weights are loaded.

    Raises:
        ConfigError: a ViT input size that is not a multiple of its patch size.
    """
    size = tuple(size)
    if is_vit_tower(visual):
        ph, pw = _patch(visual)
        if size[0] % ph or size[1] % pw:
            raise ConfigError(f"{arch}: image size {size[0]}x{size[1]} must be a multiple of the "
                              f"patch size {ph}x{pw}")
        grid = patch_grid(visual, size)
        old_grid = tuple(visual.grid_size)
        if grid != old_grid:
            with torch.no_grad():
                new = resize_pos_embed_2d(visual.positional_embedding.data, old_grid, grid)
            visual.positional_embedding = nn.Parameter(new, requires_grad=visual.positional_embedding.requires_grad)
            logger.info("%s: positional embedding resized from grid %s to %s", arch, old_grid, grid)
        visual.grid_size = grid
        visual.image_size = size
    elif hasattr(visual, "trunk") and hasattr(visual.trunk, "set_input_size"):  # open_clip TimmModel
        visual.set_input_size(size)
    else:
        visual.image_size = size


def _patch(visual: nn.Module) -> Tuple[int, int]:
    patch = visual.patch_size
    return patch if isinstance(patch, tuple) else (patch, patch)

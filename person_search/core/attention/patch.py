"""The one place that knows open_clip's and timm's attention internals.

Attention sites are found by structure, not by class or attribute names alone:

* a residual block whose ``forward`` takes ``attn_mask`` and holds a self-attention child
  with ``in_proj_weight`` / ``out_proj`` / ``num_heads`` (``nn.MultiheadAttention`` in
  open_clip's default blocks, open_clip's own ``Attention`` in custom blocks): replaced by
  :class:`ClipAttention` with the configured kernel (same parameters, shared);
* an attention module with its own fused switch (open_clip ``Attention`` with extras such
  as qk-norm or scaled cosine: ``use_fsdpa``; timm: ``fused_attn``): the switch is set from
  the kernel's ``flag_value`` (only sdpa / eager can be applied there);
* a :class:`ClipAttention` already in place: its kernel is replaced.

A transformer (a ``resblocks`` / ``blocks`` list of blocks with an attention-like child) in
which nothing matched
raises :class:`AttentionPatchError`, so an open_clip upgrade that renames things fails
loudly instead of silently running the wrong kernel.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

from torch import nn

from person_search.core.attention.kernels import LayerContext
from person_search.core.attention.module import ClipAttention
from person_search.core.attention.registry import KERNELS
from person_search.core.errors import ConfigError

FUSED_FLAGS = ("use_fsdpa", "fused_attn")  # open_clip Attention, timm attention
TRANSFORMER_LISTS = ("resblocks", "blocks")


class AttentionPatchError(ConfigError):
    """A transformer is present but none of its attention modules could be patched."""


@dataclass
class Site:
    """One attention module found in a model."""

    path: str  # dotted name of the attention module
    parent: nn.Module
    name: str  # attribute of ``parent`` that holds it
    attn: nn.Module
    style: str  # "swap" (becomes ClipAttention), "clip" (already one) or "flag" (own fused switch)


def _takes_attn_mask(module: nn.Module) -> bool:
    try:
        return "attn_mask" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _fused_flag(attn: nn.Module) -> Optional[str]:
    return next((f for f in FUSED_FLAGS if isinstance(getattr(attn, f, None), bool)), None)


def _plain_in_proj(attn: nn.Module) -> bool:
    """Return True for a self-attention whose whole function is in_proj -> softmax attention -> out_proj."""
    w = getattr(attn, "in_proj_weight", None)
    if not isinstance(w, nn.Parameter) or w.ndim != 2 or w.shape[0] != 3 * w.shape[1]:
        return False
    if not isinstance(getattr(attn, "out_proj", None), nn.Linear) \
            or not isinstance(getattr(attn, "num_heads", None), int):
        return False
    if isinstance(attn, nn.MultiheadAttention):
        return attn.bias_k is None and not attn.add_zero_attn and attn.dropout == 0.0
    extras = [getattr(attn, n, None) for n in ("logit_scale", "head_scale")]
    norms = [getattr(attn, n, nn.Identity()) for n in ("ln_q", "ln_k", "ln_inner")]
    drops = [getattr(attn, n, None) for n in ("attn_drop", "out_drop")]
    return (all(e is None for e in extras) and all(isinstance(m, nn.Identity) for m in norms)
            and all(d is None or getattr(d, "p", 0.0) == 0.0 for d in drops))


def find_sites(model: nn.Module) -> List[Site]:
    """Return every attention module of ``model`` that :func:`apply_attention` can set."""
    sites: List[Site] = []
    seen = set()
    for path, parent in model.named_modules():
        for name, child in parent.named_children():
            if id(child) in seen:
                continue
            full = f"{path}.{name}" if path else name
            if isinstance(child, ClipAttention):
                style = "clip"
            elif _takes_attn_mask(parent) and not hasattr(parent, "ln_1_kv") and _plain_in_proj(child):
                style = "swap"
            elif _fused_flag(child) is not None:
                style = "flag"
            else:
                continue
            seen.add(id(child))
            sites.append(Site(full, parent, name, child, style))
    return sites


def _layer_of(model: nn.Module, site_path: str) -> Tuple[int, int]:
    """Return (index, count) of the block holding ``site_path`` in its ModuleList (0, 1 if none)."""
    parts = site_path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit():
            container = model.get_submodule(".".join(parts[:i]))
            return int(parts[i]), len(container)
    return 0, 1


def _context(model: nn.Module, site: Site) -> LayerContext:
    image = site.path.startswith("visual.") or not hasattr(model, "visual")
    visual = getattr(model, "visual", model)
    grid = getattr(visual, "grid_size", None) if image else None
    layer, count = _layer_of(model, site.path)
    attn = site.attn  # a ClipAttention or a plain in_proj attention about to become one
    dim = attn.embed_dim if isinstance(attn, ClipAttention) else int(attn.in_proj_weight.shape[1])
    heads = int(attn.num_heads)
    if image:
        prefix = 1 if grid is not None else 0
        seq_len = prefix + grid[0] * grid[1] if grid is not None else None
    else:
        prefix = 0
        text = getattr(model, "text", model)  # CustomTextCLIP keeps its text tower in .text
        seq_len = getattr(text, "context_length", None)
    return LayerContext(tower="image" if image else "text", layer=layer, num_layers=count, embed_dim=dim,
                        num_heads=heads, grid=tuple(grid) if grid is not None else None,
                        prefix_tokens=prefix, seq_len=seq_len)


def _has_attention(block: nn.Module) -> bool:
    """Return True when a block holds something that looks like attention (by name or class)."""
    return any("attn" in name or "attention" in name or "Attention" in type(child).__name__
               for name, child in block.named_children())


def _check_coverage(model: nn.Module, sites: List[Site]) -> None:
    paths = [s.path for s in sites]
    for path, module in model.named_modules():
        for attr in TRANSFORMER_LISTS:
            blocks = getattr(module, attr, None)
            if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0 or not _has_attention(blocks[0]):
                continue
            prefix = f"{path}.{attr}." if path else f"{attr}."
            if not any(p.startswith(prefix) for p in paths):
                import open_clip

                raise AttentionPatchError(
                    f"no attention module recognised in the transformer at {prefix.rstrip('.')!r} "
                    f"({type(blocks[0]).__name__} blocks, open_clip {open_clip.__version__}): "
                    f"person_search/core/attention/patch.py must learn this structure")


HOOK_ATTR = "_person_search_reduce_hook"


def _hook_block(block: nn.Module, name: str) -> None:
    """Let the kernel of ``block.<name>`` drop or merge tokens after ``block``; one hook per block.

    The hook reaches the kernel through the block it is called with, not a captured module,
    so a deep copy of the model (``quantize_dynamic``) runs its own kernels.
    """
    old = getattr(block, HOOK_ATTR, None)
    if old is not None:
        old.remove()
        delattr(block, HOOK_ATTR)
    if getattr(block, name).kernel.reduces_tokens:
        setattr(block, HOOK_ATTR, block.register_forward_hook(
            lambda m, _a, out: getattr(m, name).kernel.reduce_tokens(out)))


def _image_tower(model: nn.Module) -> Optional[nn.Module]:
    """Return the image tower of a CLIP, an image tower itself, or None (text only)."""
    if hasattr(model, "visual"):
        return None if isinstance(model.visual, nn.Identity) else model.visual
    return None if hasattr(model, "token_embedding") or hasattr(model, "text") else model


def _check_vit(model: nn.Module, sites: List[Site], kind: str) -> None:
    """Refuse a ViT-only kernel (window, sparse, lam, prune) for an image tower without a patch grid."""
    visual = _image_tower(model)
    if visual is None:
        return
    if not any(s.style != "flag" and _context(model, s).tower == "image" and _context(model, s).grid
               for s in sites):
        name = type(getattr(visual, "trunk", visual)).__name__
        raise ConfigError(f"encoder.attention.kind {kind!r} needs a ViT image tower (a patch grid); this model's "
                          f"image tower ({name}) has none: use sdpa or eager")


def apply_attention(model: nn.Module, cfg: Any) -> int:
    """Give every attention module of ``model`` the kernel ``cfg.kind``; return how many were set.

    Args:
        model: an open_clip model or one of its towers.
        cfg: the ``encoder.attention`` config (``kind`` and the kernel's settings).

    Returns:
        The number of attention modules set.

    Raises:
        ConfigError: unknown kind, or a kind that the model's attention modules cannot run.
        AttentionPatchError: a transformer in which no attention module was recognised.
    """
    kernel_cls = KERNELS.get(cfg.kind)
    sites = find_sites(model)
    _check_coverage(model, sites)
    if kernel_cls.needs_vit:
        _check_vit(model, sites, cfg.kind)
    for site in sites:
        if site.style == "flag":
            if kernel_cls.flag_value is None:
                raise ConfigError(f"encoder.attention.kind {cfg.kind!r} cannot run in {site.path} "
                                  f"({type(site.attn).__name__} with its own attention code); use sdpa or eager")
            setattr(site.attn, _fused_flag(site.attn), kernel_cls.flag_value)
            continue
        kernel = kernel_cls(cfg, _context(model, site))
        if site.style == "clip":
            site.attn.kernel = kernel
        else:
            mha = isinstance(site.attn, nn.MultiheadAttention)
            setattr(site.parent, site.name, ClipAttention.wrap(
                site.attn, kernel, batch_first=getattr(site.attn, "batch_first", True), return_tuple=mha))
        _hook_block(site.parent, site.name)
    return len(sites)


def attention_modules(model: nn.Module) -> Iterator[ClipAttention]:
    """Yield the :class:`ClipAttention` modules of ``model``."""
    return (m for m in model.modules() if isinstance(m, ClipAttention))


def split_qkv(model: nn.Module) -> int:
    """Split the input projection of every ClipAttention into an ``nn.Linear``; return the count."""
    mods = list(attention_modules(model))
    for m in mods:
        m.split_qkv_linear()
    return len(mods)


@contextlib.contextmanager
def export_kernels(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every kernel is its export form and fused switches are off (plain ops)."""
    saved: List[Tuple[Any, str, Any]] = []
    for site in find_sites(model):
        if site.style == "clip":
            saved.append((site.attn, "kernel", site.attn.kernel))
            site.attn.kernel = site.attn.kernel.for_export()
        elif site.style == "flag":
            flag = _fused_flag(site.attn)
            saved.append((site.attn, flag, getattr(site.attn, flag)))
            setattr(site.attn, flag, False)
    try:
        yield model
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)

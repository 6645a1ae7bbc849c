"""LoRA on open_clip CLIP through peft: inject on the split q/k/v, merge back to a plain checkpoint.

peft wraps ``nn.MultiheadAttention`` only as a whole and cannot match the raw
``in_proj_weight`` Parameter (peft #761), so :func:`apply_lora` first moves every attention's
input projection into an ``nn.Linear`` named ``qkv`` (``core.attention.patch.split_qkv``) and
targets ``qkv``, ``out_proj``, ``c_fc`` and ``c_proj``. Merging is one step, :func:`merge_lora`:
peft's ``merge_and_unload`` folds the adapters into the base weights, then :func:`fold_qkv`
puts ``qkv`` back into ``in_proj_weight`` / ``in_proj_bias``, so the state dict has open_clip's
key names and loads anywhere open_clip checkpoints load. Training merges a copy each time it
writes a checkpoint (``checkpoint.save_checkpoint``), so a run's ``best.safetensors`` is
servable as it is and ``person-search lora merge`` only copies it out (``merge.py``).
"""

from __future__ import annotations

import copy
import logging
from typing import Sequence

from torch import nn

from person_search.core.attention.patch import attention_modules, split_qkv

logger = logging.getLogger(__name__)

KERNEL_PARAM = ".attn.kernel."  # parameters of an attention kernel (core/attention), e.g. LAM's generators
PROJECTIONS = ("visual.proj", "text_projection")  # nn.Parameters: peft's modules_to_save cannot hold them


def _attentions(model: nn.Module):
    found = list(attention_modules(model))
    if not found:  # open_clip's blocks not swapped: LoRA would silently miss q/k/v
        raise ValueError(f"{type(model).__name__} has no ClipAttention module (patch the attention first)")
    return found


def fold_qkv(model: nn.Module) -> int:
    """Put every ``qkv`` Linear back into ``in_proj_weight`` / ``in_proj_bias``; return the count.

    The inverse of ``core.attention.patch.split_qkv``: the parameters move (no copy), so the result is exact.
    """
    count = 0
    for att in _attentions(model):
        lin = att.qkv
        if lin is None:
            continue
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"qkv is a {type(lin).__name__}, not a plain nn.Linear: merge the adapters first")
        att.qkv = None
        att.in_proj_weight = lin.weight
        att.in_proj_bias = lin.bias
        count += 1
    return count


def apply_lora(model: nn.Module, *, rank: int, alpha: float, dropout: float = 0.0,
               targets: Sequence[str] = ("qkv", "out_proj", "c_fc", "c_proj"),
               train_projections: bool = True) -> nn.Module:
    """Inject LoRA adapters into ``model`` (in place) and return peft's wrapper.

    Only the adapters train (peft freezes the rest); ``train_projections`` also unfreezes the
    two projection matrices (``visual.proj``, ``text_projection``). ``model`` itself keeps
    working with the adapters in its graph (peft replaces the targeted Linears in place).

    Args:
        model: an open_clip CLIP whose attentions are :class:`ClipAttention` (``build_clip`` installs them).
        rank, alpha, dropout: the LoRA rank r, scaling alpha (delta = alpha / r * B A) and dropout.
        targets: module names (suffixes) to adapt.
        train_projections: train the projections too.
    """
    from peft import LoraConfig, get_peft_model

    if "qkv" in targets:
        _attentions(model)  # refuses open_clip's own blocks: LoRA would silently miss q/k/v
        split_qkv(model)
    config = LoraConfig(r=int(rank), lora_alpha=alpha, lora_dropout=float(dropout),
                        target_modules=list(targets), bias="none")
    wrapped = get_peft_model(model, config)
    for name, prm in model.named_parameters():  # learned attention masks (lam) train with the adapters
        if KERNEL_PARAM in name:
            prm.requires_grad_(True)
    if train_projections:
        params = dict(model.named_parameters())
        for name in PROJECTIONS:
            if name in params:
                params[name].requires_grad_(True)
    return wrapped


def merge_lora(wrapped: nn.Module) -> nn.Module:
    """Fold the adapters into the weights and ``qkv`` into ``in_proj``; return the plain CLIP."""
    merged = wrapped.merge_and_unload(safe_merge=True)
    fold_qkv(merged)
    return merged


def merged_copy(wrapped: nn.Module) -> nn.Module:
    """Return a merged plain copy of peft's wrapper, which keeps training unchanged (checkpoints)."""
    return merge_lora(copy.deepcopy(wrapped))

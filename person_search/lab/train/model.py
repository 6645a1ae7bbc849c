"""The model being trained: build it, choose what trains, and view it as an encoder.

:func:`build_model` gets the open_clip CLIP from ``core.models.build_clip`` (the builder
serving uses) with its ``ModelFacts``; :func:`build_trainable` applies the training mode on
top; :meth:`Trainable.encoder` is ``ClipEncoder.over`` the live model, the encoder serving uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from person_search.core.models.factory import ModelFacts
from person_search.lab.train.config import TrainConfig


def build_model(cfg: TrainConfig, weights: Optional[str] = None) -> Tuple[nn.Module, ModelFacts, object]:
    """Build the open_clip CLIP of ``cfg`` for training (float32, CPU), image tower at ``cfg.image_size``.

    The model comes from ``build_clip(..., for_training=True)``, the builder serving uses, so a
    checkpoint of this model is what ``ClipEncoder`` loads.

    Args:
        cfg: the run's settings (arch, image size, attention).
        weights: start weights instead of ``cfg.weights``: a checkpoint path, an open_clip tag,
            or "" for a random init drawn with ``cfg.seed`` (the same in every process for a seed).

    Returns:
        (model, facts, tokenizer).

    Raises:
        ConfigError: unknown arch or bad size; WeightsError: missing or unfitting weights.
    """
    from person_search.core.config import EncoderConfig
    from person_search.core.models.factory import build_clip

    built = build_clip(EncoderConfig(arch=cfg.arch, weights=cfg.weights if weights is None else weights,
                                     image_height=cfg.image_height, image_width=cfg.image_width,
                                     attention=cfg.attention_config(), device="cpu"), for_training=True,
                       init_seed=cfg.seed)  # from scratch: --seed draws the initial weights too
    return built.model, built.facts, built.tokenizer


def skeleton(arch: str, attention: str = "sdpa") -> nn.Module:
    """Return ``arch`` on the meta device with the project's attention: shapes only, to count parameters.

    No memory and no forward pass, so ViT-B/16-sized counts (LoRA shares) are instant.
    """
    from person_search.core.attention.patch import apply_attention
    from person_search.core.config import AttentionConfig
    from person_search.core.models.archs import open_clip_registered

    model = open_clip_registered().create_model(arch, device="meta")
    apply_attention(model, AttentionConfig(kind=attention))
    return model


@dataclass
class Trainable:
    """The CLIP under training, peft's wrapper in LoRA mode, its tokenizer and facts."""

    clip: nn.Module  # open_clip CLIP; in LoRA mode with the adapters injected (same object peft wraps)
    peft: Optional[nn.Module]
    tokenizer: object
    facts: ModelFacts

    def parameter_counts(self) -> Tuple[int, int]:
        """Return (trainable, total) parameter counts (adapters included in both)."""
        return count_parameters(self.clip)

    def encoder(self, *, device: torch.device, autocast_dtype: Optional[torch.dtype] = None,
                batch_size: int = 64, step: Optional[int] = None):
        """Return ``ClipEncoder.over`` the live model (call it in eval mode): what validation hooks receive.

        ``step`` names the embedding space ``<arch>@training-step<step>``; None keeps the facts' model id.
        """
        from person_search.core.clip_encoder import ClipEncoder
        from person_search.core.models.factory import TOWERS, BuiltModel

        built = BuiltModel(model=self.clip, facts=self.facts, towers=TOWERS, device=torch.device(device),
                           dtype=torch.float32, tokenizer=self.tokenizer)
        return ClipEncoder.over(built, batch_size=batch_size, autocast_dtype=autocast_dtype,
                                model_id=None if step is None else f"{self.facts.arch}@training-step{step}")


def count_parameters(model: nn.Module) -> Tuple[int, int]:
    """Return (trainable, total) numbers of parameter elements of ``model``."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def apply_mode(model: nn.Module, cfg: TrainConfig) -> Optional[nn.Module]:
    """Choose what trains: everything, everything but the text tower, or LoRA adapters.

    Also sets the logit scale to ``cfg.logit_scale`` (learnt only with ``learn_logit_scale``).
    Returns peft's wrapper in LoRA mode, else None.
    """
    wrapped = None
    for p in model.parameters():
        p.requires_grad_(True)
    if cfg.mode == "frozen-text":
        model.lock_text_tower()
    elif cfg.mode == "lora":
        from person_search.lab.train.lora import apply_lora
        wrapped = apply_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                             targets=cfg.lora_targets, train_projections=cfg.lora_train_projections)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(cfg.logit_scale))
    model.logit_scale.requires_grad_(cfg.learn_logit_scale)
    return wrapped


def build_trainable(cfg: TrainConfig, weights: Optional[str] = None) -> Trainable:
    """Build the model of ``cfg`` (see :func:`build_model`) and apply its training mode."""
    cfg.validate()
    model, facts, tokenizer = build_model(cfg, weights)
    wrapped = apply_mode(model, cfg)
    return Trainable(clip=model, peft=wrapped, tokenizer=tokenizer, facts=facts)


def load_run(run_dir, checkpoint: str = "best") -> Tuple[Trainable, dict]:
    """Rebuild a run's model from ``RUN/model.json`` with ``RUN/<checkpoint>.safetensors`` loaded.

    Works for every mode (a LoRA run comes back with its adapters, from
    ``<checkpoint>.adapters.safetensors``); ``trainable.encoder(device=...)`` then evaluates
    it. Returns (trainable in eval mode, model.json).

    Raises:
        OSError / ValueError: a missing or unreadable run file; RuntimeError: weights that do not fit.
    """
    from pathlib import Path

    from person_search.core.models.run import checkpoint_file, read_model_json
    from person_search.lab.train.checkpoint import load_weights

    info = read_model_json(run_dir)
    path = Path(run_dir) / checkpoint_file(checkpoint, "lora" if info.get("lora") else "open_clip")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train the run first)")
    cfg = TrainConfig.from_dict(info["train_config"])
    trainable = build_trainable(cfg, weights="")
    try:
        load_weights(trainable.clip, path)
    except RuntimeError as exc:
        raise RuntimeError(f"{path} does not fit {cfg.arch} ({cfg.mode}): {str(exc).splitlines()[0][:200]}") from None
    trainable.clip.eval()
    return trainable, info

"""Shared test helpers for the tiny encoder (``PS-Tiny-ViT``) and the model contract.

Importable from every test folder (``test/`` is on ``sys.path`` through ``test/conftest.py``):
``from tinykit import ARCH, cfg, model_json``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from person_search.core.config import EncoderConfig
from person_search.core.models.run import FORMAT
from person_search.core.models.weights import OPENAI_MEAN, OPENAI_STD

ARCH = "PS-Tiny-ViT"  # vision 64 wide x 2 layers, patch 16, native 64x64, embed 64; 2 text blocks


def cfg(**kw) -> EncoderConfig:
    """Return the tiny encoder's config (64x64, batch 4); keywords override any field."""
    base: Dict[str, Any] = dict(arch=ARCH, image_height=64, image_width=64, batch_size=4)
    base.update(kw)
    return EncoderConfig(**base)


def model_json(arch: str = ARCH, size: Tuple[int, int] = (64, 64), attention: str = "sdpa",
               settings: Optional[Dict[str, Any]] = None, embed_dim: int = 64) -> Dict[str, Any]:
    """Return a minimal ``model.json`` of the model contract (what a training run writes, less provenance)."""
    return {"format": FORMAT, "arch": arch, "image_size": list(size), "attention": attention,
            "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD), "embed_dim": embed_dim, "mode": "full",
            "lora": None, "train_config": {"attention_settings": dict(settings or {})}}

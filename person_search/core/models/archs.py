"""The architectures person_search ships (open_clip JSON configs under model_configs/), registered with open_clip."""

from __future__ import annotations

from pathlib import Path
from typing import List

from person_search.core.errors import ConfigError

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "model_configs"


def shipped_archs() -> List[str]:
    """Return the names of the configs under ``person_search/model_configs``."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


def open_clip_registered():
    """Import open_clip with the shipped configs registered (idempotent); return the module."""
    import open_clip

    names = shipped_archs()
    if MODEL_CONFIG_DIR.is_dir() and names and names[0] not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)
    return open_clip


def register_model_configs() -> List[str]:
    """Register person_search/model_configs/*.json with open_clip; return their names."""
    open_clip_registered()
    return shipped_archs()


def known_archs() -> List[str]:
    """Return every architecture name open_clip can build here (shipped ones included)."""
    return list(open_clip_registered().list_models())


def model_config(arch: str) -> dict:
    """Return open_clip's config of ``arch``.

    Raises:
        ConfigError: the architecture is unknown.
    """
    cfg = open_clip_registered().get_model_config(arch)
    if cfg is None:
        raise ConfigError(f"unknown encoder.arch {arch!r}; known: ViT-B-16, ViT-B-32, MobileCLIP-S1, "
                          f"MobileCLIP-S2, MobileCLIP-B, MobileCLIP2-S0, {', '.join(shipped_archs())}, ... "
                          f"(open_clip.list_models())")
    return cfg


def native_image_size(arch: str):
    """Return (H, W) the architecture is defined at."""
    size = model_config(arch)["vision_cfg"].get("image_size", 224)
    return (size, size) if isinstance(size, int) else tuple(size)

"""Shared by the training tests: a tiny learnable in-memory dataset and a Rank-1 validation hook.

Each identity wears a shirt and trousers of two named colours; its images are that two-colour
pattern plus noise, its caption names both colours. A tiny random CLIP learns it in a few
dozen steps, and a caption-shuffled run cannot.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from person_search.lab.train.config import TrainConfig
from tinykit import ARCH
SIZE = (64, 32)  # tall, like 384x128 crops; PS-Tiny-ViT's native size is 64x64
RGB = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0),
       "white": (1.0, 1.0, 1.0), "black": (-1.0, -1.0, -1.0)}
OUTFITS = (("red", "blue"), ("green", "black"), ("blue", "white"), ("white", "red"))


class Outfits(Dataset):
    """``len(OUTFITS)`` identities x ``per_id`` images: (normalised image, caption, label)."""

    def __init__(self, per_id: int = 4, size: Tuple[int, int] = SIZE, noise: float = 0.3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        h, w = size
        self.items: List[Tuple[torch.Tensor, str, int]] = []
        for label, (top, bottom) in enumerate(OUTFITS):
            img = torch.empty(3, h, w)
            img[:, :h // 2] = torch.tensor(RGB[top]).view(3, 1, 1)
            img[:, h // 2:] = torch.tensor(RGB[bottom]).view(3, 1, 1)
            for _ in range(per_id):
                self.items.append((img + noise * torch.randn(3, h, w, generator=g),
                                   f"a person in a {top} shirt and {bottom} trousers", label))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def rank1(encoder, data: Dataset) -> Dict[str, float]:
    """Text -> image Rank-1 (%) of every caption over every image of ``data``, as a validate hook would."""
    images = torch.stack([x for x, _, _ in data]).numpy()
    labels = np.array([y for _, _, y in data])
    img = encoder.encode_preprocessed(images)
    txt = encoder.encode_text([c for _, c, _ in data])
    top = (txt @ img.T).argmax(axis=1)
    return {"R1": 100.0 * float(np.mean(labels[top] == labels))}


def config(**kw) -> TrainConfig:
    """Return a TrainConfig for the tiny model on 1 CPU thread (the test machine is shared)."""
    base = dict(arch=ARCH, image_height=SIZE[0], image_width=SIZE[1], batch_size=8, lr=1e-3,
                lora_rank=4, lora_alpha=8.0, threads=1, weight_decay=0.0)
    base.update(kw)
    return TrainConfig(**base)

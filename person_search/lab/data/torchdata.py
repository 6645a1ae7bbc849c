"""PyTorch views of a :class:`~person_search.lab.data.datasets.Split`: transforms, datasets, loaders.

Images are read with OpenCV (BGR), transformed in numpy and turned into normalised RGB
tensors; the CLIP mean / std come from the caller (the encoder's preprocessing). Random
decisions use torch's RNG, which DataLoader seeds differently in every worker.

Training (:class:`TrainTransform`): resize to (H, W), random horizontal flip, zero padding +
random crop back to (H, W), light colour jitter (brightness, contrast, saturation), and
optionally random erasing (a box set to the mean, i.e. 0 after normalisation), as the
IRRA recipe does. Evaluation (:class:`EvalTransform`): resize + normalise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from person_search.lab.data.datasets import DatasetError, Split

Size = Tuple[int, int]


def read_image(path) -> np.ndarray:
    """Read an image file as BGR uint8.

    Raises:
        DatasetError: the file is missing or not a decodable image.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: cannot read the image (missing or not an image file)")
    return img


def _resize(img: np.ndarray, size: Size) -> np.ndarray:
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h or img.shape[1] > w
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


class EvalTransform:
    """BGR uint8 image -> float32 (3, H, W) tensor: resize, RGB, normalise.

    Args:
        size: (H, W) of the model input.
        mean, std: RGB normalisation on the 0..1 scale (the encoder's).
    """

    def __init__(self, size: Size, mean: Sequence[float], std: Sequence[float]):
        self.size = (int(size[0]), int(size[1]))
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)

    def to_tensor(self, rgb01: np.ndarray) -> torch.Tensor:
        """Normalise an (H, W, 3) RGB float image in 0..1 into a (3, H, W) tensor."""
        return torch.from_numpy(np.ascontiguousarray(((rgb01 - self.mean) / self.std).transpose(2, 0, 1)))

    def __call__(self, bgr: np.ndarray) -> torch.Tensor:
        rgb = cv2.cvtColor(_resize(bgr, self.size), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        return self.to_tensor(rgb)


class TrainTransform(EvalTransform):
    """The training augmentations; each one is switched off by a zero.

    Args:
        size: (H, W) of the model input.
        mean, std: RGB normalisation on the 0..1 scale.
        flip: probability of a horizontal flip.
        pad: zero padding (px) before the random crop back to (H, W).
        jitter: brightness / contrast / saturation factors drawn from [1 - jitter, 1 + jitter].
        erasing: probability of random erasing (area 2-40 %, aspect 0.3-3.3).
    """

    def __init__(self, size: Size, mean: Sequence[float], std: Sequence[float], *, flip: float = 0.5,
                 pad: int = 10, jitter: float = 0.1, erasing: float = 0.0):
        super().__init__(size, mean, std)
        self.flip, self.pad, self.jitter, self.erasing = float(flip), int(pad), float(jitter), float(erasing)

    def __call__(self, bgr: np.ndarray) -> torch.Tensor:
        img = _resize(bgr, self.size)
        if self.flip and float(torch.rand(())) < self.flip:
            img = img[:, ::-1]
        if self.pad:
            p = self.pad
            big = cv2.copyMakeBorder(np.ascontiguousarray(img), p, p, p, p, cv2.BORDER_CONSTANT, value=0)
            y, x = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
            img = big[y:y + self.size[0], x:x + self.size[1]]
        rgb = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        if self.jitter:
            j = self.jitter
            rgb *= _uniform(1 - j, 1 + j)  # brightness
            rgb = rgb.mean() + (rgb - rgb.mean()) * _uniform(1 - j, 1 + j)  # contrast
            grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
            rgb = grey[..., None] + (rgb - grey[..., None]) * _uniform(1 - j, 1 + j)  # saturation
            rgb = np.clip(rgb, 0.0, 1.0)
        x = self.to_tensor(rgb)
        if self.erasing and float(torch.rand(())) < self.erasing:
            _erase(x)
        return x


def _erase(x: torch.Tensor) -> None:
    h, w = x.shape[1:]
    for _ in range(10):
        area = _uniform(0.02, 0.4) * h * w
        aspect = float(np.exp(_uniform(np.log(0.3), np.log(3.3))))
        eh, ew = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
        if 0 < eh < h and 0 < ew < w:
            y, x0 = int(torch.randint(0, h - eh + 1, ())), int(torch.randint(0, w - ew + 1, ()))
            x[:, y:y + eh, x0:x0 + ew] = 0.0
            return


class CaptionPairs(Dataset):
    """One sample per (image, caption) pair of a split, as IRRA trains.

    Items are ``(image, caption, label)``: a float32 (3, H, W) tensor, the raw caption (or its
    tokens when ``tokenizer`` is given) and the int person label (0..N-1 in the train split).

    Args:
        split: the split, usually ``load_dataset(...).split("train")``.
        transform: BGR uint8 -> tensor, e.g. :class:`TrainTransform`.
        tokenizer: optional callable ``list[str] -> LongTensor (1, L)`` (open_clip's tokenizer).
    """

    def __init__(self, split: Split, transform: Callable[[np.ndarray], torch.Tensor],
                 tokenizer: Optional[Callable] = None):
        self.split, self.transform, self.tokenizer = split, transform, tokenizer
        self.index = split.pairs()
        self.num_classes = split.num_ids

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        r, c = self.index[i]
        rec = self.split.records[r]
        caption = rec.captions[c]
        if self.tokenizer is not None:
            caption = self.tokenizer([caption])[0]
        return self.transform(read_image(rec.image)), caption, rec.pid


class Images(Dataset):
    """Image files with their person ids, for batched gallery encoding: items ``(image, pid)``."""

    def __init__(self, paths: Sequence[Path], pids: Sequence[int], transform: Callable[[np.ndarray], torch.Tensor]):
        if len(paths) != len(pids):
            raise ValueError(f"{len(paths)} paths but {len(pids)} pids")
        self.paths, self.pids, self.transform = list(paths), [int(p) for p in pids], transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(read_image(self.paths[i])), self.pids[i]


def train_loader(split: Split, *, size: Size, mean: Sequence[float], std: Sequence[float], batch_size: int = 64,
                 workers: int = 2, tokenizer: Optional[Callable] = None, erasing: float = 0.0,
                 generator: Optional[torch.Generator] = None) -> DataLoader:
    """Return a shuffled DataLoader of (image, caption, label) batches with the training transform.

    Args:
        split: the training split.
        size: (H, W) of the model input.
        mean, std: the encoder's RGB normalisation.
        batch_size: pairs per batch; the last incomplete batch is dropped.
        workers: DataLoader worker processes (0 = load in the main process).
        tokenizer: tokenise captions in the workers; None gives lists of raw captions.
        erasing: probability of random erasing.
        generator: seeds the shuffling (reproducible runs).

    Returns:
        the DataLoader; ``loader.dataset.num_classes`` is the number of identities.
    """
    ds = CaptionPairs(split, TrainTransform(size, mean, std, erasing=erasing), tokenizer)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0, generator=generator)

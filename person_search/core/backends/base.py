"""The protocol every image-tower runtime follows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, Tuple

import numpy as np
import torch
from torch import nn

from person_search.core.errors import ConfigError


@dataclass(frozen=True)
class BackendContext:
    """Where and how a backend runs."""

    device: torch.device
    dtype: torch.dtype  # of the torch tower (fp32, or fp16 on CUDA)
    threads: int  # CPU threads; 0 = the runtime's default
    max_batch: int  # largest batch run() gets (encoder.batch_size): a TensorRT profile's max
    cache_dir: Path  # root of exported files; each backend keeps its own sub-folder (onnx/, tensorrt/)
    batch_profile: Tuple[int, int, int] = (1, 8, 32)  # TensorRT min / opt / max batch (encoder.trt_*_batch)
    workspace_mb: int = 2048  # TensorRT builder workspace (encoder.trt_workspace_mb)


class ImageBackend:
    """Runs the image tower: float32 (N, 3, H, W) preprocessed batch -> (N, dim) features.

    Args:
        tower: the torch image tower from ``build_clip`` (frozen, eval, on ``ctx.device``);
            a backend that exports it may let it go afterwards.
        facts: the model's ``ModelFacts`` (model_id, arch, image_size, mean, std, dim).
        ctx: device, threads, batch bound and cache folder.
    """

    name: ClassVar[str] = ""
    devices: ClassVar[Tuple[str, ...]] = ("cpu",)  # torch device types it runs on

    def __init__(self, tower: nn.Module, facts: Any, ctx: BackendContext):
        self.facts = facts
        self.ctx = ctx

    @classmethod
    def check_device(cls, device: torch.device) -> None:
        """Raise ConfigError (one line) when this backend cannot run on ``device``."""
        if device.type not in cls.devices:
            raise ConfigError(f"encoder.backend {cls.name} runs on {', '.join(cls.devices)} only, not "
                              f"{device}; use backend torch on {device}")

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Return float32 (N, dim) un-normalised features of a float32 (N, 3, H, W) batch."""
        raise TypeError(f"{type(self).__name__} must define run(batch): every backend does")

    def describe(self) -> Dict[str, Any]:
        """Return what to log once at start: backend, device, precision, files."""
        return {"backend": self.name, "device": str(self.ctx.device)}

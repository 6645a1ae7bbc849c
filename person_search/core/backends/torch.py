"""PyTorch backend: the image tower as built (CPU or CUDA, fp32 or fp16)."""

from __future__ import annotations

import numpy as np
import torch

from person_search.core.backends.base import ImageBackend


class TorchBackend(ImageBackend):
    """Eager PyTorch with the configured attention kernel."""

    name = "torch"
    devices = ("cpu", "cuda")

    def __init__(self, tower, facts, ctx):
        super().__init__(tower, facts, ctx)
        self.module = tower

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.ctx.device, dtype=self.ctx.dtype, non_blocking=True)
            out = self.module(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out.float().cpu().numpy()

    def describe(self):
        return {**super().describe(), "precision": str(self.ctx.dtype).replace("torch.", "")}

"""PyTorch dynamic int8: every Linear (the attention input projection split into one) in int8, CPU."""

from __future__ import annotations

import warnings

from torch import nn

from person_search.core.attention.patch import split_qkv
from person_search.core.backends.torch import TorchBackend


class TorchInt8Backend(TorchBackend):
    """``torch.ao.quantization.quantize_dynamic`` of the tower's Linear layers."""

    name = "torch-int8"
    devices = ("cpu",)

    def __init__(self, tower, facts, ctx):
        split_qkv(tower)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
            from torch.ao.quantization import quantize_dynamic

            tower = quantize_dynamic(tower, {nn.Linear}, dtype=torch.qint8)
        super().__init__(tower, facts, ctx)

    def describe(self):
        return {**super().describe(), "precision": "int8 (dynamic)"}

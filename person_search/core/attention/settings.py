"""Each attention kernel's settings, one dataclass per kernel, and their checks.

A kernel's settings are ``encoder.attention.<name>`` parameters (YAML, ``--set
attention.<name>=...``, ROS ``encoder.attention.<name>``). The kernel registry
(:mod:`~person_search.core.attention.registry`) pairs each kernel with its class here and
:class:`~person_search.core.config.AttentionConfig` gathers them all with the ``kind``.
This module imports no torch (the config reads it); the kernel classes name their
settings class (``settings``), whose fields enter the model id of a kernel that changes
the function.

A new kernel with settings: a dataclass here (fields made with ``param``, names prefixed
with the kernel's name; a ``check(cfg)`` for what a range cannot say) and its entry in
``registry.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from person_search.core.errors import ConfigError
from person_search.core.fields import param


@dataclass
class WindowSettings:
    """``window`` (local.py): 2-D neighbourhood attention over the patch grid."""

    window_size: int = param(7, "window: side of the square patch neighbourhood each patch attends to (the class "
                                "token attends to and is seen by all)", range=(1, 255))
    window_dilation: int = param(1, "window: step between the patches of a neighbourhood", range=(1, 64))

    def check(self) -> None:
        """Refuse an even neighbourhood (it has no centre patch)."""
        if self.window_size % 2 != 1:
            raise ConfigError(f"encoder.attention.window_size must be odd, not {self.window_size}")


@dataclass
class SparseSettings:
    """``sparse`` (local.py): local blocks plus strided global tokens."""

    sparse_block: int = param(4, "sparse: side of the square blocks of patches that attend to each other",
                              range=(1, 256))
    sparse_stride: int = param(8, "sparse: every stride-th patch (row-major) is a global token", range=(1, 65536))

    def check(self) -> None:
        """Nothing beyond the ranges."""


@dataclass
class LamSettings:
    """``lam`` (lam.py): a learnable additive mask generated per layer."""

    lam_hidden: int = param(64, "lam: hidden width of each layer's mask generator", range=(1, 4096))
    lam_layers: int = param(2, "lam: Linear layers per mask generator (ReLU between)", range=(1, 8))

    def check(self) -> None:
        """Nothing beyond the ranges."""


@dataclass
class PruneSettings:
    """``prune`` (prune.py): EViT token pruning in the image tower."""

    prune_keep: float = param(0.5, "prune: fraction of patch tokens kept at each pruning layer (the rest fused into "
                                   "one)", range=(0.01, 1.0))
    prune_layers: str = param("", 'prune: comma-separated image layers whose input is pruned; "" = the layer at a '
                                  "third of the depth (the last 2/3 run on kept tokens)")

    def check(self) -> None:
        """Refuse a layer list that is not comma-separated numbers."""
        if self.prune_layers.strip() and not all(t.strip().isdigit() for t in self.prune_layers.split(",")):
            raise ConfigError(f"encoder.attention.prune_layers must be comma-separated layer numbers, "
                              f"not {self.prune_layers!r}")

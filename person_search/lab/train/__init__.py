"""Fine-tuning CLIP for text-based person search (ROS-free), for ``person-search train`` and the attention study.

:func:`train` (``loop.py``) with a :class:`TrainConfig` (``config.py``); losses in
``losses.py``; the model, its training modes and ``Trainable.encoder`` (``ClipEncoder.over``
the live model) in ``model.py``; LoRA inject / merge in ``lora.py``; ``checkpoint.py`` writes
the run folder of the model contract (``person_search.core.models.run``); ``merge.py`` copies a
run's already merged checkpoint out with its sidecar (``person-search lora merge``).
Names are imported on first use, so ``person-search --help`` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"TrainConfig": "config", "TrainError": "loop", "TrainResult": "loop", "train": "loop"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

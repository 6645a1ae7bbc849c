"""Fine-tuning CLIP for text-based person search (ROS-free).

:func:`train` (``loop.py``) with a :class:`TrainConfig` (``config.py``); losses in
``losses.py``; the model and its training modes in ``model.py``; the run folder contract in
``checkpoint.py``; ``merge.py`` turns a run into one plain checkpoint (``person-search lora merge``),
with the LoRA mechanics in :mod:`person_search.lab.train.lora`.
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

"""Attention kernel names (``encoder.attention.kind``) -> kernel classes, imported on use, and their settings.

:data:`KERNEL_SETTINGS` pairs a kernel with its settings dataclass (``settings.py``, no
torch); :func:`settings_classes` hands them to
:class:`~person_search.core.config.AttentionConfig`, which gathers their fields.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Dict, Tuple

from person_search.core.attention.settings import LamSettings, PruneSettings, SparseSettings, WindowSettings
from person_search.core.plugins import Registry

KERNELS = Registry("encoder.attention.kind", {
    "sdpa": "person_search.core.attention.kernels:SdpaKernel",
    "eager": "person_search.core.attention.kernels:EagerKernel",
    "window": "person_search.core.attention.local:WindowKernel",
    "sparse": "person_search.core.attention.local:SparseKernel",
    "lam": "person_search.core.attention.lam:LamKernel",
    "prune": "person_search.core.attention.prune:PruneKernel",
})

KERNEL_SETTINGS: Dict[str, type] = {  # kernel name -> its settings (a kernel without settings has none here)
    "window": WindowSettings,
    "sparse": SparseSettings,
    "lam": LamSettings,
    "prune": PruneSettings,
}


def settings_classes() -> Tuple[type, ...]:
    """Return the kernels' settings classes in registration order; ValueError if two declare one name."""
    seen: Dict[str, str] = {}
    for kind, cls in KERNEL_SETTINGS.items():
        for f in fields(cls):
            if f.name in seen:
                raise ValueError(f"attention setting {f.name!r} is declared by {seen[f.name]} and {kind}")
            seen[f.name] = kind
    return tuple(KERNEL_SETTINGS.values())

"""The field of a config dataclass: default, description and range as metadata (:func:`param`).

Below :mod:`person_search.core.config`, so that the sections declared elsewhere (each
attention kernel's settings, :mod:`person_search.core.attention.settings`) use it too.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Optional, Tuple


def param(default: Any, description: str = "", *, range: Optional[Tuple[float, float]] = None,
          runtime: bool = False):
    """Return a dataclass field with its parameter description and inclusive range as metadata.

    Args:
        default: the default value (a list is copied per instance).
        description: what ``ros2 param describe`` shows.
        range: (lo, hi), checked by ``validate()`` and declared on the ROS parameter.
        runtime: a running node takes the field up when it changes (``ros2 param set``);
            every other field is read-only once the node has started.

    Returns:
        A ``dataclasses.field``.
    """
    meta = {"description": description, "range": range}
    if runtime:
        meta["runtime"] = True
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)

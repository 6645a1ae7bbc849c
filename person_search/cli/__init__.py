"""``person-search``: the command line, one module per command group.

Groups (each module defines ``register(sub)``, adding its sub-commands whose handlers
return an exit code):

* :mod:`.ros` -- ``up``, ``query``, ``demo``: the ROS 2 graph (needs rclpy).
* :mod:`.offline` -- ``run``, ``gallery``, ``sample-video``: no ROS.
* :mod:`.export` -- ``export``: the detector to OpenVINO / ONNX (ultralytics' exporter).
* :mod:`.data` -- ``data synth``, ``data check``: generate / check a dataset.
* :mod:`.evaluation` -- ``eval``: retrieval metrics of a checkpoint on a dataset split.

A new group (train, eval, export, data, ...) is a new module listed in ``GROUPS``.
Shared helpers (``--set`` parsing, the one match-table printer) live in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from typing import Optional, Sequence

log = logging.getLogger("person_search")

GROUPS = ("ros", "offline", "data", "evaluation", "export")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every command group that imports here."""
    p = argparse.ArgumentParser(prog="person-search", description="Find people in video by a text description.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in GROUPS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:  # e.g. the ROS group without rclpy
            log.debug("command group %s unavailable: %s", name, exc)
            continue
        module.register(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``person-search`` with ``argv``; return the exit code."""
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="[%(name)s] %(levelname)s %(message)s")
    return int(a.func(a) or 0)

"""``person-search``: the command line, one module per command group.

Groups (each module defines ``register(sub)``, adding its sub-commands whose handlers
return an exit code):

* :mod:`.ros` -- ``up``, ``query``, ``demo``: the ROS 2 graph (needs rclpy).
* :mod:`.offline` -- ``run``, ``gallery``, ``sample-video``: no ROS.
* :mod:`.export` -- ``export``: the detector to OpenVINO / ONNX (ultralytics' exporter).
* :mod:`.data` -- ``data synth``, ``data check``: generate / check a dataset.
* :mod:`.evaluation` -- ``eval``: retrieval metrics of a checkpoint on a dataset split.
* :mod:`.train` -- ``train``, ``lora merge``: fine-tuning and deployment of the adapters.

A new group (train, eval, export, data, ...) is a new module listed in ``GROUPS``.
Shared helpers (``--set`` parsing, the one match-table printer) live in :mod:`.common`.

Exit codes (README "Exit codes"): 0 done; 1 the work ran and failed (a query refused, a
node died); 2 a user error (bad arguments, config, --set, video, snapshot or weights: one
line on stderr, never a traceback); 3 the ROS graph did not answer in time; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

log = logging.getLogger("person_search")

GROUPS = ("ros", "offline", "data", "evaluation", "export", "train", "reid")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("person_search")
    except Exception:  # noqa: BLE001 - running from a source tree without an install
        return "0.1.0 (source tree)"


def is_user_error(exc: BaseException) -> bool:
    """Return True for errors that are the user's to fix (reported in one line, exit 2).

    The core's own error types (ConfigError, SourceError, SnapshotError, WeightsError, ...:
    any ValueError / RuntimeError defined in person_search) carry a message written for the
    user; so do missing or unreadable files and malformed YAML.
    """
    import yaml
    if isinstance(exc, (OSError, yaml.YAMLError, ValueError)):
        return True
    return isinstance(exc, RuntimeError) and type(exc).__module__.startswith("person_search.")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every command group that imports here."""
    p = argparse.ArgumentParser(prog="person-search", description="Find people in video by a text description.",
                                epilog="exit codes: 0 ok, 1 failed, 2 user error, 3 ROS graph timeout, 130 Ctrl-C")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    a = parser.parse_args(argv)  # bad arguments: usage and exit 2 (argparse)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="[%(name)s] %(levelname)s %(message)s")
    try:
        return int(a.func(a) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TimeoutError as exc:  # the ROS graph did not answer
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
        if not is_user_error(exc):
            raise
        if a.verbose:
            log.exception("user error")
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

"""``person-search``: the command line, one module per command group.

Groups (each module defines ``register(sub)``, adding its sub-commands whose handlers
return an exit code):

* :mod:`.ros` -- ``up``, ``query``, ``demo``: the ROS 2 graph (needs rclpy).
* :mod:`.offline` -- ``run``, ``gallery``, ``sample-video``: no ROS.
* :mod:`.export` -- ``export``: the detector to OpenVINO / ONNX (ultralytics' exporter).
* :mod:`.data` -- ``data synth``, ``data check``: generate / check a dataset.
* :mod:`.evaluation` -- ``eval``: retrieval metrics of a checkpoint on a dataset split.
* :mod:`.train` -- ``train``, ``lora merge``: fine-tuning and deployment of the adapters.
* :mod:`.web` -- ``web``: the operator console (needs rclpy and aiohttp).

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
import os
import sys
from typing import Optional, Sequence

log = logging.getLogger("person_search")

GROUPS = ("ros", "offline", "data", "evaluation", "export", "train", "web", "reid")
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


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's contract for bad arguments: one line on stderr, exit code 2.

    (argparse's own ``error`` prints the whole usage block first; the one line names the
    command and points at its ``--help``.) Sub-command parsers inherit this class.
    """

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every command group that imports here."""
    p = Parser(prog="person-search", description="Find people in video by a text description.",
               epilog="exit codes: 0 ok, 1 failed, 2 user error, 3 ROS graph timeout, 130 Ctrl-C")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging, and the libraries' own messages (ultralytics, open_clip, faiss)")
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


def setup_logging(verbose: bool) -> None:
    """Log to stderr: this package at INFO (DEBUG with -v); the libraries' chatter only with -v.

    open_clip logs INFO lines on the root logger, faiss' loader its ``ModuleNotFoundError``
    probes, ultralytics "Loading ... for OpenVINO inference": none of that is the user's
    business unless they ask (``-v``). ultralytics reads ``YOLO_VERBOSE`` when first imported.
    """
    if not verbose:
        os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="[%(name)s] %(levelname)s %(message)s")
    logging.getLogger("person_search").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``person-search`` with ``argv``; return the exit code."""
    parser = build_parser()
    try:
        a = parser.parse_args(argv)  # bad arguments: one line and exit 2 (Parser.error)
    except SystemExit as exc:  # --help, --version, a usage error: its code, also to in-process callers
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    setup_logging(a.verbose)
    from person_search.cli.common import json_stdout
    try:
        with json_stdout(getattr(a, "json", None) is True):  # --json: stdout holds the JSON alone
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
        text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())  # e.g. YAML's 4-line errors
        print(f"error: {text or type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE

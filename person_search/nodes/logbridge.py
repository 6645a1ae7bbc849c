"""The core's Python ``logging`` into a node's logger (``/rosout``, ``--log-level``)."""

from __future__ import annotations

import logging

from rclpy.node import Node


class RosLogHandler(logging.Handler):
    """Forward the core's ``logging`` records to a node logger (so they reach /rosout and honour --log-level)."""

    def __init__(self, logger):
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self._logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(text)
            elif record.levelno >= logging.INFO:
                self._logger.info(text)
            else:
                self._logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never break the node
            self.handleError(record)


def forward_core_logging(node: Node) -> None:
    """Send ``person_search.*`` log records to ``node``'s logger, at the node's log level."""
    core = logging.getLogger("person_search")
    for h in [h for h in core.handlers if isinstance(h, RosLogHandler)]:
        core.removeHandler(h)
    core.addHandler(RosLogHandler(node.get_logger()))
    # rcutils severities (DEBUG=10 ... FATAL=50) use the same numbers as Python's levels
    core.setLevel(int(node.get_logger().get_effective_level()))
    core.propagate = False

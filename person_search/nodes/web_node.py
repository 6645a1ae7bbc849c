"""Web node: the operator console as a node of the graph (``person-search up --web``, ``web:=true``).

Parameters ``web.*`` (:class:`person_search.web.config.WebConfig`); the token only from the
environment (``PERSON_SEARCH_WEB_TOKEN``), so that ``ros2 param get`` never shows it.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.signals import SignalHandlerOptions

from person_search.core.config import ConfigError
from person_search.nodes.params import declare_section
from person_search.web.config import WebConfig
from person_search.web.security import BindError, check_bind, resolve_token


def main(args=None) -> int:
    from person_search.web.server import run_console
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node("web")
        try:
            cfg = declare_section(node, "web", WebConfig)
            token = resolve_token(None)
            check_bind(cfg.host, token)
        except (BindError, ConfigError, ValueError) as exc:
            print(f"[person_search] cannot start: {exc}", file=sys.stderr, flush=True)
            node.destroy_node()
            return 2
        return run_console(node, cfg, token)
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())

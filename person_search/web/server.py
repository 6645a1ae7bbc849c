"""Run the console: the rclpy bridge on a background thread, the HTTP server on the main one."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Callable, Optional

from person_search.web.config import WebConfig
from person_search.web.security import BindError, check_bind

log = logging.getLogger(__name__)


def url_of(host: str, port: int) -> str:
    """Return the console's address as a user types it."""
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    h = "127.0.0.1" if h in ("0.0.0.0", "[::]") else h
    return f"http://{h}:{port}/"


async def _serve(app, host: str, port: int, ready: Callable[[str], None], stop: asyncio.Event) -> None:
    from aiohttp import web

    from person_search.web.app import AccessLogger
    runner = web.AppRunner(app, access_log_class=AccessLogger,
                           access_log=logging.getLogger("person_search.web.access"), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
        await site.start()
        ready(url_of(host, port))
        await stop.wait()
    finally:
        await runner.cleanup()


def run_console(node, cfg: WebConfig, token: str, *, out=None) -> int:
    """Serve the console for ``node`` (already created, rclpy initialised) until SIGINT / SIGTERM.

    Returns 0 after a signal, 2 when the address cannot be bound (one line on stderr).
    The token is never printed or logged.
    """
    from person_search.web.app import make_app
    from person_search.web.bridge import GraphBridge
    out = out or sys.stdout
    bridge = GraphBridge(node, cfg).start()
    app = make_app(bridge, token=token, port=cfg.port, tile_width=cfg.tile_width)

    def ready(url: str) -> None:
        how = " (token required: open it once with ?token=... or send 'Authorization: Bearer ...')" if token else ""
        print(f"web console: {url}{how}; graph namespace {bridge.namespace or '/'}", file=out, flush=True)

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(_serve(app, cfg.host, cfg.port, ready, stop))
    except OSError as exc:  # address in use, not an address of this machine, no permission
        print(f"error: cannot serve on {cfg.host}:{cfg.port}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        loop.close()
        bridge.close()
    return 0


def serve_standalone(cfg: WebConfig, token: str, *, namespace: str = "", name: Optional[str] = None) -> int:
    """``person-search web``: check the bind rules, start rclpy and a node of our own, serve."""
    import os

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from person_search.graph import normalize_namespace
    try:
        cfg.validate()
        check_bind(cfg.host, token)
    except (BindError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    ns = normalize_namespace(namespace)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node(name or f"web_console_{os.getpid()}", namespace=ns or "/")
        return run_console(node, cfg, token)
    finally:
        rclpy.try_shutdown()

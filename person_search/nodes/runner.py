"""Every node's ``main``: :func:`run_node` (init, build, autostart, spin, clean exit with 0 or 2)."""

from __future__ import annotations

import signal
import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node

from person_search.core.config import ConfigError
from person_search.nodes.lifecycle import ManagedNode
from person_search.nodes.logbridge import forward_core_logging


def _stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, also while a model is still loading.

    rclpy's own handlers only wake the executor; a node busy loading a model ignored both
    signals for over 10 s. A Python handler runs as soon as the current C call returns.
    """
    def handler(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _exit_now(code: int) -> None:
    """End the process with ``code`` after the atexit handlers, skipping the interpreter's teardown.

    The node has closed its resources by then (snapshot saved, node destroyed, rclpy shut
    down); tearing down torch, OpenVINO and ONNX Runtime module by module took another 3-7 s
    on 2 busy cores, during which a stopped graph still had processes (and a launch
    escalated to SIGTERM after 5 s).
    """
    import atexit
    import os
    atexit._run_exitfuncs()  # logging, coverage and the like still run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_node(factory: Callable[[], Node], *, multithreaded: bool = False, threads: int = 4, args=None,
             exit_process: bool = True) -> int:
    """Entry point of every node: init, build, (auto)start, spin, shut down cleanly (Humble compatible).

    Exits 0 on SIGINT / SIGTERM (within ~0.25 s while spinning), 2 when the node cannot start.
    With ``exit_process`` (the default) it ends the process itself once everything is
    closed (:func:`_exit_now`); else it returns the exit code.
    """
    code = _run_node(factory, multithreaded=multithreaded, threads=threads, args=args)
    if exit_process:
        _exit_now(code)
    return code


def _run_node(factory: Callable[[], Node], *, multithreaded: bool, threads: int, args) -> int:
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    _stop_on_signals()
    node = executor = None
    code = 0
    try:
        try:
            node = factory()
            forward_core_logging(node)
            if isinstance(node, ManagedNode) and node.get_parameter("autostart").value:
                if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                    raise RuntimeError(node.error or "configure failed")
                node.trigger_activate()
        except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as exc:
            # bad parameters, missing weights, unreadable source: one clear line, non-zero exit
            print(f"[person_search] cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        if multithreaded:
            from rclpy.executors import MultiThreadedExecutor
            executor = MultiThreadedExecutor(num_threads=threads)
        else:
            from rclpy.executors import SingleThreadedExecutor
            executor = SingleThreadedExecutor()
        executor.add_node(node)
        # short waits so that the Python signal handler runs promptly
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - shutdown must go on
                    print(f"[person_search] error while closing: {exc}", file=sys.stderr)
            node.destroy_node()
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown()
        # Shutting down is not finalising: the DDS participant and its 32 MiB shared-memory
        # segment go only when the context is destroyed, which the garbage collector would do
        # at interpreter teardown, and _exit_now skips that teardown.
        rclpy.get_default_context().destroy()
    return code

"""Thin rclpy nodes: parameters in, one core object, conversions, publish.

One module per node (``<name>_node.py``, declared in :mod:`person_search.graph.spec`) and
what they share, one module per job: ``qos`` (profiles, overridable publishers and
subscriptions), ``params`` (config sections as parameters), ``diagnostics`` (``StageStats``),
``logbridge`` (core ``logging`` -> node logger), ``lifecycle`` (``ManagedNode``), ``runner``
(``run_node``: every ``main``); ``convert`` is the one place that knows both messages and core types.

Importing this package ties a node process to the launcher that started it, where the
launcher asked for it with ``PERSON_SEARCH_PARENT_PID`` (the launch files do): the node gets
SIGTERM, which it handles as Ctrl-C, when that process dies, however it dies. ``ros2
launch`` ended by SIGTERM or SIGKILL does not stop its processes itself.
"""

import os
import signal
import sys


def _follow_parent() -> None:
    """Ask Linux for SIGTERM when the parent named by ``PERSON_SEARCH_PARENT_PID`` dies.

    The variable is taken out of the environment, so processes that a node starts are not
    tied to its launcher. A parent that is already gone (it died before this ran) ends the node.
    """
    want = os.environ.pop("PERSON_SEARCH_PARENT_PID", "")
    if not want or not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if want.isdigit() and os.getppid() != int(want):
        os._exit(0)


_follow_parent()

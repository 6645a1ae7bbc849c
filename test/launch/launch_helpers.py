"""Helpers of the launch tests: the real `ros2` command line and `ros2 launch` processes, seen through /proc."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import procs
from procs import alive  # noqa: F401 - the launch tests import it from here

NODE_EXECUTABLES = ("camera_node", "detector_node", "embedder_node", "index_node", "query_node")


def launch_file(name: str) -> str:
    """Return the installed launch file ``name`` (what ``ros2 launch person_search NAME`` runs)."""
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory("person_search"), "launch", name)


def node_processes(parent: int) -> dict:
    """Return {pid: fully qualified node name} of the person_search nodes that are children of ``parent``."""
    return procs.node_processes(parent, NODE_EXECUTABLES)


def wait_until(pred, timeout: float, what: str, step: float = 0.2):
    """Poll ``pred`` until it returns something true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def ros2(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Run the real ``ros2`` command line (no daemon: nothing is left running) and return its result."""
    exe = shutil.which("ros2")
    assert exe, "the ros2 command is not on PATH (tools/env.sh puts the venv's bin first)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


class RosLaunch:
    """``ros2 launch person_search FILE ARGS`` as a script starts it: SIGINT ignored, output to a file."""

    def __init__(self, file: str, args, log: Path):
        self.log = log
        self.out = open(log, "w")
        self.proc = subprocess.Popen(["ros2", "launch", "person_search", file, *args], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        self.seen = {}  # every node process ever seen: pid -> name

    def nodes(self) -> dict:
        now = node_processes(self.proc.pid)
        self.seen.update(now)
        return now

    def text(self) -> str:
        self.out.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int, timeout: float = 10.0) -> float:
        """Send ``sig`` to the launch process alone; return the seconds until it and every node are gone."""
        self.nodes()
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout + 5)
        except subprocess.TimeoutExpired:
            pass
        wait_until(lambda: not any(alive(p) for p in [self.proc.pid, *self.seen]), timeout + 5,
                   "the launch and its nodes to stop")
        return time.monotonic() - t0

    def kill(self):
        for pid in [*self.seen, *node_processes(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def ros2_until(check, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``ros2 ARGS`` until ``check(result)`` holds (DDS discovery of a fresh CLI node takes a while).

    Returns the last result; the caller asserts on it, so a timeout shows the last output.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = ros2(*args)
        if check(run) or time.monotonic() > deadline:
            return run
        time.sleep(1.0)

"""The graph's processes as Linux /proc shows them: children of a process, liveness, node names.

Shared by the tests that start `person-search up` or `ros2 launch` and check which node
processes run, were respawned or were left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Set


def children(pid: int) -> Set[int]:
    """Return the pids of the direct children of ``pid``."""
    out: Set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def node_processes(parent: int, executables: Sequence[str] = ()) -> Dict[int, str]:
    """Return {pid: fully qualified node name} of the live ROS node children of ``parent``.

    A node is a child whose command line names it (``__node:=``); ``executables`` keeps only
    those whose program (first or second argument, after an interpreter) ends with one of them.
    """
    out: Dict[int, str] = {}
    for pid in children(parent):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        name = next((a.split(":=", 1)[1] for a in argv if a.startswith("__node:=")), None)
        if name is None or not alive(pid):
            continue
        if executables and not any(a.endswith(tuple(executables)) for a in argv[:2]):
            continue
        ns = next((a.split(":=", 1)[1] for a in argv if a.startswith("__ns:=")), "")
        out[pid] = f"{ns}/{name}"
    return out


def shm_segments(pid: int) -> Set[str]:
    """Return the names of the Fast DDS segment files in /dev/shm whose lock ``pid`` holds (/proc/locks)."""
    inodes: Set[int] = set()
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[4] == str(pid):
            inodes.add(int(f[5].rsplit(":", 1)[1]))
    out: Set[str] = set()
    for p in Path("/dev/shm").glob("fastdds_*_el"):
        try:
            if p.stat().st_ino in inodes and "port" not in p.name:
                out.add(p.name[:-3])
        except OSError:
            pass
    return out

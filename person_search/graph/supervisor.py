"""Start the node set as one process per node, without the ``ros2 launch`` tool.

Used by ``person-search up``, ``person-search demo`` and the graph tests. The processes
come from :func:`person_search.graph.spec.node_set`, as do the launch files'.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from person_search.core.paths import package_share
from person_search.graph.shm import CleanReport, clean_stale_segments
from person_search.graph.spec import CameraSpec, NodeSpec, node_set

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"


def config_path(name_or_path: str) -> Path:
    """``cpu`` / ``test`` / ``orin`` or a path -> an existing YAML file."""
    p = Path(name_or_path)
    if p.is_file():
        return p.resolve()
    share = package_share()
    for d in (CONFIG_DIR, share / "config" if share is not None else None):
        if d is not None and (d / f"{name_or_path}.yaml").is_file():
            return (d / f"{name_or_path}.yaml").resolve()
    raise FileNotFoundError(f"config {name_or_path!r} not found (give a YAML path or one of: "
                            f"{', '.join(sorted(x.stem for x in CONFIG_DIR.glob('*.yaml')))})")


def _parent_death_hook():
    """Return a ``preexec_fn`` that ties a child to this process (Linux), or None elsewhere.

    The child gets SIGTERM when its parent dies, however it dies (SIGKILL, a closed
    terminal), so no node outlives the ``up`` that started it. A parent that died between
    fork and prctl is caught by comparing the parent pid.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return hook


class Graph:
    """The running processes of a node set; a context manager that always cleans up.

    Each node runs in its own session (a terminal's Ctrl-C reaches ``up`` alone, which then
    stops the nodes in order) and is tied to this process by a parent-death signal.
    """

    def __init__(self, specs: Sequence[NodeSpec], params_file: Path, *,
                 extra_params: Optional[Dict[str, object]] = None,
                 log_dir: Optional[Path] = None, env: Optional[Dict[str, str]] = None):
        self.specs = list(specs)
        self.params_file = Path(params_file)
        self.extra = dict(extra_params or {})
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.procs: Dict[str, subprocess.Popen] = {}
        self.started: Dict[str, float] = {}
        self.shm_freed = CleanReport()  # stale Fast DDS segments removed so far

    def clean_shm(self) -> CleanReport:
        """Remove the shared-memory segments of dead DDS processes; called at each start and stop.

        A node killed with SIGKILL leaves its 32 MiB segment in /dev/shm, which is RAM.
        """
        r = clean_stale_segments()
        self.shm_freed.removed += r.removed
        self.shm_freed.freed_bytes += r.freed_bytes
        return r

    def command(self, spec: NodeSpec) -> List[str]:
        params = dict(spec.parameters)
        params.update(self.extra)
        spec = NodeSpec(spec.name, spec.executable, spec.namespace, spec.remappings, params)
        return [sys.executable, "-m", spec.module] + spec.ros_args(str(self.params_file))

    def start(self, only: Optional[Sequence[str]] = None) -> "Graph":
        self.clean_shm()
        for spec in self.specs:
            if only is not None and spec.fqn not in only:
                continue
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / (spec.fqn.strip("/").replace("/", "_") + ".log"), "ab")
            self.procs[spec.fqn] = subprocess.Popen(self.command(spec), env=self.env, stdout=out,
                                                    stderr=subprocess.STDOUT if out else None,
                                                    start_new_session=True, preexec_fn=_parent_death_hook())
            self.started[spec.fqn] = time.monotonic()
        return self

    def stop(self, fqn: Optional[str] = None, *, sig: int = signal.SIGINT, timeout: float = 10.0) -> Dict[str, int]:
        """Stop one process (or all): SIGINT, then SIGKILL after ``timeout``. Returns exit codes."""
        names = [fqn] if fqn else list(self.procs)
        for n in names:
            p = self.procs.get(n)
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
        codes = {}
        deadline = time.monotonic() + timeout
        for n in names:
            p = self.procs.get(n)
            if p is None:
                continue
            try:
                codes[n] = p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                codes[n] = p.wait()
            if fqn:
                del self.procs[n]
        self.clean_shm()  # a process that had to be killed leaves its segments behind
        return codes

    def dead(self) -> Dict[str, int]:
        """Return the processes that have exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def wait_until(self, pred, timeout: float, what: str, poll_s: float = 0.3) -> None:
        """Wait for ``pred()``; AssertionError on timeout or when a node (not a camera) exits meanwhile."""
        deadline = time.monotonic() + timeout
        while not pred():
            dead = {n: c for n, c in self.dead().items() if not n.endswith("/camera")}
            if dead:
                raise AssertionError(f"node(s) exited while waiting for {what}: {dead}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(poll_s)

    def __enter__(self) -> "Graph":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Respawner:
    """Restart the nodes of a running graph that die, with exponential backoff.

    A camera that ends its file with exit code 0 stays down; a node that cannot start (exit
    code 2: bad parameters, missing weights) or dies more than ``max_restarts`` times in a
    row stops the whole graph. A node that ran for ``stable_s`` has its backoff reset.
    """

    def __init__(self, graph: Graph, *, max_restarts: int = 10, initial_s: float = 1.0, max_s: float = 30.0,
                 stable_s: float = 60.0, log=print):
        self.graph = graph
        self.max_restarts = max_restarts
        self.initial_s, self.max_s, self.stable_s = initial_s, max_s, stable_s
        self.log = log
        self.restarts: Dict[str, int] = {}
        self.due: Dict[str, float] = {}

    def step(self, now: Optional[float] = None) -> Optional[str]:
        """Schedule and perform restarts; return why the graph must stop, or None."""
        now = time.monotonic() if now is None else now
        for name, code in self.graph.dead().items():
            if name.endswith("/camera") and code == 0:
                continue  # a file source that ended
            if code == 2:
                return f"node {name} cannot start (exit code 2, see its log)"
            if name not in self.due:
                if now - self.graph.started.get(name, now) >= self.stable_s:
                    self.restarts[name] = 0
                n = self.restarts.get(name, 0) + 1
                if n > self.max_restarts:
                    return f"node {name} died {n - 1} times in a row (last exit code {code})"
                self.restarts[name] = n
                delay = min(self.max_s, self.initial_s * 2 ** (n - 1))
                self.due[name] = now + delay
                self.log(f"node {name} exited with code {code}; restarting it in {delay:.1f} s (restart {n})")
            elif now >= self.due[name]:
                del self.due[name]
                self.graph.start(only=[name])
        return None


def make_graph(config: str, cameras: Sequence[CameraSpec], *, loop: Optional[bool] = None,
               extra_params: Optional[Dict[str, object]] = None, log_dir: Optional[Path] = None,
               namespace: str = "", image_transport: Optional[str] = None, web: bool = False,
               web_params: Optional[Dict[str, object]] = None) -> Graph:
    """Build the :class:`Graph` of ``node_set(...)`` with a config name or YAML path."""
    return Graph(node_set(cameras, loop=loop, namespace=namespace, image_transport=image_transport, web=web,
                          web_params=web_params),
                 config_path(config), extra_params=extra_params, log_dir=log_dir)

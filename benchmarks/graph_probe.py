"""What the graph benchmarks share: a node that keeps the latest /diagnostics of every stage.

Not a test helper: benchmarks only.
"""

from __future__ import annotations

import os
import threading
from typing import Dict


def private_domain(base: int = 110) -> str:
    """Put this process (and the nodes it starts) in its own DDS domain, unless one is set.

    Other graphs on the machine (tests, other benchmarks) must not mix in.
    """
    os.environ.setdefault("ROS_DOMAIN_ID", str(base + os.getpid() % 100))
    return os.environ["ROS_DOMAIN_ID"]


def background_node(name: str, threads: int = 2):
    """Return (node, executor): a node of this process (rclpy initialised on demand) spun on a daemon thread."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node(f"{name}_{os.getpid()}")
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    return node, executor


class DiagnosticsProbe:
    """Subscribe to /diagnostics on a background executor; ``latest()`` returns a copy."""

    def __init__(self, name: str = "bench_probe"):
        from diagnostic_msgs.msg import DiagnosticArray

        self._lock = threading.Lock()
        self._last: Dict[str, Dict[str, str]] = {}
        self.node, self.executor = background_node(name, threads=4)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_diag(self, msg) -> None:
        with self._lock:
            for st in msg.status:
                self._last[st.name] = {kv.key: kv.value for kv in st.values}

    def latest(self) -> Dict[str, Dict[str, str]]:
        """Return the last diagnostics of every stage seen so far."""
        with self._lock:
            return {k: dict(v) for k, v in self._last.items()}

    def stage(self, suffix: str) -> Dict[str, str]:
        """Return the last diagnostics of the stage whose name ends with ``suffix`` ({} if none)."""
        return next((v for k, v in self.latest().items() if k.endswith(suffix)), {})

    def count(self, suffix: str) -> int:
        """Return the output count a stage reported last (0 if none)."""
        return int(self.stage(suffix).get("count", 0))

    def close(self) -> None:
        """Stop the executor and the node."""
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown()

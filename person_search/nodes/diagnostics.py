"""Each stage's rate, latency, age and drops on ``/diagnostics`` (:class:`StageStats`): one clock for all."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Dict, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node


def _message_info_supported() -> bool:
    """Tell whether rclpy hands subscription callbacks the message info (Iron and newer; not Humble)."""
    from rclpy.subscription import Subscription
    kinds = getattr(Subscription, "CallbackType", None)
    return kinds is not None and hasattr(kinds, "WithMessageInfo")


def quantiles_ms(key: str, data) -> Dict[str, str]:
    """``{key}_p50_ms``, ``_p95_ms``, ``_p99_ms`` (nearest rank) of seconds; "0.0" when empty."""
    q = sorted(data)
    out = {}
    for name, p in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        out[f"{key}_{name}_ms"] = f"{1e3 * q[min(len(q) - 1, int(p * len(q)))]:.1f}" if q else "0.0"
    return out


class StageStats:
    """Rate, latency and drops of one stage, published on /diagnostics: one clock for all.

    Every figure is on the node clock (the wall clock unless ``use_sim_time``), the clock
    the camera stamps frames with at capture:

    * ``age``: capture -> this stage's output leaves (now - header stamp); at the index,
      capture -> searchable;
    * ``wait``: the input's queue wait, from the moment the upstream stage sent the message
      (DDS source timestamp) to the start of this stage's callback (transport + the time it
      sat in the subscription's queue); "n/a" on Humble, whose rclpy does not give callbacks
      the message info;
    * ``latency`` (work): the stage's own time, from the start of its callback to its output;
    * ``samples(key, s)``: more distributions (the embedder's first seen -> searchable).

    Each as p50 / p95 / p99 over the last ``window`` outputs.
    """

    def __init__(self, node: Node, name: str, period_s: float = 2.0, window: int = 600):
        self._node = node
        self._name = f"{node.get_namespace().rstrip('/')}/{node.get_name()}: {name}"
        self._window = window
        self._times = deque(maxlen=window)
        self._lat = deque(maxlen=window)
        self._age = deque(maxlen=window)
        self._wait = deque(maxlen=window)
        self._more: Dict[str, deque] = {}
        self._arrived_ns = 0
        self._sent_ns = 0
        self._timed = False
        self.count = 0
        self.drops = 0
        self.errors = 0
        self.extra: Dict[str, Any] = {}
        self._pub = node.create_publisher(DiagnosticArray, "diagnostics", 10)
        node.create_timer(period_s, self.publish)

    def timed(self, callback: Callable) -> Callable:
        """Wrap a subscription callback: note the message's arrival and send time, then call it."""
        self._timed = True
        if _message_info_supported():
            def with_info(msg, info):
                self.begin(int(info.get("source_timestamp", 0) or 0) if isinstance(info, dict) else 0)
                callback(msg)
            return with_info

        def without_info(msg):
            self.begin(0)
            callback(msg)
        return without_info

    def begin(self, sent_ns: int = 0) -> None:
        """Mark the arrival of one input message (``sent_ns``: when its publisher sent it, 0 = unknown)."""
        self._arrived_ns = time.time_ns()  # DDS source timestamps are on the system clock
        self._sent_ns = sent_ns

    def sample(self, key: str, seconds: float) -> None:
        """Add one value (s) to the distribution ``key`` (published as ``key_p50_ms`` etc.)."""
        self._more.setdefault(key, deque(maxlen=self._window)).append(max(0.0, seconds))

    def tick(self, latency_s: Optional[float] = None, stamp=None) -> None:
        """Count one output; ``stamp`` (builtin_interfaces/Time of the source frame) gives its age.

        In a callback wrapped by `timed`, the work is measured from the message's arrival
        (``latency_s`` is then ignored) and the queue wait is recorded.
        """
        self.count += 1
        self._times.append(time.monotonic())
        if self._arrived_ns:
            self._lat.append(max(0.0, (time.time_ns() - self._arrived_ns) / 1e9))
            if self._sent_ns:
                self._wait.append(max(0.0, (self._arrived_ns - self._sent_ns) / 1e9))
            self._arrived_ns = self._sent_ns = 0
        elif latency_s is not None:
            self._lat.append(latency_s)
        if stamp is not None:
            now = self._node.get_clock().now().nanoseconds
            self._age.append(max(0.0, (now - stamp.sec * 1_000_000_000 - stamp.nanosec) / 1e9))

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def values(self) -> Dict[str, str]:
        """Return what `publish` sends, as strings."""
        values = {"rate_hz": f"{self.rate():.2f}", "count": str(self.count), "drops": str(self.drops),
                  "errors": str(self.errors)}
        values.update(quantiles_ms("latency", self._lat))
        values.update(quantiles_ms("age", self._age))
        if self._timed:
            values.update(quantiles_ms("wait", self._wait) if self._wait else
                          {f"wait_{p}_ms": "n/a" for p in ("p50", "p95", "p99")})
        for key, data in self._more.items():
            values.update(quantiles_ms(key, data))
        values.update({k: str(v) for k, v in self.extra.items()})
        return values

    def publish(self) -> None:
        values = self.values()
        st = DiagnosticStatus(level=DiagnosticStatus.OK if not self.errors else DiagnosticStatus.WARN,
                              name=self._name, message="running", hardware_id=self._node.get_name(),
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [st]
        self._pub.publish(msg)

"""QoS of the graph's topics and services, and publishers / subscriptions whose QoS parameters can override."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

if TYPE_CHECKING:
    from person_search.nodes.diagnostics import StageStats

# Every publisher and subscription takes this: users tune QoS from the parameter file,
# e.g. `qos_overrides./cam0/image_raw.subscription.reliability: reliable`.
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()


def sensor_qos(reliable: bool = False) -> QoSProfile:
    """Image streams: best effort, keep last 1 (the newest frame wins); reliable when asked."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# services: many clients at once (a depth-10 history, the rclpy default, loses requests and
# responses when more than 10 calls are in flight: measured with benchmarks/bench_load.py)
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def publisher(node: Node, msg_type, topic: str, qos: QoSProfile, **kw):
    """Create a publisher whose QoS can be overridden from parameters."""
    return node.create_publisher(msg_type, topic, qos, qos_overriding_options=QOS_OVERRIDES, **kw)


def subscription(node: Node, msg_type, topic: str, callback, qos: QoSProfile, *, stats: "StageStats" = None, **kw):
    """Create a subscription whose QoS can be overridden from parameters.

    With ``stats`` (the stage's input), every message's arrival and the time its publisher
    sent it are given to `StageStats` first, so that the stage's queue wait is measured.
    """
    if stats is not None:
        callback = stats.timed(callback)
    return node.create_subscription(msg_type, topic, callback, qos, qos_overriding_options=QOS_OVERRIDES, **kw)

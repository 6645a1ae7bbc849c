"""`StageStats` on one clock, in one process with real rclpy and DDS: age, queue wait and work of a stage."""

from __future__ import annotations

import os
import time

import pytest

rclpy = pytest.importorskip("rclpy")


def test_stage_stats_age_wait_and_work_on_the_node_clock():
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage

    from person_search.nodes.diagnostics import StageStats, _message_info_supported
    from person_search.nodes.qos import RELIABLE_QOS, subscription
    from person_search.nodes.convert import ns_to_time

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node(f"stage_clock_{os.getpid()}", context=ctx)
        stats = StageStats(node, "probe", period_s=60.0)
        got = []

        def on_msg(msg):
            time.sleep(0.030)  # the stage's own work
            got.append(msg)
            stats.tick(None, msg.header.stamp)

        subscription(node, CompressedImage, "stage_clock_in", on_msg, RELIABLE_QOS, stats=stats)
        pub = node.create_publisher(CompressedImage, "stage_clock_in", RELIABLE_QOS)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        for _ in range(5):  # captured 300 ms ago; sent now; waits in the queue behind the previous ones
            msg = CompressedImage()
            msg.header.stamp = ns_to_time(node.get_clock().now().nanoseconds - 300_000_000)
            pub.publish(msg)
        while len(got) < 5 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        values = stats.values()
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert len(got) == 5
    assert 300 <= float(values["age_p50_ms"]) < 5000  # capture -> output leaves, node clock
    assert float(values["age_p99_ms"]) >= float(values["age_p50_ms"])
    assert 30 <= float(values["latency_p50_ms"]) < 1000  # the callback's own work
    if _message_info_supported():
        # sent -> callback start: the 5th message waited behind 4 callbacks of 30 ms
        assert float(values["wait_p99_ms"]) >= 90 and float(values["wait_p50_ms"]) < 300
    else:  # Humble: no message info in callbacks
        assert values["wait_p50_ms"] == "n/a"

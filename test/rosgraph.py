"""What the graph tests of test/ros and test/launch share: real rclpy, real DDS, the nodes as separate processes.

The fixtures (``sample_video``, ``probe``) are imported by test/ros/conftest.py and
test/launch/conftest.py; :class:`Probe` is the test-side node.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

# Graph tests of parallel sessions on one machine (same user, loopback discovery) would see
# each other's /cam0/detector, /query_person ...: each test session takes its own DDS domain
# unless the caller chose one. The node processes inherit it.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

try:  # absent: test/conftest.py turns each test file here into one skip (a failure in CI)
    import rclpy
    from person_search_interfaces.srv import QueryPerson
except ImportError:  # pragma: no cover - depends on the machine
    rclpy = QueryPerson = None


class Probe:
    """A test-side node on a background executor: records topics and calls services."""

    def __init__(self):
        from person_search_interfaces.msg import PersonCrops
        from std_msgs.msg import Int64
        from person_search.nodes.qos import RELIABLE_QOS
        from rclpy.executors import MultiThreadedExecutor
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node(f"test_probe_{os.getpid()}")
        self.lock = threading.Lock()
        self.sizes = []
        self.crops = []  # (frame_id, stamp_ns, [track ids])
        self.node.create_subscription(Int64, "/index/gallery_size", self._on_size, RELIABLE_QOS)
        self.node.create_subscription(PersonCrops, "/person_crops", self._on_crops, RELIABLE_QOS)
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from person_search.nodes.qos import sensor_qos
        self.diagnostics = {}
        self.overlays = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.node.create_subscription(Image, "/cam0/overlay", self._on_overlay, sensor_qos(False))
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_size(self, msg):
        with self.lock:
            self.sizes.append((time.monotonic(), int(msg.data)))

    def _on_crops(self, msg):
        from person_search.nodes.convert import time_to_ns
        with self.lock:
            ids = [int(p.track_id) for p in msg.people]
            self.crops.append((msg.header.frame_id, time_to_ns(msg.header.stamp), ids))

    def _on_diag(self, msg):
        with self.lock:
            for st in msg.status:
                self.diagnostics[st.name] = {kv.key: kv.value for kv in st.values}

    def _on_overlay(self, msg):
        with self.lock:
            self.overlays.append(msg)
            del self.overlays[:-5]

    def last_size(self) -> int:
        with self.lock:
            return self.sizes[-1][1] if self.sizes else 0

    def published_tracks(self):
        with self.lock:
            return {(cam, t) for cam, _, ids in self.crops for t in ids}

    def wait_for(self, pred, timeout: float, what: str, graph=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if graph is not None:
                dead = {n: c for n, c in graph.dead().items() if not n.endswith("/camera")}
                assert not dead, f"node(s) died while waiting for {what}: {dead}"
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        """Call service ``name`` and return the response (asserts it appears and answers in time)."""
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"{name} never appeared"
            fut = client.call_async(request)
            done = threading.Event()
            fut.add_done_callback(lambda _f: done.set())
            assert done.wait(timeout), f"{name} did not answer within {timeout} s"
            return fut.result()
        finally:
            self.node.destroy_client(client)

    def query(self, description, top_k=5, timeout=30.0, service="/query_person", **kw):
        return self.call(QueryPerson, service, QueryPerson.Request(description=description, top_k=top_k, **kw),
                         timeout)

    def set_params(self, node: str, values: dict):
        """Set parameters of ``node`` over its set_parameters service; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                for k, v in values.items()])
        return self.call(SetParameters, f"{node}/set_parameters", req).results

    def lifecycle(self, node: str, transition: int = -1) -> str:
        """Trigger ``transition`` (lifecycle_msgs/Transition id; -1 = none) and return the state label."""
        from lifecycle_msgs.srv import ChangeState, GetState
        if transition >= 0:
            req = ChangeState.Request()
            req.transition.id = transition
            assert self.call(ChangeState, f"{node}/change_state", req).success, (node, transition)
        return self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> Path:
    from person_search.demo.sample import make_sample_video
    return make_sample_video(tmp_path_factory.mktemp("video") / "sample.mp4", seconds=4.0)


@pytest.fixture(scope="module")
def probe():
    p = Probe()
    yield p
    p.close()
    rclpy.try_shutdown()

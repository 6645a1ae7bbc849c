"""The console's side of the graph: one rclpy node on a background executor thread.

It uses only the graph's public interfaces: ``NS/query_person`` (and ``NS/find_similar``
where the re-id service exists), ``/diagnostics``, every ``NS/<camera>/overlay`` image
topic it discovers, and ``NS/person_crops`` for the track timelines.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict, deque
from typing import Dict, List, Optional, Tuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from person_search.nodes.convert import ns_to_time, time_to_ns
from person_search.nodes.diagnostics import StageStats
from person_search.nodes.qos import RELIABLE_QOS, SERVICE_QOS, sensor_qos
from person_search.web.config import WebConfig
from person_search.web.params import SearchParams
from person_search.web.store import HealthBoard, ImageStore, TimelinePoint, Timelines, match_row

RESEND_S = 5.0  # a request sent while DDS still matches the reply path can be lost: ask once more
MAX_TRACKS = 5000


def _guarded(method):
    """Log (throttled) instead of raising out of a ROS callback: one bad message must not stop the executor."""
    def run(self, *args):
        try:
            return method(self, *args)
        except Exception as exc:  # noqa: BLE001 - malformed input from the graph; the console carries on
            self.node.get_logger().warning(f"{method.__name__}: {type(exc).__name__}: {exc}",
                                           throttle_duration_sec=10.0)
    run.__name__ = method.__name__
    return run


class GraphError(RuntimeError):
    """The graph could not answer (``status`` is the HTTP status to report: 503 or 504)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Feed:
    """The latest overlay frame of one camera; JPEG-encoded on demand, once per frame."""

    def __init__(self, name: str, topic: str):
        self.name, self.topic = name, topic
        self.msg: Optional[Image] = None
        self.seq = 0
        self.received = 0.0
        self.times: deque = deque(maxlen=30)
        self._jpeg: Tuple[int, bytes] = (0, b"")
        self._lock = threading.Lock()

    def on_image(self, msg: Image) -> None:
        with self._lock:
            self.msg = msg
            self.seq += 1
            self.received = time.monotonic()
            self.times.append(self.received)

    def info(self) -> dict:
        with self._lock:
            t = list(self.times)
            msg = self.msg
            seq, received = self.seq, self.received
        fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        return {"name": self.name, "topic": self.topic, "seq": seq, "fps": round(fps, 2),
                "age_s": round(time.monotonic() - received, 2) if msg is not None else None,
                "width": int(msg.width) if msg is not None else 0, "height": int(msg.height) if msg is not None else 0,
                "stamp_ns": time_to_ns(msg.header.stamp) if msg is not None else 0}

    def jpeg(self, max_width: int) -> Tuple[int, bytes]:
        """Return (seq, JPEG) of the newest frame ((0, b"") before the first one)."""
        import cv2

        from person_search.nodes.convert import image_to_bgr
        with self._lock:
            msg, seq = self.msg, self.seq
            if msg is None or self._jpeg[0] == seq:
                return self._jpeg
        img = image_to_bgr(msg)
        if img.shape[1] > max_width:
            h = max(1, round(img.shape[0] * max_width / img.shape[1]))
            img = cv2.resize(img, (max_width, h), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])
        out = (seq, buf.tobytes() if ok else b"")
        with self._lock:
            if out[0] >= self._jpeg[0]:
                self._jpeg = out
        return out


class GraphBridge:
    """Query the graph, watch its health and cameras, remember recent tracks.

    Args:
        node: an rclpy node in the graph's namespace (its name and namespace are the console's).
        cfg: the console's settings.
    """

    def __init__(self, node: Node, cfg: WebConfig):
        from person_search_interfaces.srv import QueryPerson
        self.node, self.cfg = node, cfg
        self.namespace = node.get_namespace().rstrip("/")
        self.answers = ImageStore(int(cfg.image_cache_mb * 2 ** 20))
        self.timeline_images = ImageStore(int(max(cfg.timeline_cache_mb, 0.0) * 2 ** 20))
        self.timelines = Timelines(self.timeline_images, max_points=cfg.timeline_points)
        self.health = HealthBoard(cfg.stale_s, prefix=self.namespace)
        self.feeds: Dict[str, Feed] = {}
        self.tracks: "OrderedDict[Tuple[str, int], dict]" = OrderedDict()
        self._tracks_lock = threading.Lock()
        self.QueryPerson = QueryPerson
        self.query_client = node.create_client(QueryPerson, "query_person", qos_profile=SERVICE_QOS)
        self.FindSimilar = None
        self.similar_client = None
        try:  # the re-identification service, where the interfaces package has it
            from person_search_interfaces.srv import FindSimilar
            self.FindSimilar = FindSimilar
            self.similar_client = node.create_client(FindSimilar, "find_similar", qos_profile=SERVICE_QOS)
        except ImportError:
            pass
        from person_search_interfaces.msg import PersonMatch
        self.reid_fields = "person_id" in PersonMatch.get_fields_and_field_types()
        self.crops_topic = node.resolve_topic_name("person_crops")
        self._crops_sub = None
        self._overlay_re = re.compile("^" + re.escape(self.namespace) + r"/([A-Za-z][A-Za-z0-9_]*)/overlay$")
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        node.create_timer(1.0, self._discover)
        self.stats = StageStats(node, "web")
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(node)
        self._thread: Optional[threading.Thread] = None

    # ---- ROS thread ----------------------------------------------------------------------
    def start(self) -> "GraphBridge":
        """Spin the node on a daemon thread and look for cameras at once."""
        self._thread = threading.Thread(target=self._spin, name="ros-executor", daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        try:
            self._discover()
            self.executor.spin()
        except Exception:  # noqa: BLE001 - executor shut down while the process exits
            if rclpy.ok():
                raise

    def close(self) -> None:
        """Stop the executor, wait for its thread, destroy the node (in that order: no wait set outlives it)."""
        self.executor.shutdown(timeout_sec=2.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.node.destroy_node()

    @_guarded
    def _discover(self) -> None:
        """Subscribe to overlay topics that appeared, and to person_crops once a graph consumes it."""
        for topic, types in self.node.get_topic_names_and_types():
            m = self._overlay_re.match(topic)
            if m and "sensor_msgs/msg/Image" in types and m.group(1) not in self.feeds:
                feed = Feed(m.group(1), topic)
                self.node.create_subscription(Image, topic, feed.on_image, sensor_qos(False))
                self.feeds[feed.name] = feed
        # subscribing before the embedder would make the detectors start early (they wait for a
        # person_crops subscriber so that no frame of a file is lost): join once one is there
        if (self._crops_sub is None and self.cfg.timeline_cache_mb > 0
                and self.node.count_subscribers(self.crops_topic) > 0):
            from person_search_interfaces.msg import PersonCrops
            self._crops_sub = self.node.create_subscription(PersonCrops, self.crops_topic, self._on_crops,
                                                            RELIABLE_QOS)

    @_guarded
    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            self.health.update(st.name, int.from_bytes(st.level, "little") if isinstance(st.level, bytes)
                               else int(st.level), st.message, {kv.key: kv.value for kv in st.values})

    @_guarded
    def _on_crops(self, msg) -> None:
        camera = msg.header.frame_id
        stamp = time_to_ns(msg.header.stamp)
        frame_id = None
        for p in msg.people:
            if not self.timelines.wants(camera, int(p.track_id), stamp):
                continue
            if frame_id is None:
                frame_id = self.timeline_images.put(bytes(msg.frame_thumbnail.data))
            crop_id = self.timeline_images.put(bytes(p.crop.data))
            if crop_id:
                self.timelines.add(camera, int(p.track_id), TimelinePoint(
                    stamp, crop_id, frame_id, tuple(float(v) for v in p.box),
                    (int(msg.frame_width), int(msg.frame_height))))

    # ---- HTTP thread ---------------------------------------------------------------------
    async def _call(self, client, request, what: str):
        """Call ``client`` without blocking the event loop; GraphError on absence or timeout."""
        loop = asyncio.get_running_loop()
        t_end = loop.time() + self.cfg.service_wait_s
        while not client.service_is_ready():
            if loop.time() >= t_end:
                ns = f" in namespace {self.namespace}" if self.namespace else ""
                name = self.node.resolve_service_name(client.srv_name)
                raise GraphError(f"the {what} service {name} is not available: is the graph up{ns} "
                                 f"(person-search up), with the same ROS_DOMAIN_ID?", 503)
            await asyncio.sleep(0.05)
        deadline = loop.time() + self.cfg.query_timeout_s
        sent = 0
        while True:
            done = loop.create_future()

            def settle(f, done=done):
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(f))
            rfut = client.call_async(request)
            sent += 1
            rfut.add_done_callback(settle)
            wait = deadline - loop.time() if sent > 1 else min(RESEND_S, deadline - loop.time())
            try:
                f = await asyncio.wait_for(done, max(0.01, wait))
                return f.result()
            except asyncio.TimeoutError:
                client.remove_pending_request(rfut)
                if sent > 1 or loop.time() >= deadline:
                    self.stats.drops += 1
                    raise GraphError(f"the graph did not answer the {what} within {self.cfg.query_timeout_s:g} s "
                                     f"(is the query node running and not overloaded?)", 504) from None

    async def search(self, p: SearchParams) -> Tuple[str, List[dict], float]:
        """Ask /query_person; return (message, match rows, service round trip in ms). GraphError or ValueError."""
        req = self.QueryPerson.Request(description=p.q, top_k=p.top_k, min_score=p.min_score, camera=p.camera,
                                       last_s=p.last_s, return_crops=True, return_frames=p.frames)
        req.since, req.until = ns_to_time(p.since_ns), ns_to_time(p.until_ns)
        if p.by and hasattr(req, "by_track"):
            req.by_track = p.by == "track"
        t0 = time.perf_counter()
        resp = await self._call(self.query_client, req, "search")
        ms = 1e3 * (time.perf_counter() - t0)
        if not resp.success:
            self.stats.errors += 1
            raise ValueError(resp.message or "the query was refused")
        self.stats.tick(latency_s=ms / 1e3)
        return resp.message, self.rows(resp.matches), ms

    async def similar(self, camera: str, track_id: int, top_k: int, person_id: int = -1) -> Tuple[str, List[dict]]:
        """Ask the re-id service for tracks like this one (re-id graphs only); errors as :meth:`search`."""
        if self.similar_client is None:
            raise GraphError("this graph's interfaces have no find_similar service (re-identification)", 501)
        req = self.FindSimilar.Request()
        for k, v in (("track_id", track_id), ("camera", camera), ("person_id", person_id), ("top_k", top_k)):
            if hasattr(req, k):
                setattr(req, k, v)
        resp = await self._call(self.similar_client, req, "find-similar")
        if not resp.success:
            raise ValueError(resp.message or "find_similar was refused")
        return resp.message, self.rows(resp.matches)

    def rows(self, matches) -> List[dict]:
        """Turn PersonMatch messages into JSON rows; their images go to the cache under new ids."""
        out = []
        for m in matches:
            row = match_row(m, self.answers)
            out.append(row)
            with self._tracks_lock:
                key = (row["camera"], row["track_id"])
                old = self.tracks.get(key)
                if old is not None and row["frame_url"] is None:
                    row = dict(row, frame_url=old.get("frame_url"))
                self.tracks[key] = row
                self.tracks.move_to_end(key)
                while len(self.tracks) > MAX_TRACKS:
                    self.tracks.popitem(last=False)
        return out

    def track(self, camera: str, track_id: int) -> Optional[dict]:
        """Return the track's last answer row and its timeline (None when this console never saw it)."""
        with self._tracks_lock:
            row = self.tracks.get((camera, track_id))
        points = self.timelines.points(camera, track_id)
        if row is None and not points:
            return None
        timeline = [{"stamp_ns": p.stamp_ns, "crop_url": f"/api/timeline/{p.crop_id}",
                     "frame_url": f"/api/timeline/{p.frame_id}" if p.frame_id and p.frame_id in self.timeline_images
                     else None, "box": list(p.box), "frame_size": list(p.frame_size)} for p in points]
        return {"track": row or {"track_id": track_id, "camera": camera}, "timeline": timeline}

    def cameras(self) -> List[dict]:
        feeds = dict(self.feeds)  # a copy: the ROS thread adds cameras as they appear
        return [feeds[k].info() for k in sorted(feeds)]

    def info(self) -> dict:
        return {"namespace": self.namespace or "/",
                "query_service": self.node.resolve_service_name(self.query_client.srv_name),
                "query_service_ready": self.query_client.service_is_ready(),
                "find_similar": self.similar_client is not None, "person_ids": self.reid_fields,
                "node": self.node.get_fully_qualified_name()}

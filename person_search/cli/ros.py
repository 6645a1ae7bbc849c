"""ROS 2 commands of ``person-search``: ``up`` (start the graph), ``query``, ``demo``."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from person_search.cli.common import (check_descriptions, float_above, int_at_least, match_row, parse_sets,
                                      print_json, print_matches, require_clip_weights)

EXIT_FAILED, EXIT_TIMEOUT = 1, 3


def query_service(description: str, *, top_k: int = 0, min_score: float = 0.0, camera: str = "",
                  last_s: float = 0.0, return_crops: bool = True, return_frames: bool = False,
                  timeout: float = 30.0, namespace: str = "", resend_s: float = 5.0, by_track: bool = False):
    """Call ``<namespace>/query_person`` through rclpy; returns the response (raises TimeoutError)."""
    from person_search_interfaces.srv import QueryPerson
    req = QueryPerson.Request(description=description, top_k=int(top_k), min_score=float(min_score),
                              camera=camera, last_s=float(last_s), return_crops=bool(return_crops),
                              return_frames=bool(return_frames), by_track=bool(by_track))
    return call_service(QueryPerson, "query_person", req, timeout=timeout, namespace=namespace, resend_s=resend_s)


def find_similar_service(*, track_id: int = 0, camera: str = "", person_id: int = 0, image: bytes = b"",
                         top_k: int = 0, timeout: float = 30.0, namespace: str = ""):
    """Call ``<namespace>/find_similar`` (a track, a person or an image); returns the response."""
    from sensor_msgs.msg import CompressedImage
    from person_search_interfaces.srv import FindSimilar
    req = FindSimilar.Request(track_id=int(track_id), camera=camera, person_id=int(person_id), top_k=int(top_k),
                              image=CompressedImage(format="jpeg", data=image))
    return call_service(FindSimilar, "find_similar", req, timeout=timeout, namespace=namespace)


def call_service(srv_type, name: str, req, *, timeout: float = 30.0, namespace: str = "", resend_s: float = 5.0):
    """Call ``<namespace>/<name>`` through rclpy; returns the response (raises TimeoutError)."""
    import rclpy
    from person_search.graph import normalize_namespace
    service = f"{normalize_namespace(namespace)}/{name}"
    own = not rclpy.ok()
    if own:
        rclpy.init()
    node = rclpy.create_node(f"person_search_cli_{os.getpid()}")
    try:
        from person_search.nodes.qos import SERVICE_QOS
        client = node.create_client(srv_type, service, qos_profile=SERVICE_QOS)
        deadline = time.monotonic() + timeout
        while not client.wait_for_service(timeout_sec=0.5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {service} not available after {timeout:.0f} s: is the graph up "
                                   f"(person-search up), in this namespace, with the same ROS_DOMAIN_ID?")
        # a request sent while DDS is still matching the reply path (the service just came up)
        # can get no answer: ask again every `resend_s` (a query has no side effects)
        while True:
            fut = client.call_async(req)
            wait = max(0.1, min(resend_s, deadline - time.monotonic()))
            rclpy.spin_until_future_complete(node, fut, timeout_sec=wait)
            if fut.done():
                return fut.result()
            client.remove_pending_request(fut)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from {service} within {timeout:.0f} s")
    finally:
        node.destroy_node()
        if own:
            rclpy.try_shutdown()


def response_rows(resp) -> List[dict]:
    """Turn a QueryPerson response into match rows (JPEG crop and frame bytes ride along)."""
    from person_search.nodes.convert import time_to_ns
    return [match_row(track_id=m.track_id, camera=m.camera_frame_id, score=m.score,
                      first_seen_ns=time_to_ns(m.first_seen), last_seen_ns=time_to_ns(m.last_seen),
                      box=m.box, crop=bytes(m.crop.data), frame=bytes(m.frame.data), person_id=int(m.person_id),
                      person_tracks=[f"{c}/{t}" for c, t in zip(m.cameras, m.person_track_ids)])
            for m in resp.matches]


def save_match_images(rows: List[dict], out_dir: Path) -> List[Path]:
    """Write the JPEG crop and frame of each row, as received, under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, r in enumerate(rows, 1):
        for kind in ("crop", "frame"):
            if r[kind]:
                p = out_dir / f"{i:02d}_{r['camera']}_track{r['track_id']}_{kind}.jpg"
                p.write_bytes(r[kind])
                paths.append(p)
    return paths


def json_rows(rows: List[dict]) -> List[dict]:
    """Return the rows without image bytes (for ``--json``)."""
    return [{k: v for k, v in r.items() if k not in ("crop", "frame")} for r in rows]


def _similar(a):
    """Call find_similar for ``--like`` / ``--person`` / ``--image`` (None = not such a query)."""
    if a.like is None and a.person is None and a.image is None:
        return None
    if sum(x is not None for x in (a.like, a.person, a.image)) > 1 or a.description:
        raise ValueError("give one of: a description, --like TRACK_ID, --person ID, --image FILE")
    image = b""
    if a.image is not None:
        path = Path(a.image)
        if not path.is_file():
            raise ValueError(f"--image {path}: no such file")
        image = path.read_bytes()
        import cv2
        import numpy as np
        if cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR) is None:
            raise ValueError(f"--image {path}: not a JPEG/PNG image")
    return find_similar_service(track_id=a.like or 0, camera=a.camera if a.like is not None else "",
                                person_id=a.person or 0, image=image, top_k=a.top_k, timeout=a.timeout,
                                namespace=a.namespace)


def cmd_query(a) -> int:
    """Ask query_person (a description) or find_similar (--like / --person / --image) and print the matches."""
    if a.like is None and a.person is None and a.image is None:
        check_descriptions([a.description], max_chars=100_000)  # the service applies its own length limit
    try:
        resp = _similar(a)
        if resp is None:
            if not a.description:
                raise ValueError("give a description, or --like TRACK_ID, --person ID or --image FILE")
            resp = query_service(a.description, top_k=a.top_k, min_score=a.min_score, camera=a.camera,
                                 last_s=a.last_s, return_crops=bool(a.save_crops), return_frames=a.frames,
                                 timeout=a.timeout, namespace=a.namespace, by_track=a.by_track)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    if not resp.success:
        print(f"error: {resp.message}", file=sys.stderr)
        return EXIT_FAILED
    rows = response_rows(resp)
    saved = save_match_images(rows, Path(a.save_crops)) if a.save_crops else []
    if a.json:
        print_json({"message": resp.message, "matches": json_rows(rows), "saved": [str(p) for p in saved]})
        return 0
    print(f"{resp.message}")
    print_matches(rows)
    for i, r in enumerate(rows, 1):
        if r["person_id"] >= 0 and len(r["person_tracks"]) > 1:
            print(f"  #{i} person {r['person_id']}: tracks {', '.join(r['person_tracks'])}")
    for p in saved:
        print(f"saved {p}")
    return 0


def _graph_from_args(a, *, loop=None):
    from person_search.graph import CameraSpec, make_graph, parse_cameras
    if a.image_topic and a.camera:
        raise ValueError("--image-topic replaces the camera node of cam0; it cannot be combined with --camera")
    if a.image_topic:
        cams = [CameraSpec("cam0", image_topic=a.image_topic)]
    else:
        cams = parse_cameras(a.camera) if a.camera else [CameraSpec("cam0", a.source or "")]
    sets = parse_sets(a.set)
    if getattr(a, "random_weights", False):
        sets["encoder.weights"] = ""
    require_clip_weights(_check_config(a.config, sets).encoder)  # before any node starts
    if getattr(a, "snapshot", None):
        sets["gallery.snapshot_path"] = str(Path(a.snapshot).resolve())
    web = bool(getattr(a, "web", False))
    web_params = _web_params(a) if web else None
    return make_graph(a.config, cams, loop=loop if loop is not None else (True if a.loop else None),
                      extra_params=sets, log_dir=Path(a.log_dir) if a.log_dir else None,
                      namespace=a.namespace, image_transport=a.image_transport, web=web, web_params=web_params)


def _web_params(a) -> Dict[str, object]:
    """Check the console's bind rules before any node starts; return its ``web.*`` parameters."""
    from person_search.web.config import WebConfig
    from person_search.web.security import check_bind, resolve_token
    cfg = WebConfig(host=a.web_host, port=a.web_port)
    cfg.validate()
    check_bind(cfg.host, resolve_token(None))  # BindError (a ValueError): one line, exit 2
    return {"web.host": cfg.host, "web.port": cfg.port}


def _check_config(config: str, sets: Dict[str, object]):
    """Validate the YAML with the --set overrides before any node starts (ConfigError names the value)."""
    from person_search.cli.common import sets_to_overrides
    from person_search.core.config import SECTIONS, load_config
    from person_search.graph import config_path
    return load_config(config_path(config), {k: v for k, v in sets_to_overrides(sets).items() if k in SECTIONS})


class ReadyProbe:
    """Watch a graph from the ``up`` process: is ``query_person`` served, how big is the gallery.

    Its own rclpy context without signal handlers, so Ctrl-C and SIGTERM stay ``up``'s.
    """

    def __init__(self, namespace: str):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from std_msgs.msg import Int64

        from person_search.graph import normalize_namespace
        from person_search.nodes.qos import RELIABLE_QOS, SERVICE_QOS
        from person_search_interfaces.srv import QueryPerson
        ns = normalize_namespace(namespace)
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"person_search_up_{os.getpid()}", context=self.context)
        self.size = 0
        self.node.create_subscription(Int64, f"{ns}/index/gallery_size", self._on_size, RELIABLE_QOS)
        self.client = self.node.create_client(QueryPerson, f"{ns}/query_person", qos_profile=SERVICE_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_size(self, msg) -> None:
        self.size = int(msg.data)

    def poll(self):
        """Take what arrived; return (query_person served, gallery size)."""
        self.executor.spin_once(timeout_sec=0.0)
        return self.client.service_is_ready(), self.size

    def close(self) -> None:
        """Leave the graph."""
        self.executor.shutdown(timeout_sec=0.5)
        self.node.destroy_node()
        self.context.try_shutdown()


def _last_error_line(graph, name: str) -> str:
    """Return the line a node that could not start wrote last (its log under --log-dir), or ""."""
    if graph.log_dir is None:
        return ""
    path = graph.log_dir / (name.strip("/").replace("/", "_") + ".log")
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    marked = [ln for ln in lines if "cannot start" in ln or "error" in ln.lower()]
    return (marked or lines or [""])[-1][:300]


def _why_stopped(graph, why: str) -> str:
    """Add the node's own error line to "node X cannot start" (its log, or the lines above)."""
    if "cannot start" not in why:
        return why
    name = why.split()[1]
    line = _last_error_line(graph, name)
    if line:
        return f"node {name} cannot start: {line}"
    return f"node {name} cannot start (exit code 2; its error line is above" + (
        f", its log in {graph.log_dir})" if graph.log_dir is not None else ")")


def _stop_on_signals() -> None:
    """Make SIGINT, SIGTERM and SIGHUP stop ``up`` (a KeyboardInterrupt), once.

    Installed explicitly: a script that starts ``up`` in the background leaves SIGINT
    ignored, and Python then installs no handler of its own, so ``kill -INT`` did nothing
    while the nodes (which take the signal themselves) stopped and were restarted; and
    SIGTERM's default action ended ``up`` at once, before its nodes. A second signal while
    the nodes are being stopped is ignored, so that the stop is not cut short.
    """
    state = {"stopping": False}

    def handler(signum, _frame):
        if not state["stopping"]:
            state["stopping"] = True
            raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def cmd_up(a) -> int:
    """Start the graph and keep it up until Ctrl-C / SIGTERM; nodes that die are restarted with backoff.

    Prints one "ready" line when the graph answers: ``query_person`` is served and the
    gallery holds embeddings (or, after a while with nobody seen, that the gallery is empty).
    """
    from person_search.graph import Respawner
    _stop_on_signals()
    graph = _graph_from_args(a)
    print(f"starting {len(graph.specs)} nodes with {graph.params_file}: "
          + ", ".join(s.fqn for s in graph.specs), flush=True)
    ns = f" --namespace {a.namespace}" if a.namespace else ""
    ask = f"person-search query{ns} \"a person in a dark coat\""
    print("waiting for the graph to answer (models load first; Ctrl-C stops the graph)", flush=True)
    web = next((s for s in graph.specs if s.executable == "web_node"), None)
    if web is not None:
        from person_search.web.server import url_of
        print(f"web console: {url_of(str(web.parameters['web.host']), int(web.parameters['web.port']))}", flush=True)
    try:
        with graph:  # leaving it stops every node: SIGINT, SIGKILL after 10 s
            if graph.shm_freed.removed:
                print(f"({graph.shm_freed.line()}: left by DDS processes that were killed)", file=sys.stderr,
                      flush=True)
            respawner = Respawner(graph, max_restarts=a.max_restarts,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
            probe = None
            try:
                probe = ReadyProbe(a.namespace)
            except Exception as exc:  # noqa: BLE001 - the graph runs without the probe; say so once
                print(f"(cannot watch the graph for readiness: {exc})", file=sys.stderr, flush=True)
            t0, served_at, said = time.monotonic(), None, ""
            try:
                while True:
                    why = respawner.step()
                    if why:
                        print(f"{_why_stopped(graph, why)}; stopping the graph", file=sys.stderr, flush=True)
                        return EXIT_FAILED
                    if probe is not None and said != "ready":
                        served, size = probe.poll()
                        if served and served_at is None:
                            served_at = time.monotonic()
                        if served and size > 0:
                            print(f"ready after {time.monotonic() - t0:.0f} s: the gallery holds {size} embedding(s); "
                                  f"ask with: {ask}", flush=True)
                            said = "ready"
                        elif served and not said and time.monotonic() - served_at > 30.0:
                            print(f"query_person answers, but the gallery is still empty (nobody seen yet); "
                                  f"a query now finds nothing. Ask with: {ask}", flush=True)
                            said = "empty"
                    time.sleep(0.2)
            except KeyboardInterrupt as exc:
                print(f"stopping ({exc or 'SIGINT'})", flush=True)
            finally:
                if probe is not None:
                    probe.close()
    except KeyboardInterrupt:  # arrived while the nodes were starting: __exit__ stopped them
        print("stopped", flush=True)
    return 0


def _check_clip_weights(cfg) -> Optional[str]:
    """Return None if the configured CLIP weights can be had here, else the one-line reason."""
    from person_search.core.models.weights import WeightsError, resolve_weights
    try:
        resolve_weights(cfg.encoder.arch, cfg.encoder.weights)  # finds or fetches the file; builds no model
        return None
    except WeightsError as exc:
        return str(exc).splitlines()[0]


def cmd_demo(a) -> int:
    """Sample video -> the ROS graph -> a query -> printed matches."""
    from person_search.core.config import load_config
    from person_search.demo.sample import make_sample_video
    from person_search.graph import CameraSpec, Graph, config_path, node_set

    check_descriptions([a.query])
    # the demo talks only to its own graph: a DDS domain of its own unless ROS_DOMAIN_ID is set,
    # so another graph on this machine or network (domain 0) cannot mix its people in
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
    work = Path(a.workdir or tempfile.mkdtemp(prefix="person_search_demo_"))
    work.mkdir(parents=True, exist_ok=True)
    video = make_sample_video(work / "sample.mp4", seconds=a.seconds)
    print(f"[demo] sample video: {video}", flush=True)
    cfg_file = config_path(a.config)
    cfg = load_config(cfg_file)
    sets: Dict[str, object] = parse_sets(a.set)
    reason = _check_clip_weights(cfg)
    if reason:
        print(f"[demo] no pretrained CLIP weights here ({reason}); using a randomly initialised "
              f"{cfg.encoder.arch}: the ranking shows the pipeline works, not what CLIP would find", flush=True)
        sets["encoder.weights"] = ""
    # the sample is a short file: every stage waits for its consumer however long a model takes
    # to load (a first ONNX export on a busy machine took over a minute), so no frame is lost
    sets.setdefault("ros.wait_for_subscribers_s", float(a.timeout))
    graph = Graph(node_set([CameraSpec("cam0", str(video))]), cfg_file, extra_params=sets, log_dir=work / "logs")
    print(f"[demo] starting {len(graph.specs)} nodes (logs in {work / 'logs'})", flush=True)
    with graph:
        t_end = time.monotonic() + a.timeout
        resp = None
        size = _wait_for_gallery(graph, t_end, want_quiet_s=3.0)
        if size is None:
            print(f"[demo] the gallery stayed empty; see the logs in {work / 'logs'}", file=sys.stderr)
            return 1
        print(f"[demo] gallery holds {size} embeddings; asking: {a.query!r}", flush=True)
        resp = query_service(a.query, top_k=a.top_k, timeout=max(5.0, t_end - time.monotonic()))
    if not resp.success:
        print(f"[demo] query failed: {resp.message}", file=sys.stderr)
        return 1
    print(resp.message)
    rows = response_rows(resp)
    print_matches(rows)
    save_match_images(rows, work / "matches")
    print(f"[demo] match crops saved under {work / 'matches'}")
    return 0


def _wait_for_gallery(graph, t_end: float, want_quiet_s: float) -> Optional[int]:
    """Wait until the camera finished and the gallery size stopped growing; returns the size."""
    import rclpy
    from std_msgs.msg import Int64
    rclpy.init()
    node = rclpy.create_node(f"person_search_demo_{os.getpid()}")
    from person_search.nodes.qos import RELIABLE_QOS
    state = {"size": 0, "changed": time.monotonic()}

    def on_size(msg):
        if msg.data != state["size"]:
            state["size"], state["changed"] = msg.data, time.monotonic()

    node.create_subscription(Int64, "/index/gallery_size", on_size, RELIABLE_QOS)
    try:
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.2)
            dead = graph.dead()
            bad = {n: c for n, c in dead.items() if not n.endswith("/camera")}
            if bad:
                print(f"[demo] node(s) exited early: {bad}", file=sys.stderr)
                return None
            cam_done = any(n.endswith("/camera") for n in dead)
            if cam_done and state["size"] > 0 and time.monotonic() - state["changed"] > want_quiet_s:
                return state["size"]
        return state["size"] or None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def register(sub) -> None:
    """Add ``up``, ``query`` and ``demo``."""
    def namespace_arg(sp):
        sp.add_argument("--namespace", default="", metavar="NS",
                        help="graph namespace: topics and services under /NS (default: the root)")

    def graph_args(sp):
        sp.add_argument("--config", default="cpu", help="cpu, orin, test, or a YAML path (default cpu)")
        sp.add_argument("--source", help="video file / device / URL / folder for camera cam0")
        sp.add_argument("--camera", action="append", default=[], metavar="NAME=SOURCE",
                        help="a camera (repeatable); each gets its own namespace NS/NAME")
        sp.add_argument("--image-topic", metavar="TOPIC",
                        help="use an existing camera's sensor_msgs/Image topic for cam0: no camera node is started")
        sp.add_argument("--image-transport", choices=("raw", "compressed"),
                        help="detector input: raw = TOPIC, compressed = TOPIC/compressed (default: the YAML, raw)")
        namespace_arg(sp)
        sp.add_argument("--loop", action="store_true", help="loop file sources")
        sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a parameter on every node, e.g. encoder.arch=ViT-B-16")
        sp.add_argument("--random-weights", action="store_true",
                        help="random CLIP weights (no download): the graph runs, the ranking means nothing")
        sp.add_argument("--snapshot", help="gallery snapshot file (saved and reloaded)")
        sp.add_argument("--log-dir", help="write each node's output to DIR/<node>.log")

    sp = sub.add_parser("up", help="start the ROS 2 graph, one process per node")
    graph_args(sp)
    sp.add_argument("--web", action="store_true", help="also start the operator console (web node)")
    sp.add_argument("--web-host", default="127.0.0.1",
                    help="the console's address (default 127.0.0.1; any other needs $PERSON_SEARCH_WEB_TOKEN)")
    sp.add_argument("--web-port", type=int_at_least(1), default=8080, help="the console's port (default 8080)")
    sp.add_argument("--max-restarts", type=int_at_least(0), default=10,
                    help="restart a node that dies at most this many times in a row (0 = never)")
    sp.set_defaults(func=cmd_up)

    sp = sub.add_parser("query", help="ask query_person (a description) or find_similar (--like/--image)")
    sp.add_argument("description", nargs="?", default="",
                    help="what the person looks like, e.g. \"a man in a red jacket\"")
    sp.add_argument("--like", type=int, metavar="TRACK_ID", help="find_similar: other sightings of this track "
                    "(with --camera where track ids repeat across cameras)")
    sp.add_argument("--person", type=int, metavar="PERSON_ID", help="find_similar: other sightings of this person")
    sp.add_argument("--image", metavar="FILE", help="find_similar: people that look like this JPEG/PNG crop")
    sp.add_argument("--by-track", action="store_true", help="one match per track instead of one per person")
    sp.add_argument("--top-k", type=int_at_least(0), default=0,
                    help="tracks to return (default 0: query.default_top_k)")
    sp.add_argument("--min-score", type=float_above(-1.0, inclusive=True, hi=1.0), default=0.0,
                    help="drop matches below this cosine score (-1..1)")
    sp.add_argument("--camera", default="", help="only this camera (its frame_id)")
    sp.add_argument("--last", dest="last_s", type=float_above(0.0, inclusive=True), default=0.0, metavar="SECONDS",
                    help="only tracks seen in the last SECONDS (node clock)")
    sp.add_argument("--frames", action="store_true",
                    help="also return frame thumbnails (every person's box drawn with its track id)")
    sp.add_argument("--save-crops", metavar="DIR", help="ask for the crops and write them (and frames) as JPEG")
    sp.add_argument("--json", action="store_true",
                    help="print the matches as one JSON document on stdout (all else on stderr)")
    sp.add_argument("--timeout", type=float_above(0), default=30.0,
                    help="seconds to wait for the service (default 30)")
    namespace_arg(sp)
    sp.set_defaults(func=cmd_query)

    sp = sub.add_parser("demo", help="sample video -> graph -> query -> matches")
    sp.add_argument("--config", default="cpu", help="cpu, orin, test, or a YAML path (default cpu)")
    sp.add_argument("--query", default="a person in a dark coat", help="the description to ask")
    sp.add_argument("--top-k", type=int_at_least(1), default=5, help="tracks to show (default 5)")
    sp.add_argument("--seconds", type=float_above(0), default=6.0, help="length of the generated sample video")
    sp.add_argument("--timeout", type=float_above(0), default=300.0, help="give up after this many seconds")
    sp.add_argument("--workdir", help="where to put the video, logs and crops (default: a temp dir)")
    sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a parameter on every node")
    sp.set_defaults(func=cmd_demo)

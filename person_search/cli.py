"""``person-search``: run the graph, ask it, process a video without ROS, manage snapshots.

Usage::

    person-search up [--config cpu] [--source VIDEO | --camera NAME=SRC ...] [--set sec.key=value ...]
    person-search query "a person in a dark coat" [--top-k N] [--save-crops DIR]
    person-search demo                 # sample video -> graph -> one query -> table
    person-search run VIDEO --query "..." [--query ...]   # no ROS
    person-search gallery {info,query} SNAPSHOT ...
    person-search sample-video PATH
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

log = logging.getLogger("person_search")


# ---------------------------------------------------------------------------- helpers
def _parse_sets(items: Sequence[str]) -> Dict[str, object]:
    import yaml
    out: Dict[str, object] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SystemExit(f"--set expects section.key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v) if v != "" else ""
    return out


def _sets_to_overrides(sets: Dict[str, object]) -> Dict[str, Dict[str, object]]:
    ov: Dict[str, Dict[str, object]] = {}
    for k, v in sets.items():
        sec, key = k.split(".", 1)
        ov.setdefault(sec, {})[key] = v
    return ov


def print_matches(matches, *, out=None) -> None:
    """Print a table of matches: rank, track, camera, score, first/last seen, box."""
    out = out or sys.stdout
    if not matches:
        print("no matches", file=out)
        return
    print(f"{'rank':>4}  {'track':>11}  {'camera':<10} {'score':>7}  {'first seen':>12}  {'last seen':>12}  box",
          file=out)
    for i, m in enumerate(matches, 1):
        first, last = _fmt_time(m["first_seen_ns"]), _fmt_time(m["last_seen_ns"])
        box = ",".join(f"{v:.0f}" for v in m["box"])
        print(f"{i:>4}  {m['track_id']:>11}  {m['camera']:<10} {m['score']:>7.4f}  {first:>12}  {last:>12}  {box}",
              file=out)


def _fmt_time(ns: int) -> str:
    if ns <= 0:
        return "-"
    t = ns / 1e9
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


# ---------------------------------------------------------------------------- ROS commands
def query_service(description: str, *, top_k: int = 5, min_score: float = 0.0, camera: str = "",
                  return_frames: bool = False, timeout: float = 30.0, service: str = "/query_person"):
    """Call /query_person through rclpy; returns the response (raises TimeoutError)."""
    import rclpy
    from person_search_interfaces.srv import QueryPerson
    own = not rclpy.ok()
    if own:
        rclpy.init()
    node = rclpy.create_node(f"person_search_cli_{os.getpid()}")
    try:
        client = node.create_client(QueryPerson, service)
        deadline = time.monotonic() + timeout
        while not client.wait_for_service(timeout_sec=0.5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {service} not available after {timeout:.0f} s: is the graph up "
                                   f"(person-search up) and ROS_DOMAIN_ID the same?")
        req = QueryPerson.Request(description=description, top_k=int(top_k), min_score=float(min_score),
                                  camera=camera, return_frames=bool(return_frames))
        fut = client.call_async(req)
        rclpy.spin_until_future_complete(node, fut, timeout_sec=max(0.1, deadline - time.monotonic()))
        if not fut.done():
            raise TimeoutError(f"no answer from {service} within {timeout:.0f} s")
        return fut.result()
    finally:
        node.destroy_node()
        if own:
            rclpy.try_shutdown()


def response_rows(resp) -> List[dict]:
    from person_search.nodes.convert import time_to_ns
    return [dict(track_id=int(m.track_id), camera=m.camera_frame_id, score=float(m.score),
                 first_seen_ns=time_to_ns(m.first_seen), last_seen_ns=time_to_ns(m.last_seen),
                 box=list(m.box), crop=m.crop, frame=m.frame) for m in resp.matches]


def save_match_images(rows: List[dict], out_dir: Path) -> List[Path]:
    import cv2
    from person_search.nodes.convert import image_to_bgr
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, r in enumerate(rows, 1):
        for kind in ("crop", "frame"):
            msg = r[kind]
            if msg.width and msg.height:
                p = out_dir / f"{i:02d}_{r['camera']}_track{r['track_id']}_{kind}.jpg"
                cv2.imwrite(str(p), image_to_bgr(msg))
                paths.append(p)
    return paths


def cmd_query(a) -> int:
    try:
        resp = query_service(a.description, top_k=a.top_k, min_score=a.min_score, camera=a.camera,
                             return_frames=a.frames, timeout=a.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if not resp.success:
        print(f"error: {resp.message}", file=sys.stderr)
        return 1
    rows = response_rows(resp)
    print(f"{resp.message}")
    print_matches(rows)
    if a.save_crops:
        for p in save_match_images(rows, Path(a.save_crops)):
            print(f"saved {p}")
    return 0


def _graph_from_args(a, *, loop=None):
    from person_search.graph import CameraSpec, parse_cameras
    from person_search.launcher import make_graph
    cams = parse_cameras(a.camera) if a.camera else [CameraSpec("cam0", a.source or "")]
    sets = _parse_sets(a.set)
    if getattr(a, "random_weights", False):
        sets["encoder.weights"] = ""
    if getattr(a, "snapshot", None):
        sets["gallery.snapshot_path"] = str(Path(a.snapshot).resolve())
    return make_graph(a.config, cams, loop=loop if loop is not None else (True if a.loop else None),
                      extra_params=sets, log_dir=Path(a.log_dir) if a.log_dir else None)


def cmd_up(a) -> int:
    graph = _graph_from_args(a)
    print(f"starting {len(graph.specs)} nodes with {graph.params_file}: "
          + ", ".join(s.fqn for s in graph.specs), flush=True)
    print("ask with: person-search query \"a person in a dark coat\"   (Ctrl-C stops the graph)", flush=True)
    with graph:
        try:
            while True:
                dead = graph.dead()
                bad = {n: c for n, c in dead.items() if c != 0 and not n.endswith("/camera")}
                if bad:
                    print(f"node(s) exited: {bad}; stopping the graph", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping", flush=True)
    return 0


def _check_clip_weights(cfg) -> Optional[str]:
    """Return None if the configured CLIP weights can be had here, else the one-line reason."""
    from person_search.core.encoders import WeightsError, resolve_weights
    try:
        resolve_weights(cfg.encoder.arch, cfg.encoder.weights)  # finds or fetches the file; builds no model
        return None
    except WeightsError as exc:
        return str(exc).splitlines()[0]


def cmd_demo(a) -> int:
    """Sample video -> the ROS graph -> a query -> printed matches."""
    from person_search.core.config import load_config
    from person_search.core.sample import make_sample_video
    from person_search.graph import CameraSpec
    from person_search.launcher import Graph, config_path
    from person_search.graph import node_set

    work = Path(a.workdir or tempfile.mkdtemp(prefix="person_search_demo_"))
    work.mkdir(parents=True, exist_ok=True)
    video = make_sample_video(work / "sample.mp4", seconds=a.seconds)
    print(f"[demo] sample video: {video}", flush=True)
    cfg_file = config_path(a.config)
    cfg = load_config(cfg_file)
    sets: Dict[str, object] = _parse_sets(a.set)
    reason = _check_clip_weights(cfg)
    if reason:
        print(f"[demo] no pretrained CLIP weights here ({reason}); using a randomly initialised "
              f"{cfg.encoder.arch}: the ranking shows the pipeline works, not what CLIP would find", flush=True)
        sets["encoder.weights"] = ""
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
    from person_search.nodes.common import RELIABLE_QOS
    state = {"size": 0, "changed": time.monotonic()}

    def on_size(msg):
        if msg.data != state["size"]:
            state["size"], state["changed"] = msg.data, time.monotonic()

    node.create_subscription(Int64, "/person_search/gallery_size", on_size, RELIABLE_QOS)
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


# ---------------------------------------------------------------------------- ROS-free commands
def cmd_sample(a) -> int:
    from person_search.core.sample import make_sample_video
    print(make_sample_video(Path(a.path), seconds=a.seconds))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="person-search", description="Find people in video by a text description.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def graph_args(sp):
        sp.add_argument("--config", default="cpu", help="cpu, orin, test, or a YAML path (default cpu)")
        sp.add_argument("--source", help="video file / device / URL / folder for camera cam0")
        sp.add_argument("--camera", action="append", default=[], metavar="NAME=SOURCE",
                        help="a camera (repeatable); each gets its own namespace /NAME")
        sp.add_argument("--loop", action="store_true", help="loop file sources")
        sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a parameter on every node, e.g. encoder.arch=ViT-B-16")
        sp.add_argument("--random-weights", action="store_true", help="random CLIP weights (no download)")
        sp.add_argument("--snapshot", help="gallery snapshot file (saved and reloaded)")
        sp.add_argument("--log-dir", help="write each node's output to DIR/<node>.log")

    sp = sub.add_parser("up", help="start the ROS 2 graph, one process per node")
    graph_args(sp)
    sp.set_defaults(func=cmd_up)

    sp = sub.add_parser("query", help="ask /query_person and print the matches")
    sp.add_argument("description")
    sp.add_argument("--top-k", type=int, default=5)
    sp.add_argument("--min-score", type=float, default=0.0)
    sp.add_argument("--camera", default="", help="only this camera")
    sp.add_argument("--frames", action="store_true", help="also return frame thumbnails")
    sp.add_argument("--save-crops", metavar="DIR", help="write the match crops (and frames) as JPEG")
    sp.add_argument("--timeout", type=float, default=30.0)
    sp.set_defaults(func=cmd_query)

    sp = sub.add_parser("demo", help="sample video -> graph -> query -> matches")
    sp.add_argument("--config", default="cpu")
    sp.add_argument("--query", default="a person in a dark coat")
    sp.add_argument("--top-k", type=int, default=5)
    sp.add_argument("--seconds", type=float, default=6.0)
    sp.add_argument("--timeout", type=float, default=300.0)
    sp.add_argument("--workdir")
    sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("sample-video", help="write the generated sample video")
    sp.add_argument("path")
    sp.add_argument("--seconds", type=float, default=6.0)
    sp.set_defaults(func=cmd_sample)

    try:
        from person_search.offline import add_offline_commands
        add_offline_commands(sub)
    except ImportError as exc:  # the offline commands need the whole core
        log.debug("offline commands unavailable: %s", exc)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="[%(name)s] %(levelname)s %(message)s")
    return int(a.func(a) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

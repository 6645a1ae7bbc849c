#!/usr/bin/env python3
"""Operator console: search round trip through the web API vs the query service alone.

    tools/env.sh python -m benchmarks.bench_web [--calls 40] [--clients 20] [--per-client 8]
        [--top-k 12] [--out docs/web_console.json]

Starts the test graph (tiny random CLIP, HOG detector, one looping generated video) with
the web node, in a DDS domain of its own, and waits for the gallery to fill. Then, in the
same run and with the same request (top_k, crops and frame thumbnails returned):

1. sequential: ``--calls`` searches through ``GET /api/search`` (one kept-alive HTTP
   connection) interleaved with as many ``/query_person`` calls from an rclpy client in this
   process; every description is new, so the query node's text cache never answers;
2. concurrent: ``--clients`` HTTP clients (threads, one connection each) each sending
   ``--per-client`` searches back to back; then as many threads calling /query_person through
   one shared rclpy client (as the console does; separate clients in one process would each
   receive and deserialise every reply);
3. the page's own weight: the bytes of ``/`` and its assets as served (and gzip -9 of them).

Prints p50/p95 latency (ms) and calls/s, with the CPU and load average, and writes them to
``--out`` (JSON, with the git commit and arguments). Figures come from generated video and
random weights: they measure the console's overhead, not what CLIP would find.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from benchmarks.common import ROOT, cpu_line, cpu_model, git_commit, percentile_ms
from benchmarks.graph_probe import private_domain

COLOURS = ["red", "blue", "black", "white", "green", "yellow", "grey", "brown", "pink", "orange"]
THINGS = ["jacket", "shirt", "coat", "dress", "hoodie", "sweater", "t-shirt", "suit"]


def description(i: int, who: str) -> str:
    """Return a description never asked before in this run (no text-cache hits)."""
    return f"a person in a {COLOURS[i % 10]} {THINGS[(i // 10) % 8]} number {i} {who}"


def summary(lat, wall_s, errors):
    return {"n": len(lat), "errors": errors, "p50_ms": round(percentile_ms(lat, 50), 2),
            "p95_ms": round(percentile_ms(lat, 95), 2),
            "calls_per_s": round(len(lat) / wall_s, 2) if wall_s > 0 else None}


class WebClient:
    """One kept-alive HTTP connection to the console."""

    def __init__(self, port: int, timeout: float):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())

    def search(self, q: str, top_k: int) -> float:
        t0 = time.perf_counter()
        status, body, _ = self.get("/api/search?" + urlencode({"q": q, "top_k": top_k}))
        dt = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        if not json.loads(body)["matches"]:
            raise RuntimeError("no matches")
        return dt


class ServiceClient:
    """/query_person from an rclpy client (the service alone)."""

    def __init__(self, node, timeout: float):
        from person_search.nodes.qos import SERVICE_QOS
        from person_search_interfaces.srv import QueryPerson
        self.QueryPerson = QueryPerson
        self.client = node.create_client(QueryPerson, "/query_person", qos_profile=SERVICE_QOS)
        self.timeout = timeout
        if not self.client.wait_for_service(timeout_sec=30):
            raise RuntimeError("/query_person not available")

    def search(self, q: str, top_k: int) -> float:
        req = self.QueryPerson.Request(description=q, top_k=top_k, return_crops=True, return_frames=True)
        done = threading.Event()
        t0 = time.perf_counter()
        fut = self.client.call_async(req)
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(self.timeout):
            self.client.remove_pending_request(fut)
            raise RuntimeError("timeout")
        dt = time.perf_counter() - t0
        if not fut.result().success or not fut.result().matches:
            raise RuntimeError(fut.result().message or "no matches")
        return dt


def concurrent(make_client, clients: int, per_client: int, top_k: int, who: str):
    """Run ``clients`` threads of ``per_client`` back-to-back searches; return (latencies, wall s, errors)."""
    lat, errors, lock = [], [], threading.Lock()
    start = threading.Barrier(clients + 1)

    def run(idx):
        c = make_client()
        start.wait()
        for j in range(per_client):
            try:
                dt = c.search(description(10_000 * (idx + 1) + j, who), top_k)
                with lock:
                    lat.append(dt)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(exc)[:200])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0, errors


def page_weight(port: int) -> dict:
    """Bytes of the page and its assets as served."""
    c = WebClient(port, 10)
    status, html, _ = c.get("/")
    assert status == 200
    files = {"/": html}
    for path in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        status, body, _ = c.get(path)
        assert status == 200, path
        files[path] = body
    raw = sum(len(b) for b in files.values())
    gz = sum(len(gzip.compress(b, 9)) for b in files.values())
    return {"files": {k: len(v) for k, v in files.items()}, "total_kB": round(raw / 1024, 1),
            "gzip_kB": round(gz / 1024, 1), "external_requests": 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="test", help="graph config (default test: tiny random CLIP, HOG)")
    ap.add_argument("--calls", type=int, default=40, help="sequential searches per path")
    ap.add_argument("--clients", type=int, default=20, help="concurrent clients")
    ap.add_argument("--per-client", type=int, default=8, help="searches per concurrent client")
    ap.add_argument("--top-k", type=int, default=12, help="matches per search (the page's default)")
    ap.add_argument("--min-gallery", type=int, default=20, help="wait for this many embeddings first")
    ap.add_argument("--timeout", type=float, default=60.0, help="a search slower than this is an error")
    ap.add_argument("--out", default="docs/web_console.json", help="results file (relative: to the repository)")
    a = ap.parse_args()

    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from person_search.demo.sample import make_sample_video
    from person_search.graph import CameraSpec, make_graph

    domain = private_domain(base=120)
    work = Path(tempfile.mkdtemp(prefix="bench_web_"))
    video = make_sample_video(work / "sample.mp4", seconds=6.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    graph = make_graph(a.config, [CameraSpec("cam0", str(video))], loop=True, extra_params={"encoder.weights": ""},
                       log_dir=work / "logs", web=True,
                       web_params={"web.port": port, "web.query_timeout_s": a.timeout})
    rclpy.init()
    node = rclpy.create_node(f"bench_web_{os.getpid()}")
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    result: dict = {}
    with graph:
        def ready():
            try:
                status, body, _ = WebClient(port, 5).get("/api/health")
            except OSError:
                return False
            h = json.loads(body) if status == 200 else {}
            return (h.get("gallery_size") or 0) >= a.min_gallery and h.get("query_service_ready")
        graph.wait_until(ready, 300, f"a gallery of {a.min_gallery} embeddings behind the console", poll_s=1.0)
        load_before = os.getloadavg()
        print(f"graph up (domain {domain}); {cpu_line()}", flush=True)
        web, svc = WebClient(port, a.timeout), ServiceClient(node, a.timeout)
        for i in range(3):  # warm up both paths (DDS matching, first JPEGs)
            web.search(description(i, "warm-web"), a.top_k)
            svc.search(description(i, "warm-svc"), a.top_k)
        seq = {"web": [], "service": []}
        for i in range(a.calls):
            seq["web"].append(web.search(description(i, "web"), a.top_k))
            seq["service"].append(svc.search(description(i, "svc"), a.top_k))
        sequential = {k: summary(v, sum(v), 0) for k, v in seq.items()}
        print(f"sequential ({a.calls} each, interleaved): web p50 {sequential['web']['p50_ms']:.1f} ms "
              f"p95 {sequential['web']['p95_ms']:.1f}; service alone p50 {sequential['service']['p50_ms']:.1f} "
              f"p95 {sequential['service']['p95_ms']:.1f}", flush=True)
        conc = {}
        # the service side shares one rclpy client, as the console does: 20 clients in one process
        # would each receive (and deserialise) every reply on their own reader
        for name, make in (("web", lambda: WebClient(port, a.timeout)), ("service", lambda: svc)):
            lat, wall, errors = concurrent(make, a.clients, a.per_client, a.top_k, name)
            conc[name] = summary(lat, wall, len(errors))
            if errors:
                conc[name]["first_error"] = errors[0]
            print(f"{a.clients} concurrent {name} clients x {a.per_client}: p50 {conc[name]['p50_ms']:.1f} ms "
                  f"p95 {conc[name]['p95_ms']:.1f} ms, {conc[name]['calls_per_s']:.1f} searches/s, "
                  f"errors {len(errors)}", flush=True)
        weight = page_weight(port)
        print(f"page weight: {weight['total_kB']} kB as served ({weight['gzip_kB']} kB gzip -9), "
              f"{weight['files']}", flush=True)
        load_after = os.getloadavg()
        dead = graph.dead()
    ex.shutdown(timeout_sec=2)
    node.destroy_node()
    rclpy.try_shutdown()
    if dead:
        print(f"node(s) died during the run: {dead}; logs in {work / 'logs'}", file=sys.stderr)
        return 1
    result = {
        "what": "search round trip: GET /api/search (web console) vs /query_person from rclpy (service alone)",
        "command": " ".join(["tools/env.sh python -m benchmarks.bench_web", *sys.argv[1:]]),
        "git_commit": git_commit(), "args": vars(a), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in load_after]},
        "data": "generated 6 s sample video, looping; random-weight PS-Tiny-ViT (config test); HOG detector",
        "request": {"top_k": a.top_k, "return_crops": True, "return_frames": True},
        "sequential": sequential, "concurrent": {"clients": a.clients, "per_client": a.per_client, **conc},
        "page_weight": weight,
    }
    out = Path(a.out) if Path(a.out).is_absolute() else ROOT / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Frame-to-searchable latency and sustained fps of the CPU graph on the generated video.

Starts the real node graph (one process per node, real DDS) on the looping sample video,
listens to /diagnostics for --seconds, and prints each stage's rate, drops and latency; the
index node's latency is frame stamp -> embedding searchable in the gallery. The baseline,
measured in the same run, is the same pipeline in one process without ROS
(`OfflinePipeline`, as fast as possible): its fps is what the stages could do unpaced.

    tools/env.sh python benchmarks/bench_graph.py [--config cpu] [--seconds 40] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def offline_baseline(cfg_name: str, sets, video: Path, max_frames: int):
    from person_search.cli.common import sets_to_overrides
    from person_search.core.config import load_config
    from person_search.core.pipeline import OfflinePipeline
    from person_search.launcher import config_path
    cfg = load_config(config_path(cfg_name), sets_to_overrides(sets))
    pipe = OfflinePipeline(cfg)
    stats = pipe.process_video(str(video), max_frames=max_frames)
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement time after the gallery fills")
    ap.add_argument("--video-seconds", type=float, default=6.0)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from person_search.cli.common import parse_sets
    from person_search.core.sample import make_sample_video
    from person_search.graph import CameraSpec
    from person_search.launcher import make_graph

    sets = parse_sets(a.set)
    sets.setdefault("encoder.weights", "")  # speed does not depend on the weights
    work = Path(tempfile.mkdtemp(prefix="bench_graph_"))
    video = make_sample_video(work / "sample.mp4", seconds=a.video_seconds)

    base = offline_baseline(a.config, sets, video, max_frames=0)
    print(f"baseline (one process, no ROS, unpaced): {base.frames} frames in {base.seconds:.1f} s = "
          f"{base.fps:.2f} fps, {base.embedded} crops embedded", flush=True)

    graph = make_graph(a.config, [CameraSpec("cam0", str(video))], loop=True, extra_params=sets,
                       log_dir=work / "logs")
    rclpy.init()
    node = rclpy.create_node(f"bench_graph_{os.getpid()}")
    last = {}
    lock = threading.Lock()

    def on_diag(msg):
        with lock:
            for st in msg.status:
                last[st.name] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    with graph:
        t_start = time.monotonic()
        started = None
        while True:
            rclpy.spin_once(node, timeout_sec=0.2)
            dead = {n: c for n, c in graph.dead().items()}
            if dead:
                print(f"node(s) died: {dead}; logs in {work / 'logs'}", file=sys.stderr)
                return 1
            with lock:
                idx = next((v for k, v in last.items() if k.endswith("index: index")), None)
            if started is None and idx and int(idx.get("count", 0)) > 0:
                started = time.monotonic()
                with lock:
                    first = {k: dict(v) for k, v in last.items()}
                print(f"gallery filling after {started - t_start:.1f} s; measuring {a.seconds:.0f} s", flush=True)
            if started is not None and time.monotonic() - started > a.seconds:
                break
            if time.monotonic() - t_start > a.seconds + 300:
                print("the gallery never filled", file=sys.stderr)
                return 1
        with lock:
            final = {k: dict(v) for k, v in last.items()}
    node.destroy_node()
    rclpy.try_shutdown()

    print(f"\nCPU graph, config {a.config}, {a.seconds:.0f} s on the looping {a.video_seconds:.0f} s sample video "
          f"(15 fps):")
    print("work = the stage's own processing time; age = how old the frame is when the stage's output leaves")
    print(f"{'stage':<28} {'rate Hz':>8} {'count':>7} {'drops':>6} {'work p50':>9} {'work p95':>9} "
          f"{'age p50':>8} {'age p95':>8}  (ms)")
    for name in sorted(final):
        v = final[name]
        c0 = int(first.get(name, {}).get("count", 0))
        n = int(v.get("count", 0)) - c0
        print(f"{name:<28} {n / a.seconds:>8.2f} {n:>7} {v.get('drops', '0'):>6} "
              f"{float(v.get('latency_p50_ms', 0)):>9.1f} {float(v.get('latency_p95_ms', 0)):>9.1f} "
              f"{float(v.get('age_p50_ms', 0)):>8.1f} {float(v.get('age_p95_ms', 0)):>8.1f}")
    det = next((v for k, v in final.items() if k.endswith("detector: detector")), {})
    cam = next((v for k, v in final.items() if k.endswith("camera: camera")), {})
    idx = next((v for k, v in final.items() if k.endswith("index: index")), {})

    def first_count(suffix):
        return int(next((v for k, v in first.items() if k.endswith(suffix)), {}).get("count", 0))

    det_n = int(det.get("count", 0)) - first_count("detector: detector")
    cam_n = int(cam.get("count", 0)) - first_count("camera: camera")
    print(f"\nsustained: camera {cam_n / a.seconds:.2f} fps, detector {det_n / a.seconds:.2f} fps "
          f"({100 * det_n / max(1, cam_n):.0f} % of frames), vs baseline {base.fps:.2f} fps unpaced "
          f"(ratio detector/baseline {det_n / a.seconds / max(base.fps, 1e-9):.2f})")
    print(f"frame -> searchable latency (age at the index node): p50 {idx.get('age_p50_ms', '?')} ms, "
          f"p95 {idx.get('age_p95_ms', '?')} ms; gallery {idx.get('gallery_size', '?')} embeddings, "
          f"{idx.get('tracks', '?')} tracks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

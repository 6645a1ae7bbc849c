"""Frame-to-searchable latency, searchable share and sustained fps of the CPU graph.

Starts the real node graph (one process per node, real DDS) on a looping video (the
generated sample, ``--crowd N`` generated walkers on a street, or any ``--video PATH``),
listens for --seconds and prints:

* each stage's rate, drops, own work time and frame age from /diagnostics;
* frame -> searchable latency: the age of every embedding batch when it reaches this
  process (the index adds it within ~1 ms), p50 / p95 over the whole run, and the index
  node's own age figures (its last 200 batches);
* the share of tracks seen for >= 2 s that became searchable (by the end, and within 2 s of
  first being seen), from /person_crops and /person_embeddings;
* the detector's kept fps against the camera's, and the embedder's crop budget counters;
* the CPU model and load, since figures on a shared machine move with it.

The baseline, measured in the same run, is the same pipeline in one process without ROS
(`OfflinePipeline`, as fast as possible, on the first --baseline-frames frames).

    tools/env.sh python benchmarks/bench_graph.py [--config cpu] [--seconds 40] [--video PATH | --crowd 12]
        [--set k=v ...]

The cpu config uses the OpenVINO int8 YOLO11n where it is found (models/, or the shared
test-model folder $PERSON_SEARCH_SHARED_MODELS), else the HOG detector (one warning line).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_probe import DiagnosticsProbe, private_domain  # noqa: E402
from machine import cpu_line  # noqa: E402

GRACE_S = 2.0  # a track seen this long should be searchable


def pct(values, q):
    """Return the q-quantile (0..1) of a list (nearest rank), nan when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def offline_baseline(cfg_name: str, sets, video: Path, max_frames: int):
    from person_search.cli.common import sets_to_overrides
    from person_search.core.config import load_config
    from person_search.core.pipeline import OfflinePipeline
    from person_search.launcher import config_path
    cfg = load_config(config_path(cfg_name), sets_to_overrides(sets))
    pipe = OfflinePipeline(cfg)
    stats = pipe.process_video(str(video), max_frames=max_frames)
    return stats, pipe.tracker.detector.description


class Probe(DiagnosticsProbe):
    """The shared /diagnostics probe, plus per track: first/last stamp seen and the first embedding's arrival."""

    def __init__(self):
        super().__init__("bench_graph")
        from person_search.nodes.common import RELIABLE_QOS
        from person_search_interfaces.msg import PersonCrops, PersonEmbeddings
        self.lock = threading.Lock()
        self.seen = {}  # (camera, track) -> [first stamp ns, last stamp ns]
        self.searchable = {}  # (camera, track) -> wall ns of its first embedding
        self.ages = []  # (wall ns, age s) of every embedding batch
        self.node.create_subscription(PersonCrops, "/person_crops", self.on_crops, RELIABLE_QOS)
        self.node.create_subscription(PersonEmbeddings, "/person_embeddings", self.on_emb, RELIABLE_QOS)

    @staticmethod
    def _ns(stamp) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def on_crops(self, msg):
        ns = self._ns(msg.header.stamp)
        with self.lock:
            for p in msg.people:
                rec = self.seen.setdefault((msg.header.frame_id, p.track_id), [ns, ns])
                rec[1] = max(rec[1], ns)

    def on_emb(self, msg):
        now = time.time_ns()
        with self.lock:
            self.ages.append((now, (now - self._ns(msg.header.stamp)) / 1e9))
            for t in msg.track_ids:
                self.searchable.setdefault((msg.header.frame_id, int(t)), now)


def make_video(a, work: Path) -> Path:
    if a.video:
        path = Path(a.video)
        if not path.is_file():
            raise SystemExit(f"error: --video {path}: file not found")
        return path
    if a.crowd:
        from person_search.core.crowd import make_crowd_video
        w, h = (int(v) for v in a.size.lower().split("x"))
        return make_crowd_video(work / "crowd.mp4", people=a.crowd, seconds=a.video_seconds, size=(w, h))
    from person_search.core.sample import make_sample_video
    return make_sample_video(work / "sample.mp4", seconds=a.video_seconds)


def find(d, suffix):
    return next((v for k, v in d.items() if k.endswith(suffix)), {})


def report_tracks(probe: Probe, t0_ns: int, t1_ns: int) -> None:
    with probe.lock:
        seen = dict(probe.seen)
        searchable = dict(probe.searchable)
        ages = [age for wall, age in probe.ages if t0_ns <= wall <= t1_ns]
    long = {k: v for k, v in seen.items() if v[0] >= t0_ns and v[1] - v[0] >= GRACE_S * 1e9}
    made = [k for k in long if k in searchable]
    in_time = [k for k in made if searchable[k] - long[k][0] <= GRACE_S * 1e9]
    delays = [(searchable[k] - long[k][0]) / 1e9 for k in made]
    print(f"frame -> searchable (age of each embedding batch on arrival, whole run): "
          f"p50 {1e3 * pct(ages, .5):.0f} ms, p95 {1e3 * pct(ages, .95):.0f} ms over {len(ages)} batches")
    n = max(1, len(long))
    print(f"tracks seen >= {GRACE_S:.0f} s: {len(long)}; searchable by the end {len(made)} "
          f"({100 * len(made) / n:.0f} %), "
          f"within {GRACE_S:.0f} s of first seen {len(in_time)} ({100 * len(in_time) / n:.0f} %); "
          f"first seen -> searchable p50 {pct(delays, .5):.2f} s, p95 {pct(delays, .95):.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement time after the gallery fills")
    ap.add_argument("--video", help="any video file (looped)")
    ap.add_argument("--crowd", type=int, default=0, metavar="N", help="generate a street with N walkers")
    ap.add_argument("--size", default="1920x1080", help="size of the generated crowd video")
    ap.add_argument("--video-seconds", type=float, default=6.0, help="length of the generated video")
    ap.add_argument("--baseline-frames", type=int, default=150, help="frames of the offline baseline (0 = all)")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()

    import cv2
    from person_search.cli.common import parse_sets
    from person_search.graph import CameraSpec
    from person_search.launcher import make_graph

    private_domain()  # other graphs on this machine (tests, other benchmarks) must not mix in
    sets = parse_sets(a.set)
    sets.setdefault("encoder.weights", "")  # speed does not depend on the weights
    work = Path(tempfile.mkdtemp(prefix="bench_graph_"))
    video = make_video(a, work)
    cap = cv2.VideoCapture(str(video))
    vinfo = (f"{video.name} {int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))} "
             f"{cap.get(cv2.CAP_PROP_FPS):.0f} fps, {cap.get(cv2.CAP_PROP_FRAME_COUNT):.0f} frames")
    cap.release()
    print(f"CPU: {cpu_line()}", flush=True)

    base, det_desc = offline_baseline(a.config, sets, video, max_frames=a.baseline_frames)
    print(f"detector: {det_desc}")
    print(f"baseline (one process, no ROS, unpaced): {base.frames} frames in {base.seconds:.1f} s = "
          f"{base.fps:.2f} fps, {base.embedded} crops embedded", flush=True)

    graph = make_graph(a.config, [CameraSpec("cam0", str(video))], loop=True, extra_params=sets,
                       log_dir=work / "logs")
    probe = Probe()
    with graph:
        t_start = time.monotonic()
        started = None
        while True:
            time.sleep(0.2)
            dead = {n: c for n, c in graph.dead().items()}
            if dead:
                print(f"node(s) died: {dead}; logs in {work / 'logs'}", file=sys.stderr)
                return 1
            idx = probe.stage("index: index")
            if started is None and idx and int(idx.get("count", 0)) > 0:
                started, t0_ns = time.monotonic(), time.time_ns()
                first = probe.latest()
                print(f"gallery filling after {started - t_start:.1f} s; measuring {a.seconds:.0f} s", flush=True)
            if started is not None and time.monotonic() - started > a.seconds:
                break
            if time.monotonic() - t_start > a.seconds + 300:
                print("the gallery never filled", file=sys.stderr)
                return 1
        t1_ns = time.time_ns()
        final = probe.latest()
    probe.close()

    print(f"\nCPU graph, config {a.config}, {a.seconds:.0f} s on the looping {vinfo}; CPU: {cpu_line()}")
    print("work = the stage's own processing time; age = how old the frame is when the stage's output leaves")
    print(f"{'stage':<28} {'rate Hz':>8} {'count':>7} {'drops':>6} {'work p50':>9} {'work p95':>9} "
          f"{'age p50':>8} {'age p95':>8}  (ms)")
    for name in sorted(final):
        v = final[name]
        n = int(v.get("count", 0)) - int(first.get(name, {}).get("count", 0))
        print(f"{name:<28} {n / a.seconds:>8.2f} {n:>7} {v.get('drops', '0'):>6} "
              f"{float(v.get('latency_p50_ms', 0)):>9.1f} {float(v.get('latency_p95_ms', 0)):>9.1f} "
              f"{float(v.get('age_p50_ms', 0)):>8.1f} {float(v.get('age_p95_ms', 0)):>8.1f}")

    def counted(suffix):
        return int(find(final, suffix).get("count", 0)) - int(find(first, suffix).get("count", 0))

    det_n, cam_n = counted("detector: detector"), counted("camera: camera")
    idx, emb = find(final, "index: index"), find(final, "embedder: embedder")
    print(f"\nsustained: camera {cam_n / a.seconds:.2f} fps, detector kept {det_n / a.seconds:.2f} fps "
          f"({100 * det_n / max(1, cam_n):.0f} % of frames), vs baseline {base.fps:.2f} fps unpaced "
          f"(ratio detector/baseline {det_n / a.seconds / max(base.fps, 1e-9):.2f})")
    keys = ("budget_crops_s", "throughput_crops_s", "crops_offered", "crops_admitted", "crops_dropped", "new_tracks",
            "upgrades", "refreshes", "pending", "late")
    print("embedder budget: " + ", ".join(f"{k} {emb.get(k, '?')}" for k in keys))
    print(f"index node: age p50 {idx.get('age_p50_ms', '?')} ms, p95 {idx.get('age_p95_ms', '?')} ms (last 200 "
          f"batches); gallery {idx.get('gallery_size', '?')} embeddings, {idx.get('tracks', '?')} tracks")
    report_tracks(probe, t0_ns, t1_ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

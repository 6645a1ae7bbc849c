"""Capture -> searchable latency, searchable share and sustained fps of the CPU graph, on one clock.

Starts the real node graph (one process per node, real DDS) on a looping video (the
generated sample, ``--crowd N`` generated walkers on a street, or any ``--video PATH``)
played live like a camera (frames at the video's rate on the wall clock, late ones dropped,
each stamped at capture on the node clock), listens for --seconds and prints:

* each stage's rate, drops, queue wait (upstream sent -> callback), own work and age
  (capture -> output leaves), p50 / p95 / p99 from /diagnostics;
* capture -> searchable: the age of every embedding batch when it reaches this process
  (the index adds it within ~1 ms), p50 / p95 / p99 over the run, and the index node's own
  age figures (its last 600 batches);
* the share of tracks seen for >= 2 s that became searchable (by the end, and within 2 s of
  first being seen), and first seen -> searchable, from /person_crops and
  /person_embeddings: the crop stamps (capture) and this process's arrival times are on one
  clock, the system clock of this machine;
* the detector's kept fps against the camera's, the camera's late drops, and the embedder's
  crop budget counters;
* the CPU model and load average (start and end), since figures on a shared machine move with it.

The baseline, measured in the same run, is the same pipeline in one process without ROS
(`OfflinePipeline`, as fast as possible, on the first --baseline-frames frames; 0 = skip).
``--json FILE`` appends the figures, the command, the git commit and the machine as one record.

    tools/env.sh python -m benchmarks.bench_graph [--config cpu] [--seconds 40] [--video PATH | --crowd 15]
        [--fps 30] [--set k=v ...] [--json FILE] [--label NAME]

The cpu config uses the OpenVINO int8 YOLO11n where it is found (models/, or the shared
test-model folder $PERSON_SEARCH_SHARED_MODELS), else the HOG detector (one warning line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import (cpu_line, git_commit, percentile_interval_ms, percentile_ms, replace_block,
                               threshold_verdict, wilson_pct)
from benchmarks.graph_probe import DiagnosticsProbe, private_domain

GRACE_S = 2.0  # a track seen this long should be searchable


def offline_baseline(cfg_name: str, sets, video: Path, max_frames: int):
    from person_search.cli.common import sets_to_overrides
    from person_search.core.config import load_config
    from person_search.core.pipeline import OfflinePipeline
    from person_search.graph import config_path
    cfg = load_config(config_path(cfg_name), sets_to_overrides(sets))
    pipe = OfflinePipeline(cfg)
    stats = pipe.process_video(str(video), max_frames=max_frames)
    return stats, pipe.tracker.detector.description


class Probe(DiagnosticsProbe):
    """The shared /diagnostics probe, plus per track: first/last stamp seen and the first embedding's arrival."""

    def __init__(self):
        super().__init__("bench_graph")
        from person_search.nodes.qos import RELIABLE_QOS
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
        now = time.time_ns()  # the system clock: the camera's capture clock on this machine
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
        from person_search.demo.crowd import make_crowd_video
        w, h = (int(v) for v in a.size.lower().split("x"))
        return make_crowd_video(work / "crowd.mp4", people=a.crowd, seconds=a.video_seconds, size=(w, h),
                                fps=a.fps)
    from person_search.demo.sample import make_sample_video
    return make_sample_video(work / "sample.mp4", seconds=a.video_seconds)


def find(d, suffix):
    return next((v for k, v in d.items() if k.endswith(suffix)), {})


def report_tracks(probe: Probe, t0_ns: int, t1_ns: int) -> dict:
    with probe.lock:
        seen = dict(probe.seen)
        searchable = dict(probe.searchable)
        ages = [age for wall, age in probe.ages if t0_ns <= wall <= t1_ns]
    long = {k: v for k, v in seen.items() if v[0] >= t0_ns and v[1] - v[0] >= GRACE_S * 1e9}
    made = [k for k in long if k in searchable]
    in_time = [k for k in made if searchable[k] - long[k][0] <= GRACE_S * 1e9]
    delays = [(searchable[k] - long[k][0]) / 1e9 for k in made]
    n = max(1, len(long))
    p95_iv = percentile_interval_ms(ages, 95)
    share_iv = wilson_pct(len(in_time), len(long))
    out = {"capture_to_searchable_ms": {q: round(percentile_ms(ages, 100 * v), 1) for q, v in QS},
           "capture_to_searchable_p95_ci_ms": None if p95_iv is None else [round(x, 1) for x in p95_iv],
           "batches": len(ages), "tracks_2s": len(long), "searchable_by_end_pct": round(100 * len(made) / n, 1),
           "searchable_within_2s_pct": round(100 * len(in_time) / n, 1), "searchable_within_2s": len(in_time),
           "searchable_within_2s_ci_pct": None if share_iv is None else [round(x, 1) for x in share_iv],
           "first_seen_to_searchable_s": {q: round(percentile_ms(delays, 100 * v) / 1e3, 2) for q, v in QS}}
    out["verdicts"] = {"capture_to_searchable_p95_le_1s": threshold_verdict(p95_iv, 1000.0, at_most=True),
                       "searchable_within_2s_ge_95pct": threshold_verdict(share_iv, 95.0, at_most=False)}
    c = out["capture_to_searchable_ms"]
    f = out["first_seen_to_searchable_s"]
    print(f"capture -> searchable (age of each embedding batch on arrival, whole run): "
          f"p50 {c['p50']:.0f} ms, p95 {c['p95']:.0f} ms, p99 {c['p99']:.0f} ms over {len(ages)} batches"
          + (f"; p95 95 % interval [{p95_iv[0]:.0f}, {p95_iv[1]:.0f}] ms (block bootstrap)" if p95_iv else ""))
    print(f"tracks seen >= {GRACE_S:.0f} s: {len(long)}; searchable by the end {len(made)} "
          f"({out['searchable_by_end_pct']:.0f} %), "
          f"within {GRACE_S:.0f} s of first seen {len(in_time)} ({out['searchable_within_2s_pct']:.0f} %"
          + (f", 95 % interval [{share_iv[0]:.1f}, {share_iv[1]:.1f}] %" if share_iv else "") + "); "
          f"first seen -> searchable p50 {f['p50']:.2f} s, p95 {f['p95']:.2f} s, p99 {f['p99']:.2f} s")
    v = out["verdicts"]
    print(f"targets: capture -> searchable p95 <= 1 s: {v['capture_to_searchable_p95_le_1s']}; tracks seen 2 s "
          f"searchable within 2 s >= 95 %: {v['searchable_within_2s_ge_95pct']} (met / missed: the whole 95 % "
          "interval on one side of the line; not resolved: it straddles the line)")
    return out


class Tee:
    """stdout that also keeps what was printed (the document's block is the report as printed)."""

    def __init__(self, out):
        self.out, self.lines = out, []

    def write(self, text):
        self.lines.append(text)
        return self.out.write(text)

    def flush(self):
        self.out.flush()

    def text(self) -> str:
        return "".join(self.lines)


def doc_block(rec: dict, report: str) -> str:
    """Return the document's block: the command, the run (commit, machine, load), the report as printed."""
    return (f"Generated by `{rec['command']}` (results: the record labelled \"{rec['label']}\" of the JSON-lines "
            f"file; git {rec['git']}; {rec['machine']['cpu']}; load average {rec['load_avg_start'][0]:.1f} at the "
            f"start, {rec['load_avg_end'][0]:.1f} at the end; {rec['video']}, played live):\n\n```\n"
            + report.strip("\n") + "\n```\n")


QS = (("p50", .5), ("p95", .95), ("p99", .99))


def stage_rows(final: dict, first: dict, seconds: float) -> dict:
    """Print the per-stage table and return it as a dict."""
    print("wait = sent upstream -> callback start (queue + transport); work = the stage's own time; "
          "age = capture -> the stage's output leaves; all on the node clock (ms)")
    print(f"{'stage':<26} {'rate Hz':>7} {'drops':>6} {'wait p50':>8} {'p95':>6} {'p99':>6} {'work p50':>8} "
          f"{'p95':>6} {'p99':>6} {'age p50':>8} {'p95':>6} {'p99':>6}")
    rows = {}
    for name in sorted(final):
        v = final[name]
        n = int(v.get("count", 0)) - int(first.get(name, {}).get("count", 0))

        def g(key):
            val = v.get(key, "n/a")
            try:
                return float(val)
            except ValueError:
                return None

        row = {"rate_hz": round(n / seconds, 2), "drops": int(v.get("drops", 0))}
        for kind, key in (("wait", "wait"), ("work", "latency"), ("age", "age")):
            for q in ("p50", "p95", "p99"):
                row[f"{kind}_{q}_ms"] = g(f"{key}_{q}_ms")
        rows[name] = row

        def fmt(x, w):
            return f"{'-':>{w}}" if x is None else f"{x:>{w}.1f}"

        print(f"{name:<26} {row['rate_hz']:>7.2f} {row['drops']:>6} "
              + " ".join(fmt(row[f"{k}_{q}_ms"], 8 if q == "p50" else 6) for k in ("wait", "work", "age")
                         for q in ("p50", "p95", "p99")))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement time after the gallery fills")
    ap.add_argument("--video", help="any video file (looped)")
    ap.add_argument("--crowd", type=int, default=0, metavar="N", help="generate a street with N walkers")
    ap.add_argument("--size", default="1920x1080", help="size of the generated crowd video")
    ap.add_argument("--fps", type=int, default=30, help="frame rate of the generated crowd video")
    ap.add_argument("--video-seconds", type=float, default=6.0, help="length of the generated video")
    ap.add_argument("--baseline-frames", type=int, default=150, help="frames of the offline baseline (0 = all)")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", help="append the figures as one JSON record (a line) to this file")
    ap.add_argument("--label", default="", help="name of this run in the JSON record (e.g. the lever)")
    ap.add_argument("--doc", default="", metavar="MD",
                    help="rewrite the document's <!-- results:bench_graph --> block from this run (needs --json)")
    a = ap.parse_args()
    if a.doc and not a.json:
        ap.error("--doc needs --json: the document cites its results file")
    load0 = os.getloadavg()

    import cv2
    from person_search.cli.common import parse_sets
    from person_search.graph import CameraSpec, make_graph

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

    base = None
    if a.baseline_frames > 0:
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

    load1 = os.getloadavg()
    import contextlib

    tee = Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        tracks = report(a, final, first, probe, t0_ns, t1_ns, base, vinfo, load0, load1)
    if a.json:
        emb = find(final, "embedder: embedder")
        rec = {"label": a.label, "command": "tools/env.sh python -m benchmarks.bench_graph " + shlex.join(sys.argv[1:]),
               "git": git_commit(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpu": cpu_line(), "node": platform.node()},
               "load_avg_start": [round(x, 2) for x in load0], "load_avg_end": [round(x, 2) for x in load1],
               "video": vinfo, "config": a.config, "sets": a.set, "seconds": a.seconds,
               "embedder_first_seen_to_searchable_ms": {q: emb.get(f"first_seen_to_searchable_{q}_ms")
                                                        for q in ("p50", "p95")},
               **tracks}
        with open(a.json, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"appended to {a.json}")
        if a.doc and not replace_block(a.doc, "bench_graph", doc_block(rec, tee.text())):
            return 1
    return 0


def report(a, final, first, probe, t0_ns, t1_ns, base, vinfo, load0, load1) -> dict:
    """Print the run's figures; return those the results record keeps."""
    print(f"\nCPU graph, config {a.config} {' '.join('--set ' + x for x in a.set)}, {a.seconds:.0f} s on the "
          f"looping {vinfo}, played live; CPU: {cpu_line()}")
    rows = stage_rows(final, first, a.seconds)

    def counted(suffix):
        return int(find(final, suffix).get("count", 0)) - int(find(first, suffix).get("count", 0))

    det_n, cam_n = counted("detector: detector"), counted("camera: camera")
    idx, emb, cam = find(final, "index: index"), find(final, "embedder: embedder"), find(final, "camera: camera")
    base_fps = base.fps if base is not None else float("nan")
    print(f"\nsustained: camera {cam_n / a.seconds:.2f} fps (late drops {cam.get('late', '?')}), detector kept "
          f"{det_n / a.seconds:.2f} fps ({100 * det_n / max(1, cam_n):.0f} % of frames)"
          + (f", vs baseline {base_fps:.2f} fps unpaced" if base is not None else ""))
    keys = ("budget_crops_s", "throughput_crops_s", "crops_offered", "crops_admitted", "crops_dropped", "new_tracks",
            "upgrades", "refreshes", "late_frames", "pending", "late")
    print("embedder budget: " + ", ".join(f"{k} {emb.get(k, '?')}" for k in keys))
    print(f"embedder first seen -> searchable (/diagnostics): p50 {emb.get('first_seen_to_searchable_p50_ms', '?')} "
          f"ms, p95 {emb.get('first_seen_to_searchable_p95_ms', '?')} ms")
    print(f"index node (/diagnostics, last 600 batches): capture -> searchable p50 {idx.get('age_p50_ms', '?')} ms, "
          f"p95 {idx.get('age_p95_ms', '?')} ms, p99 {idx.get('age_p99_ms', '?')} ms; gallery "
          f"{idx.get('gallery_size', '?')} embeddings, {idx.get('tracks', '?')} tracks")
    tracks = report_tracks(probe, t0_ns, t1_ns)
    print(f"load average: start {load0[0]:.2f}, end {load1[0]:.2f} (1 min)")
    return {"camera_fps": round(cam_n / a.seconds, 2), "camera_late": cam.get("late"),
            "detector_fps": round(det_n / a.seconds, 2), "baseline_fps": None if base is None else round(base_fps, 2),
            "stages": rows, "budget": {k: emb.get(k) for k in keys},
            "index_age_ms": {q: idx.get(f"age_{q}_ms") for q in ("p50", "p95", "p99")}, **tracks}


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""What each real-time lever of the CPU graph buys: bench_graph once per lever set, one table.

Runs ``bench_graph.py`` (the real node graph, the video played live like a camera) on the
same video once per row, each row adding one lever to the previous (cumulative), or one
lever alone on top of the first row (``--alone``), and prints one table: camera and
detector fps, crops embedded, capture -> searchable p50 / p95 / p99, first seen ->
searchable p95, the share of tracks seen for 2 s searchable within 2 s, and the load
average at the start and end of each row (the machine is shared: compare rows of one run
only). Every row is appended to ``--json`` (JSON lines, with the command of each row).

    tools/env.sh python -m benchmarks.bench_levers --video street.mp4 [--seconds 40] [--json FILE]
    tools/env.sh python -m benchmarks.bench_levers --crowd 15 --fps 30 --size 1920x1080   # generated stand-in
        [--json FILE --doc docs/realtime.md]   # the document's table from this run's rows

The default levers (cumulative; the row "small tower" is config/cpu.yaml as shipped):

    as before            every 1080p frame published, detector via ultralytics (runtime's threads), encoder
                         MobileCLIP-S1 on 2 threads, the embedder's crop queue 10 deep
    max_width 960        video.max_width=960: frames halved at the source (publish, detect, crop less)
    fps 10               video.fps=10: every 3rd frame of 30 fps detected (the tracker runs at 10 Hz)
    detector threads 1   detector.threads=1: OpenVINO runtime directly, one thread (the embedder has the other)
    encoder threads 1    encoder.threads=1
    crops_queue 1        ros.crops_queue=1: the embedder takes the newest crops message only (no backlog)
    small tower          encoder.arch=MobileCLIP2-S0 (MCi0 image tower, ~1.8x MobileCLIP-S1's crops/s)
    encoder onnx-int8    encoder.backend=onnx-int8 (not shipped: see docs/realtime.md)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import cpu_line, git_commit, replace_block

HERE = Path(__file__).resolve().parent
LEVERS = [
    ("as before", ["video.max_width=0", "video.fps=0", "detector.threads=0", "encoder.threads=2",
                   "ros.crops_queue=10", "encoder.arch=MobileCLIP-S1"]),
    ("max_width 960", ["video.max_width=960"]),
    ("fps 10", ["video.fps=10"]),
    ("detector threads 1", ["detector.threads=1"]),
    ("encoder threads 1", ["encoder.threads=1"]),
    ("crops_queue 1", ["ros.crops_queue=1"]),
    ("small tower", ["encoder.arch=MobileCLIP2-S0"]),
    ("encoder onnx-int8", ["encoder.backend=onnx-int8"]),
]


def row_sets(levers, alone: bool):
    """Yield (label, --set list) per row: cumulative, or each lever alone on top of the first row."""
    acc: dict = {}
    base = dict(s.split("=", 1) for s in levers[0][1])
    for i, (label, sets) in enumerate(levers):
        new = dict(s.split("=", 1) for s in sets)
        if alone and i > 0:
            yield label, [f"{k}={v}" for k, v in {**base, **new}.items()]
            continue
        acc.update(new)
        yield label, [f"{k}={v}" for k, v in acc.items()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", help="the video (looped); default: a generated crowd (--crowd, --fps, --size)")
    ap.add_argument("--crowd", type=int, default=15)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--video-seconds", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement per row")
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--alone", action="store_true", help="each lever alone on top of the first row")
    ap.add_argument("--only", nargs="+", help="run only the rows with these labels")
    ap.add_argument("--json", default="", help="append every row to this JSON-lines file")
    ap.add_argument("--doc", default="", metavar="MD",
                    help="rewrite the document's <!-- results:bench_levers --> table from this run (needs --json)")
    a = ap.parse_args()
    if a.doc and not a.json:
        ap.error("--doc needs --json: the document cites its results file")
    command = "tools/env.sh python -m benchmarks.bench_levers " + shlex.join(sys.argv[1:])
    levers_run = time.strftime("levers-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]
    commit = git_commit()

    video = a.video
    if not video:
        from person_search.demo.crowd import make_crowd_video
        w, h = (int(v) for v in a.size.lower().split("x"))
        video = str(make_crowd_video(Path(tempfile.mkdtemp(prefix="levers_")) / "crowd.mp4", people=a.crowd,
                                     seconds=a.video_seconds, fps=a.fps, size=(w, h)))
        print(f"generated stand-in: {video} ({a.crowd} walkers, {a.size}, {a.fps} fps, {a.video_seconds:.0f} s)")
    out = a.json or str(Path(tempfile.mkdtemp(prefix="levers_")) / "levers.jsonl")
    rows = []
    for label, sets in row_sets(LEVERS, a.alone):
        if a.only and label not in a.only:
            continue
        cmd = [sys.executable, "-m", "benchmarks.bench_graph", "--config", a.config, "--video", video, "--seconds",
               str(a.seconds), "--baseline-frames", "0", "--json", out, "--label", label]
        for s in sets:
            cmd += ["--set", s]
        print(f"\n=== {label}: {' '.join(cmd[1:])}  (load {os.getloadavg()[0]:.2f})", flush=True)
        p = subprocess.run(cmd, text=True, capture_output=True, cwd=HERE.parent)
        print("\n".join(p.stdout.splitlines()[-12:]))
        if p.returncode:
            print(f"row {label!r} failed ({p.returncode}): {p.stderr[-1500:]}", file=sys.stderr)
            continue
        lines = [x for x in Path(out).read_text().splitlines() if x.strip()]
        rec = {**json.loads(lines[-1]), "levers_command": command, "levers_run": levers_run, "levers_git": commit}
        Path(out).write_text("\n".join(lines[:-1] + [json.dumps(rec)]) + "\n")  # the row says which run made it
        rows.append(rec)
    print(f"\nlevers on {video}, {a.seconds:.0f} s per row, config {a.config}; rows "
          f"{'each alone on the first' if a.alone else 'cumulative'}; results {out}")
    print(f"{'lever':<20} {'cam fps':>7} {'late':>6} {'det fps':>7} {'emb Hz':>7} {'c->s p50':>8} {'p95':>6} "
          f"{'p99':>6} {'fs->s p95':>9} {'<=2s %':>6} {'tracks':>6} {'load':>11}")
    for r in rows:
        c = r["capture_to_searchable_ms"]
        emb = next((v["rate_hz"] for k, v in r["stages"].items() if k.endswith("embedder: embedder")), 0.0)
        print(f"{r['label']:<20} {r['camera_fps']:>7.1f} {str(r.get('camera_late')):>6} {r['detector_fps']:>7.1f} "
              f"{emb:>7.1f} {c['p50']:>8.0f} {c['p95']:>6.0f} {c['p99']:>6.0f} "
              f"{r['first_seen_to_searchable_s']['p95']:>9.2f} {r['searchable_within_2s_pct']:>6.0f} "
              f"{r['tracks_2s']:>6} {r['load_avg_start'][0]:>5.1f}-{r['load_avg_end'][0]:<5.1f}")
    if a.doc and rows and not replace_block(a.doc, "bench_levers", doc_table(rows, a)):
        return 1
    return 0


def doc_table(rows: list, a) -> str:
    """Return the document's lever table (markdown) from this run's rows, with the command and the run."""
    r0 = rows[0]
    iv = ("Intervals: capture -> searchable p95, block bootstrap; <=2s, Wilson; 95 %. " if
          any(r.get("capture_to_searchable_p95_ci_ms") for r in rows) else "")
    lines = [f"Generated by `{r0['levers_command']}` (run {r0['levers_run']}, git {r0['levers_git'][:12]}, "
             f"{cpu_line()}; results: the rows of that run in the JSON-lines file; rows "
             f"{'each alone on the first' if a.alone else 'cumulative'}, {a.seconds:.0f} s each). {iv}",
             "", "| lever | camera fps (late drops) | detector fps | embedder batches/s | c->s p50 / p95 [95 %] / p99 "
             "ms | fs->s p95 s | <=2s % [95 %] (tracks) | load start-end |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["capture_to_searchable_ms"]
        emb = next((v["rate_hz"] for k, v in r["stages"].items() if k.endswith("embedder: embedder")), 0.0)
        ci = r.get("capture_to_searchable_p95_ci_ms")
        si = r.get("searchable_within_2s_ci_pct")
        lines.append(f"| {r['label']} | {r['camera_fps']:.1f} ({r.get('camera_late')}) | {r['detector_fps']:.1f} | "
                     f"{emb:.1f} | {c['p50']:.0f} / {c['p95']:.0f}" + (f" [{ci[0]:.0f}, {ci[1]:.0f}]" if ci else "")
                     + f" / {c['p99']:.0f} | {r['first_seen_to_searchable_s']['p95']:.2f} | "
                     f"{r['searchable_within_2s_pct']:.0f}" + (f" [{si[0]:.0f}, {si[1]:.0f}]" if si else "")
                     + f" ({r['tracks_2s']}) | {r['load_avg_start'][0]:.1f}-{r['load_avg_end'][0]:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

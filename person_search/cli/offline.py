"""ROS-free commands of ``person-search``: ``run`` a video, ``gallery`` save/load/query, ``sample-video``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List

import cv2

from person_search.cli.common import load_config_args, match_row, print_json, print_matches


def _progress():
    from tqdm import tqdm
    bar = {"b": None}

    def update(done: int, total: int, video_s: float) -> None:
        if bar["b"] is None:
            bar["b"] = tqdm(total=total or None, unit="frame", desc="processing", file=sys.stderr)
            bar["t0"] = time.monotonic()
        bar["b"].update(done - bar["b"].n)
        wall = time.monotonic() - bar["t0"]
        if wall >= 1.0:  # a ratio over less than a second of work says nothing
            bar["b"].set_postfix_str(f"video {video_s:.1f} s, {video_s / wall:.2f}x real time", refresh=False)

    def close():
        if bar["b"] is not None:
            bar["b"].close()
    return update, close


def _rows(matches) -> List[dict]:
    return [match_row(track_id=m.track_id, camera=m.source_id, score=m.score, first_seen_ns=m.first_seen_ns,
                      last_seen_ns=m.last_seen_ns, box=m.box) for m in matches]


def _answer(engine, gallery, queries, top_k, sheet_path, *, as_json: bool = False, summary=None):
    from person_search.core.imaging import contact_sheet
    from person_search.core.query import QueryError
    sheet_rows = []
    answers = []
    code = 0
    for q in queries:
        if not as_json:
            print(f"\nquery: {q!r}")
        try:
            matches = engine.query(gallery, q, top_k=top_k)
        except QueryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            answers.append({"query": q, "error": str(exc), "matches": []})
            code = 1
            continue
        answers.append({"query": q, "matches": _rows(matches)})
        if not as_json:
            print_matches(_rows(matches))
        sheet_rows.append([(f"#{m.track_id} {m.score:.3f}", m.crop_jpeg) for m in matches])
    if sheet_path and sheet_rows:
        sheet = contact_sheet(sheet_rows, title=" | ".join(queries))
        cv2.imwrite(str(sheet_path), sheet)
        if not as_json:
            print(f"\ncontact sheet: {sheet_path}")
    if as_json:
        print_json(dict(summary or {}, queries=answers, sheet=str(sheet_path) if sheet_path else None))
    return code


def _check_video(video: str) -> None:
    """Refuse a missing video file before any model is built (URLs and device indexes pass)."""
    if "://" in video or video.isdigit() or video.startswith("/dev/video"):
        return
    if not Path(video).exists():
        raise FileNotFoundError(f"video not found: {video}")


def cmd_run(a) -> int:
    _check_video(a.video)
    if getattr(a, "fps", None) is not None:
        if not 0 < a.fps <= 240:
            print(f"error: --fps must be in (0, 240], got {a.fps:g}", file=sys.stderr)
            return 2
        a.set = list(a.set) + [f"video.fps={a.fps}"]
    cfg = load_config_args(a)
    from person_search.core.pipeline import OfflinePipeline
    pipe = OfflinePipeline(cfg)
    update, close = _progress()
    try:
        stats = pipe.process_video(a.video, max_frames=a.max_frames, progress=update)
    finally:
        close()
    summary = dict(video=str(a.video), frames=stats.frames, video_seconds=round(stats.video_seconds, 3),
                   seconds=round(stats.seconds, 3), fps=round(stats.fps, 2),
                   realtime_factor=round(stats.realtime_factor, 3), detections=stats.detections,
                   tracks=len(stats.tracks), embeddings=len(pipe.gallery), model_id=pipe.embedder.model_id,
                   detector=pipe.tracker.backend_name)
    as_json = getattr(a, "json", False)
    if not as_json:
        print(f"{stats.frames} frames ({stats.video_seconds:.1f} s of video) in {stats.seconds:.1f} s "
              f"({stats.fps:.1f} fps, {stats.realtime_factor:.2f}x real time), {stats.detections} detections, "
              f"{len(stats.tracks)} tracks, {len(pipe.gallery)} embeddings in the gallery "
              f"(model {pipe.embedder.model_id}, tracker {pipe.tracker.backend_name})")
    if a.save:
        pipe.gallery.save(a.save)
        summary["saved"] = str(a.save)
        if not as_json:
            print(f"gallery saved to {a.save}")
    if not a.query:
        if as_json:
            print_json(dict(summary, queries=[]))
        return 0
    return _answer(pipe.text_engine(), pipe.gallery, a.query, a.top_k, a.sheet, as_json=as_json, summary=summary)


def cmd_gallery(a) -> int:
    """``gallery save SNAP --video V`` / ``load SNAP`` / ``query SNAP DESC...``."""
    from person_search.core.gallery import RollingGallery, SnapshotError
    if a.action == "save":
        if not a.video:
            print("error: gallery save needs --video VIDEO to build the gallery from", file=sys.stderr)
            return 2
        a.query, a.save = [], a.snapshot
        return cmd_run(a)
    cfg = load_config_args(a)
    try:
        g = RollingGallery.load(a.snapshot, cfg.gallery)
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.snapshot}: {len(g)} embeddings, {g.num_tracks} tracks, model {g.model_id}, dim {g.dim}")
    if a.action == "load":
        tracks = sorted(g.tracks(), key=lambda t: t.last_seen_ns, reverse=True)
        print_matches([match_row(track_id=t.track_id, camera=t.source_id, score=float("nan"),
                                 first_seen_ns=t.first_seen_ns, last_seen_ns=t.last_seen_ns, box=t.last_box)
                       for t in tracks[:a.top_k]])
        return 0
    from person_search.core.encoder import ClipEncoder
    from person_search.core.query import QueryEngine
    enc = ClipEncoder(cfg.encoder, towers=("text",))
    if enc.model_id != g.model_id:
        print(f"error: the snapshot holds {g.model_id} embeddings but the config builds {enc.model_id}; "
              f"use the config the gallery was built with", file=sys.stderr)
        return 2
    return _answer(QueryEngine(enc, cfg.query), g, a.query, a.top_k, a.sheet)


def cmd_sample(a) -> int:
    """Write the generated sample video, or with ``--crowd N`` a street with N walkers."""
    if a.crowd:
        from person_search.core.crowd import make_crowd_video
        try:
            w, h = (int(v) for v in a.size.lower().split("x"))
            print(make_crowd_video(Path(a.path), people=a.crowd, seconds=a.seconds, size=(w, h), fps=a.fps))
        except ValueError as exc:
            print(f"error: {exc} (--size is WIDTHxHEIGHT, e.g. 1920x1080)",
                  file=sys.stderr)
            return 2
        return 0
    from person_search.core.sample import make_sample_video
    print(make_sample_video(Path(a.path), seconds=a.seconds))
    return 0


def register(sub) -> None:
    """Add ``run``, ``gallery`` and ``sample-video``."""
    def common(sp):
        sp.add_argument("--config", default="cpu", help="cpu, orin, test, or a YAML path (default cpu)")
        sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. encoder.arch=ViT-B-16 (repeatable)")
        sp.add_argument("--random-weights", action="store_true", help="random CLIP weights (no download)")
        sp.add_argument("--top-k", type=int, default=5, help="tracks per query (default 5)")
        sp.add_argument("--sheet", metavar="PNG", help="write a contact sheet of the top matches")

    sp = sub.add_parser("run", help="process a video without ROS and answer queries")
    sp.add_argument("video", help="the video file to process")
    sp.add_argument("--query", action="append", default=[], help="a description (repeatable)")
    sp.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    sp.add_argument("--fps", type=float, help="keep at most N frames per video second (drop the rest)")
    sp.add_argument("--save", metavar="SNAPSHOT", help="save the gallery snapshot here")
    sp.add_argument("--json", action="store_true", help="print the run summary and matches as JSON")
    common(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("gallery", help="save a video's gallery, load (inspect) or query a snapshot")
    sp.add_argument("action", choices=["save", "load", "query"], help="save a video's gallery, load or query one")
    sp.add_argument("snapshot", help="the gallery snapshot file (.npz)")
    sp.add_argument("query", nargs="*", help="descriptions (for query)")
    sp.add_argument("--video", help="the video to build the gallery from (for save)")
    sp.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    common(sp)
    sp.set_defaults(func=cmd_gallery)

    sp = sub.add_parser("sample-video", help="write the generated sample video (or a crowded street: --crowd N)")
    sp.add_argument("path", help="where to write the .mp4")
    sp.add_argument("--seconds", type=float, default=6.0, help="length in seconds (default 6)")
    sp.add_argument("--crowd", type=int, default=0, metavar="N", help="N people walking across a street")
    sp.add_argument("--size", default="1920x1080", help="crowd video size WIDTHxHEIGHT")
    sp.add_argument("--fps", type=int, default=15, help="crowd video frame rate")
    sp.set_defaults(func=cmd_sample)

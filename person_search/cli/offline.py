"""ROS-free commands of ``person-search``: ``run`` a video, ``gallery`` save/load/query, ``sample-video``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List

import cv2

from person_search.cli.common import (UsageError, check_descriptions, float_above, fmt_time, int_at_least,
                                      load_config_args, match_row, parse_wxh, print_json, print_matches,
                                      require_clip_weights)


def _progress():
    from tqdm import tqdm
    bar = {"b": None}

    def update(done: int, total: int, video_s: float) -> None:
        if bar["b"] is None:
            # a bar on a terminal only: redirected, it would be thousands of carriage returns
            bar["b"] = tqdm(total=total or None, unit="frame", desc="processing", file=sys.stderr, disable=None)
            bar["t0"] = time.monotonic()
        bar["b"].update(done - bar["b"].n)
        wall = time.monotonic() - bar["t0"]
        if wall >= 1.0:  # a ratio over less than a second of work says nothing
            bar["b"].set_postfix_str(f"video {video_s:.1f} s, {video_s / wall:.2f}x real time", refresh=False)

    def close():
        if bar["b"] is not None:
            bar["b"].close()
    return update, close


def _rows(matches, groups=None, linker=None) -> List[dict]:
    """Match rows: one per person (``groups``, as /query_person answers) or one per track."""
    if groups is not None:
        return [match_row(track_id=g.best.track_id, camera=g.best.source_id, score=g.best.score,
                          first_seen_ns=g.first_seen_ns, last_seen_ns=g.last_seen_ns, box=g.best.box,
                          person_id=g.person_id, person_tracks=[f"{c}/{t}" for c, t in zip(g.cameras, g.track_ids)])
                for g in groups]
    rows = []
    for m in matches:
        pid = linker.person_of(m.source_id, m.track_id) if linker is not None else -1
        keys = linker.tracks_of(pid) if pid >= 0 else [(m.source_id, m.track_id)]
        rows.append(match_row(track_id=m.track_id, camera=m.source_id, score=m.score, first_seen_ns=m.first_seen_ns,
                              last_seen_ns=m.last_seen_ns, box=m.box, person_id=pid,
                              person_tracks=[f"{c}/{t}" for c, t in keys]))
    return rows


def _answer(engine, gallery, queries, top_k, sheet_path, *, as_json: bool = False, summary=None, linker=None,
            by_track: bool = False):
    from person_search.core.imaging import contact_sheet
    from person_search.core.query import QueryError
    sheet_rows = []
    answers = []
    code = 0
    for q in queries:
        if not as_json:
            print(f"\nquery: {q!r}")
        try:
            matches, groups = engine.query_persons(gallery, linker, q, top_k=top_k, by_track=by_track)
        except QueryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            answers.append({"query": q, "error": str(exc), "matches": []})
            sheet_rows.append([])  # the row stays, so every row is under its own query's title
            code = 1
            continue
        rows = _rows(matches, groups, linker)
        answers.append({"query": q, "matches": rows})
        if not as_json:
            print_matches(rows)
            for i, r in enumerate(rows, 1):
                if r["person_id"] >= 0 and len(r["person_tracks"]) > 1:
                    print(f"  #{i} person {r['person_id']}: tracks {', '.join(r['person_tracks'])}")
        shown = [g.best for g in groups] if groups is not None else matches
        sheet_rows.append([(f"#{m.track_id} {m.score:.3f}", m.crop_jpeg) for m in shown])
    if sheet_path and sheet_rows:
        sheet = contact_sheet(sheet_rows, row_titles=[repr(q) for q in queries])
        if not cv2.imwrite(str(sheet_path), sheet):
            print(f"error: cannot write the contact sheet {sheet_path}", file=sys.stderr)
            code = 1
        elif not as_json:
            print(f"\ncontact sheet: {sheet_path} (one row per query, in order)")
    if as_json:
        print_json(dict(summary or {}, queries=answers, sheet=str(sheet_path) if sheet_path else None))
    return code


def _check_video(video: str) -> None:
    """Refuse a missing or undecodable video file before any model is built (URLs, devices, folders pass)."""
    from person_search.core.video.capture import drop_cap, source_kind
    if source_kind(video) != "file":
        return
    if not Path(video).exists():
        raise FileNotFoundError(f"video not found: {video}")
    cap = cv2.VideoCapture(video)
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        drop_cap(cap)
    if not ok:
        raise UsageError(f"cannot read a frame of {video}: not a video file OpenCV can decode")


def _check_output(path, flag: str) -> None:
    """Refuse an output file whose folder does not exist, before the work that would fill it."""
    if path and not Path(path).expanduser().resolve().parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {Path(path).parent} does not exist")


def cmd_run(a) -> int:
    """Process videos without ROS (several: one camera each) and answer the queries; every check comes first."""
    videos = list(a.video) if isinstance(a.video, (list, tuple)) else [a.video]
    for video in videos:
        _check_video(video)
    if getattr(a, "fps", None) is not None:
        a.set = list(a.set) + [f"video.fps={a.fps}"]
    cfg = load_config_args(a)
    check_descriptions(a.query, max_chars=cfg.query.max_chars)
    _check_output(a.sheet, "--sheet")
    _check_output(a.save, "--save")
    require_clip_weights(cfg.encoder)
    from person_search.core.pipeline import OfflinePipeline
    pipe = OfflinePipeline(cfg)
    cameras = [None] if len(videos) == 1 else [f"cam{i}" for i in range(len(videos))]
    for video, camera in zip(videos, cameras):
        update, close = _progress()
        try:
            stats = pipe.process_video(video, max_frames=a.max_frames, source_id=camera, progress=update)
        finally:
            close()
    persons = pipe.linker.stats()
    summary = dict(video=str(videos[0]) if len(videos) == 1 else [str(v) for v in videos],
                   cameras=[c or cfg.video.source_id for c in cameras], frames=stats.frames,
                   video_seconds=round(stats.video_seconds, 3),
                   seconds=round(stats.seconds, 3), fps=round(stats.fps, 2),
                   realtime_factor=round(stats.realtime_factor, 3), detections=stats.detections,
                   tracks=len(stats.tracks), embeddings=len(pipe.gallery), model_id=pipe.embedder.model_id,
                   detector=pipe.tracker.backend_name, reid_model_id=pipe.reid.model_id if pipe.reid else None,
                   persons=persons["persons"], person_links=persons["person_links"])
    as_json = getattr(a, "json", False)
    if not as_json:
        print(f"{stats.frames} frames ({stats.video_seconds:.1f} s of video) in {stats.seconds:.1f} s "
              f"({stats.fps:.1f} fps, {stats.realtime_factor:.2f}x real time), {stats.detections} detections, "
              f"{len(stats.tracks)} tracks, {len(pipe.gallery)} embeddings in the gallery "
              f"(model {pipe.embedder.model_id}, tracker {pipe.tracker.backend_name})")
        if pipe.reid is not None:
            print(f"{persons['persons']} persons ({persons['person_links']} tracks linked by re-id, "
                  f"{pipe.reid.model_id})")
    if a.save:
        pipe.gallery.save(a.save)
        summary["saved"] = str(a.save)
        if pipe.linker.tracks:
            from person_search.core.gallery.persons import persons_path
            summary["persons_saved"] = str(pipe.linker.save(persons_path(a.save)))
        if not as_json:
            print(f"gallery saved to {a.save}")
    if not a.query:
        if as_json:
            print_json(dict(summary, queries=[]))
        return 0
    return _answer(pipe.text_engine(), pipe.gallery, a.query, a.top_k, a.sheet, as_json=as_json, summary=summary,
                   linker=pipe.linker, by_track=getattr(a, "by_track", False))


def print_tracks(tracks, *, out=None) -> None:
    """Print a snapshot's tracks, latest first: no score (nothing was asked), the last box seen."""
    out = out or sys.stdout
    if not tracks:
        print("no tracks", file=out)
        return
    print(f"{'track':>11}  {'camera':<10} {'embeddings':>10}  {'first seen':>12}  {'last seen':>12}  last box",
          file=out)
    for t in tracks:
        box = ",".join(f"{v:.0f}" for v in t.last_box)
        print(f"{t.track_id:>11}  {t.source_id:<10} {t.num_embeddings:>10}  {fmt_time(t.first_seen_ns):>12}  "
              f"{fmt_time(t.last_seen_ns):>12}  {box}", file=out)


def cmd_gallery(a) -> int:
    """``gallery save SNAP --video V`` / ``load SNAP`` / ``query SNAP DESC...``."""
    from person_search.core.gallery import RollingGallery, SnapshotError
    if a.action == "save":
        if not a.video:
            raise UsageError("gallery save needs --video VIDEO to build the gallery from")
        if a.query:
            raise UsageError("gallery save takes no description (ask with gallery query, or run --query)")
        a.query, a.save = [], a.snapshot
        return cmd_run(a)
    if a.action == "load" and a.query:
        raise UsageError("gallery load takes no description; to ask, use: gallery query SNAPSHOT \"DESCRIPTION\"")
    if a.action == "query" and not a.query:
        raise UsageError("gallery query needs at least one description: gallery query SNAPSHOT \"DESCRIPTION\"")
    cfg = load_config_args(a)
    if a.action == "query":
        check_descriptions(a.query, max_chars=cfg.query.max_chars)
        _check_output(a.sheet, "--sheet")
    try:
        g = RollingGallery.load(a.snapshot, cfg.gallery)
    except SnapshotError as exc:
        raise UsageError(str(exc)) from None
    print(f"{a.snapshot}: {len(g)} embeddings, {g.num_tracks} tracks, model {g.model_id}, dim {g.dim}")
    if a.action == "load":
        tracks = sorted(g.tracks(), key=lambda t: t.last_seen_ns, reverse=True)[:a.top_k]
        print(f"the {len(tracks)} latest tracks (--top-k); \"last box\" is where each was last seen, while a query "
              f"shows the box of the embedding that matched")
        print_tracks(tracks)
        return 0
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.core.models.factory import model_id_for
    from person_search.core.models.weights import resolve_weights
    require_clip_weights(cfg.encoder)
    want = model_id_for(cfg.encoder.arch, resolve_weights(cfg.encoder.arch, cfg.encoder.weights).weights_id,
                        cfg.encoder.attention)
    if want != g.model_id:  # checked before the text tower loads
        raise UsageError(f"the snapshot holds {g.model_id} embeddings but the config builds {want}; use the "
                         f"config (and --random-weights or not) the gallery was built with")
    from person_search.core.gallery.persons import PersonLinker, persons_path
    from person_search.core.query import QueryEngine
    linker = None
    if Path(persons_path(a.snapshot)).exists():  # written beside the snapshot by run --save / the index node
        try:
            linker = PersonLinker.load(persons_path(a.snapshot), cfg.reid, window_s=cfg.gallery.window_s)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    enc = ClipEncoder(cfg.encoder, towers=("text",))
    return _answer(QueryEngine(enc, cfg.query), g, a.query, a.top_k, a.sheet, linker=linker,
                   by_track=a.by_track)


def cmd_sample(a) -> int:
    """Write the generated sample video, or with ``--crowd N`` a street with N walkers."""
    h, w = parse_wxh(a.size, "--size")
    _check_output(a.path, "sample-video")
    if a.captions and not a.crowd:
        raise UsageError("--captions needs --crowd N")
    if a.crowd and a.captions:
        from person_search.demo.crowd import make_captioned_crowd
        try:
            video, truth = make_captioned_crowd(Path(a.path), people=a.crowd, seconds=a.seconds, size=(w, h),
                                                fps=a.fps, seed=a.seed, split=a.captions)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(video)
        print(truth)
        return 0
    if a.crowd:
        from person_search.demo.crowd import make_crowd_video
        print(make_crowd_video(Path(a.path), people=a.crowd, seconds=a.seconds, size=(w, h), fps=a.fps, seed=a.seed))
        return 0
    from person_search.demo.sample import make_sample_video
    print(make_sample_video(Path(a.path), seconds=a.seconds))
    return 0


def register(sub) -> None:
    """Add ``run``, ``gallery`` and ``sample-video``."""
    def common(sp):
        sp.add_argument("--config", default="cpu", help="cpu, orin, test, or a YAML path (default cpu)")
        sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. encoder.arch=ViT-B-16 (repeatable)")
        sp.add_argument("--random-weights", action="store_true",
                        help="random CLIP weights (no download): the pipeline runs, the ranking means nothing")
        sp.add_argument("--top-k", type=int_at_least(1), default=5,
                        help="matches per query: persons, or tracks with --by-track (default 5)")
        sp.add_argument("--sheet", metavar="PNG", help="write a contact sheet of the top matches")
        sp.add_argument("--by-track", action="store_true",
                        help="one match per track (default: one per person, its tracks linked by re-id)")

    sp = sub.add_parser("run", help="process a video without ROS and answer queries")
    sp.add_argument("video", nargs="+", help="the video file to process (several: one camera each, cam0, cam1, ...)")
    sp.add_argument("--query", action="append", default=[], help="a description (repeatable)")
    sp.add_argument("--max-frames", type=int_at_least(0), default=0, help="stop after this many frames (0 = all)")
    sp.add_argument("--fps", type=float_above(0, hi=240), help="keep at most N frames per video second (0 < N <= 240)")
    sp.add_argument("--save", metavar="SNAPSHOT", help="save the gallery snapshot here")
    sp.add_argument("--json", action="store_true",
                    help="print the run summary and matches as one JSON document on stdout (all else on stderr)")
    common(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("gallery", help="save a video's gallery, load (inspect) or query a snapshot")
    sp.add_argument("action", choices=["save", "load", "query"], help="save a video's gallery, load or query one")
    sp.add_argument("snapshot", help="the gallery snapshot file (.npz)")
    sp.add_argument("query", nargs="*", help="descriptions (query: at least one)")
    sp.add_argument("--video", help="the video to build the gallery from (for save)")
    sp.add_argument("--max-frames", type=int_at_least(0), default=0, help="stop after this many frames (0 = all)")
    common(sp)
    sp.set_defaults(func=cmd_gallery)

    sp = sub.add_parser("sample-video", help="write the generated sample video (or a crowded street: --crowd N)")
    sp.add_argument("path", help="where to write the .mp4")
    sp.add_argument("--seconds", type=float_above(0), default=6.0, help="length in seconds (default 6)")
    sp.add_argument("--crowd", type=int_at_least(0), default=0, metavar="N", help="N people walking across a street")
    sp.add_argument("--size", default="1920x1080", metavar="WxH",
                    help="crowd video size WIDTHxHEIGHT (default 1920x1080)")
    sp.add_argument("--fps", type=int_at_least(1), default=15, help="crowd video frame rate")
    sp.add_argument("--captions", choices=("train", "val", "test"),
                    help="captioned crowd: walkers wear colour pairs of this split (`data crowd` trains on "
                         "'train'); writes the ground truth and captions to VIDEO.truth.json")
    sp.add_argument("--seed", type=int, default=0, help="crowd scene seed (default 0)")
    sp.set_defaults(func=cmd_sample)

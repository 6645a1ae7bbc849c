#!/usr/bin/env python3
"""Re-identification, measured: identity quality on a generated crowd, text mAP by person, cost.

Writes ``docs/reid_results.json`` (figures of docs/reid.md) with the command, git commit,
machine and load. All people here are *generated*: walkers cut out of the 4 real people of
ultralytics' bus.jpg / zidane.jpg, re-coloured and mirrored (``demo/crowd.py``), so
several walkers share one real person's body and differ only in clothes colour.

1. Identity quality (``--part identity``): a crowd video (camera A) and the same scene seen by
   a second camera B (mirrored, re-lit, half the duration later); the pretrained YOLO11n
   + ByteTrack track people; each detection gets its ground-truth walker by IoU with the
   drawn sprite box; re-id features (OSNet x0_25, the shared weights) of every crop feed a
   ``PersonLinker``. For ids that hold >= ``--min-obs`` detections of a walker: the share
   of walkers split into several ids, and the share of ids that merge several walkers;
   tracks alone vs re-id linking, camera A alone and A+B; plus a link-threshold sweep.
2. Text queries by person vs by track (``--part text``): mAP of generated captions over the
   tracks of part 1 (``--clip-weights``: a trained CLIP checkpoint, else a random one:
   then the figure only checks the plumbing; the result says which).
3. Cost (``--part cost``): crops/s of the embedder stage (``core/embed_stage.py``, the CLIP image
   tower of config/cpu.yaml with random weights, ONNX Runtime) with re-id on and off,
   interleaved in one run on the real crops of part 1, and re-id's share of the time.

4. Text ranking by person (``--part rerank``): best track vs mean over tracks vs re-ranking
   with re-id neighbours of the top text hits, mAP / Rank-1 by person over ``--rerank-seeds``
   crowds; the "text" is a colour-name scorer standing in for a trained CLIP (none offline).
5. The running graph (``--part graph``): two embedder nodes on the same /person_crops of one
   graph, re-id on and off, same seconds; crops/s and model time per crop from /diagnostics.

A run merges its parts into ``--out`` (each part with its own run record); ``--replace``
writes only this run's.

    python -m benchmarks.bench_reid --cost-seconds 60 --doc docs/reid.md   # all parts, ~9 min on 2 quiet cores
    python -m benchmarks.bench_reid --redraw --doc docs/reid.md             # the page's blocks, from the file
    python -m benchmarks.bench_reid --parts rerank
    python -m benchmarks.bench_reid --parts graph
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import ROOT, cpu_line, git_commit, time_interleaved, video_frames
from person_search.core.config import DetectorConfig, ReidConfig
from person_search.demo.crowd import make_crowd_video
from person_search.core.gallery.persons import PersonLinker
from person_search.core.paths import shared_models_dir
from person_search.core.reid.encoder import ReidEncoder
from person_search.core.types import Frame

S = 1_000_000_000


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def second_camera(src: Path, dst: Path, truth, fps: int):
    """Camera B: the same people, mirrored, darker, starting half the video later (wraps)."""
    frames = list(video_frames(src))
    n, (h, w) = len(frames), frames[0].shape[:2]
    shift = n // 2
    lut = np.clip(((np.arange(256) / 255.0) ** 1.3) * 255 * 0.95, 0, 255).astype(np.uint8)
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    truth_b = []
    for k in range(n):
        j = (k + shift) % n
        out.write(cv2.LUT(frames[j][:, ::-1], lut))
        truth_b.append([(p, c, w - x2, y1, w - x1, y2) for p, c, x1, y1, x2, y2 in truth[j]])
    out.release()
    return truth_b


def track_video(path: Path, source: str, det_cfg: DetectorConfig, truth, fps: int, min_iou: float):
    """Return observations: dicts with stamp, source, track, gt (or -1), crop."""
    from person_search.core.detect import PersonTracker
    tracker = PersonTracker(det_cfg)
    obs, k = [], 0
    for img in video_frames(path):
        stamp = int(k * S / fps)
        det = tracker.update(Frame(image=img, stamp_ns=stamp, source_id=source, index=k))
        for p in det.people:
            cands = [(iou(p.box, t[2:]), t[0]) for t in truth[k]]
            best = max(cands, default=(0.0, -1))
            obs.append(dict(stamp=stamp, source=source, track=int(p.track_id),
                            gt=best[1] if best[0] >= min_iou else -1, crop=p.crop))
        k += 1
    return obs, k


def identity_scores(obs, ids, min_obs: int):
    """Split / merge shares of an id assignment (one id per observation)."""
    per_gt = defaultdict(Counter)
    per_id = defaultdict(Counter)
    for o, i in zip(obs, ids):
        if o["gt"] < 0:
            continue
        per_gt[o["gt"]][i] += 1
        per_id[i][o["gt"]] += 1
    gts = [g for g, c in per_gt.items() if sum(c.values()) >= min_obs]
    split = [g for g in gts if sum(1 for n in per_gt[g].values() if n >= min_obs) > 1]
    idl = [i for i, c in per_id.items() if sum(c.values()) >= min_obs]
    merged = [i for i in idl if sum(1 for n in per_id[i].values() if n >= min_obs) > 1]
    ids_per = [sum(1 for n in per_gt[g].values() if n >= min_obs) for g in gts]
    # B-cubed over detections: precision = share of a detection's id that is its walker,
    # recall = share of its walker that is in its id (finer than the per-person shares)
    size_id = {i: sum(c.values()) for i, c in per_id.items()}
    size_gt = {g: sum(c.values()) for g, c in per_gt.items()}
    bp = [per_id[i][g] / size_id[i] for i, c in per_id.items() for g, n in c.items() for _ in range(n)]
    br = [per_id[i][g] / size_gt[g] for i, c in per_id.items() for g, n in c.items() for _ in range(n)]
    return {"bcubed_precision": round(float(np.mean(bp)), 3), "bcubed_recall": round(float(np.mean(br)), 3),
            "persons": len(gts), "ids": len(idl), "split_share": round(len(split) / max(1, len(gts)), 3),
            "merge_share": round(len(merged) / max(1, len(idl)), 3),
            "ids_per_person": round(float(np.mean(ids_per)) if ids_per else 0.0, 2)}


def link(obs, feats, model_id, cfg: ReidConfig):
    """Feed a PersonLinker in time order; return the final person id of each observation."""
    lk = PersonLinker(cfg, window_s=3600.0)
    order = sorted(range(len(obs)), key=lambda i: (obs[i]["stamp"], obs[i]["source"]))
    for i in order:
        o = obs[i]
        lk.observe(o["source"], [o["track"]], o["stamp"], feats[i:i + 1], model_id)
    return [lk.person_of(o["source"], o["track"]) for o in obs], lk.stats()


def observe_crowd(args, seed: int, work: Path, enc=None):
    """Crowd video of ``seed`` on cameras A and B, tracked; re-id features of every crop.

    Returns:
        (observations of A then B, their re-id features, the encoder, frames per camera, number from A,
        detector config, seconds spent tracking).
    """
    truth_a = []
    va = make_crowd_video(work / f"cam_a_{seed}.mp4", people=args.people, seconds=args.seconds, fps=args.fps,
                          size=(1280, 720), seed=seed, truth=truth_a)
    truth_b = second_camera(va, work / f"cam_b_{seed}.mp4", truth_a, args.fps)
    yolo = shared_models_dir() / "yolo11n_int8_openvino_model"
    det_cfg = DetectorConfig(backend="yolo" if yolo.is_dir() else "hog", model=str(yolo), conf=0.35)
    t0 = time.perf_counter()
    obs_a, n = track_video(va, "camA", det_cfg, truth_a, args.fps, args.min_iou)
    obs_b, _ = track_video(work / f"cam_b_{seed}.mp4", "camB", det_cfg, truth_b, args.fps, args.min_iou)
    t_det = time.perf_counter() - t0
    enc = enc or ReidEncoder(ReidConfig(model=args.reid_model, threads=args.threads))
    obs = obs_a + obs_b
    feats = np.concatenate([enc.encode([o["crop"] for o in obs[i:i + 64]]) for i in range(0, len(obs), 64)])
    return obs, feats, enc, n, len(obs_a), det_cfg, t_det


def part_identity(args, work: Path, res: dict):
    obs, feats, enc, n, na, det_cfg, t_det = observe_crowd(args, args.seed, work)
    cfg = ReidConfig(link_threshold=args.threshold, link_margin=args.margin, min_link_crops=args.min_link_crops)
    rows = []
    for name, sel in (("camera A", slice(0, na)), ("cameras A+B", slice(0, len(obs)))):
        o, f = obs[sel], feats[sel]
        tracks = identity_scores(o, [(x["source"], x["track"]) for x in o], args.min_obs)
        linked, stats = link(o, f, enc.model_id, cfg)
        rows.append({"view": name, "identity": "tracks only", **tracks})
        rows.append({"view": name, "identity": f"re-id linking (threshold {cfg.link_threshold}, margin "
                                               f"{cfg.link_margin}, {cfg.min_link_crops} crops)",
                     **identity_scores(o, linked, args.min_obs), "links": stats["person_links"]})
    sweep = []  # cameras A+B, linker settings
    for th in args.sweep:
        for margin in args.margins:
            for crops in args.crops:
                linked, stats = link(obs, feats, enc.model_id, ReidConfig(link_threshold=th, link_margin=margin,
                                                                          min_link_crops=crops))
                sweep.append({"threshold": th, "margin": margin, "min_link_crops": crops,
                              **identity_scores(obs, linked, args.min_obs), "links": stats["person_links"]})
    # how far apart are the walkers made from the same real person? (the hard case here)
    same_cut, other_cut = [], []
    gt_feats = defaultdict(list)
    for o, f in zip(obs, feats):
        if o["gt"] >= 0:
            gt_feats[o["gt"]].append(f)
    means = {g: v / np.linalg.norm(v) for g, v in ((g, np.mean(fs, axis=0)) for g, fs in gt_feats.items())}
    for a in means:
        for b in means:
            if a < b:
                (same_cut if a % 4 == b % 4 else other_cut).append(float(means[a] @ means[b]))
    res["identity"] = {
        "video": {"people": args.people, "seconds": args.seconds, "fps": args.fps, "size": "1280x720",
                  "seed": args.seed, "frames_per_camera": n,
                  "second_camera": "mirrored, gamma 1.3 x0.95, half the video later"},
        "detector": f"{det_cfg.backend} {Path(det_cfg.model).name if det_cfg.backend == 'yolo' else ''} "
                    f"bytetrack conf {det_cfg.conf}",
        "detections": len(obs), "matched_to_truth": sum(o["gt"] >= 0 for o in obs),
        "tracks": len({(o["source"], o["track"]) for o in obs}), "track_seconds": round(t_det, 1),
        "min_obs": args.min_obs, "min_link_crops": args.min_link_crops, "rows": rows, "sweep": sweep,
        "cosine_between_walkers": {
            "same_real_person_recoloured": round(float(np.mean(same_cut)), 3) if same_cut else None,
            "different_real_persons": round(float(np.mean(other_cut)), 3) if other_cut else None}}
    for r in rows:
        print(r, flush=True)
    for r in sweep:
        print("sweep", r, flush=True)
    return obs, feats, enc


def part_cost(args, obs, res: dict):
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.core.config import load_config
    from person_search.core.embed_stage import Embedder
    from person_search.core.types import FrameDetections, PersonDetection
    cfg = load_config(ROOT / "config" / "cpu.yaml", {"encoder": {"weights": "", "crop_budget": "all"}})
    enc_cfg = cfg.encoder
    clip = ClipEncoder(enc_cfg, towers=("image",))
    reid = ReidEncoder(ReidConfig(model=args.reid_model, threads=args.threads))
    crops = [o["crop"] for o in obs[: args.cost_crops]]
    frames = [crops[i:i + args.cost_batch] for i in range(0, len(crops), args.cost_batch)]
    stages = {"re-id off": Embedder(enc_cfg, clip), "re-id on": Embedder(enc_cfg, clip, reid=reid)}
    rates = {k: [] for k in stages}

    def det(batch, k):
        return FrameDetections(stamp_ns=k * S, source_id="cam", frame_index=k, frame_size=(1280, 720),
                               people=[PersonDetection(track_id=1000 * k + j, box=(0, 0, 10, 20), score=0.9, crop=c)
                                       for j, c in enumerate(batch)])

    for emb in stages.values():  # warm-up
        emb.embed(det(frames[0], 0))
    for emb in stages.values():
        emb.timing.update(clip_s=0.0, reid_s=0.0, crops=0)
    times = time_interleaved({name: (lambda k, emb=emb: emb.embed(det(frames[k % len(frames)], k)))
                              for name, emb in stages.items()}, seconds=args.cost_seconds, warmup=0, wall=True)
    for name, ts in times.items():
        rates[name] = [len(frames[(k + 1) % len(frames)]) / dt for k, dt in enumerate(ts)]
    k = len(times["re-id on"]) + 1
    on = stages["re-id on"].timing
    res["cost"] = {
        "clip": f"{enc_cfg.arch} {enc_cfg.image_height}x{enc_cfg.image_width} random weights, backend "
                f"{enc_cfg.backend}, threads {enc_cfg.threads} (config/cpu.yaml)",
        "reid": f"{reid.model_id} backend {reid.describe()['backend']}, threads {args.threads}",
        "batch": args.cost_batch, "rounds": k - 1,
        "crops_per_s_reid_off": round(float(np.median(rates["re-id off"])), 2),
        "crops_per_s_reid_on": round(float(np.median(rates["re-id on"])), 2),
        "reid_time_share_of_clip_tower": round(on["reid_s"] / max(on["clip_s"], 1e-9), 3)}
    res["cost"]["slowdown"] = round(res["cost"]["crops_per_s_reid_off"] / res["cost"]["crops_per_s_reid_on"], 3)
    print(res["cost"], flush=True)


def part_graph(args, work: Path, res: dict):
    """The running graph: two embedder nodes on the same /person_crops at the same time, re-id on and off.

    One camera + detector (config/cpu.yaml, the video looping, played live); the graph's own
    embedder runs re-id (``reid.enabled: true``), a second embedder in ``/noreid`` takes the
    same crops with re-id off (and feeds an index of its own). Both share the machine's load
    over the same seconds; their /diagnostics give the crops embedded, the measured throughput
    (crops per busy second, the crop budget's) and the model seconds per crop.
    """
    from benchmarks.graph_probe import DiagnosticsProbe, private_domain
    from person_search.graph import CameraSpec, NodeSpec, node_set
    from person_search.graph.spec import GLOBAL_REMAPS
    from person_search.graph.supervisor import Graph, config_path
    private_domain()
    truth = []
    video = make_crowd_video(work / "graph.mp4", people=args.people, seconds=args.seconds, fps=args.fps,
                             size=(1280, 720), seed=args.seed, truth=truth)
    crops_in = GLOBAL_REMAPS + (("person_crops", "/person_crops"),)
    specs = node_set([CameraSpec("cam0", str(video))], loop=True) + [
        NodeSpec("embedder", "embedder_node", "/noreid", crops_in, {"reid.enabled": False}),
        NodeSpec("index", "index_node", "/noreid")]
    sets = {"encoder.weights": "", "encoder.crop_budget": args.graph_budget, "reid.threads": args.threads}
    probe = DiagnosticsProbe("bench_reid")
    names = {"re-id on": "/embedder: embedder", "re-id off": "/noreid/embedder: embedder"}

    def cells():
        last = probe.latest()
        return {k: _stage(last, suffix) for k, suffix in names.items()}

    load0 = os.getloadavg()
    with Graph(specs, config_path("cpu"), extra_params=sets, log_dir=work / "logs") as graph:
        t_start = time.monotonic()
        while not all(float(c.get("crops", 0) or 0) > 0 for c in cells().values()):
            time.sleep(0.5)
            if graph.dead() or time.monotonic() - t_start > 300:
                raise RuntimeError(f"graph did not start: dead {graph.dead()}; logs in {work / 'logs'}")
        time.sleep(5.0)  # both past their first calls
        first, t0 = cells(), time.monotonic()
        time.sleep(args.graph_seconds)
        last, t1 = cells(), time.monotonic()
        dead = graph.dead()
    probe.close()
    load1 = os.getloadavg()
    wall = t1 - t0
    out = {}
    for k in names:
        a, b = first[k], last[k]
        d = {f: float(b.get(f, 0) or 0) - float(a.get(f, 0) or 0) for f in ("crops", "clip_s", "reid_s")}
        out[k] = {"crops_embedded": int(d["crops"]), "crops_per_wall_s": round(d["crops"] / wall, 2),
                  "throughput_crops_per_busy_s": float(b.get("throughput_crops_s", 0) or 0),
                  "model_s_per_crop": round((d["clip_s"] + d["reid_s"]) / max(d["crops"], 1), 4),
                  "reid_s_per_crop": round(d["reid_s"] / max(d["crops"], 1), 4),
                  "crops_dropped_by_budget": int(float(b.get("crops_dropped", 0) or 0))}
    on, off = out["re-id on"], out["re-id off"]
    res["graph"] = {
        "graph": "config/cpu.yaml, 1 camera (generated crowd 1280x720, looping, played live) + detector; "
                 "embedder with re-id and a second embedder without it on the same /person_crops, same seconds",
        "sets": sets, "seconds": round(wall, 1), "cells": out, "dead_nodes": dead,
        "throughput_ratio_off_over_on": round(off["throughput_crops_per_busy_s"] /
                                              max(on["throughput_crops_per_busy_s"], 1e-9), 3),
        "model_time_ratio_on_over_off": round(on["model_s_per_crop"] / max(off["model_s_per_crop"], 1e-9), 3),
        "reid_share_of_model_time": round(on["reid_s_per_crop"] / max(on["model_s_per_crop"], 1e-9), 3),
        "load_start": [round(v, 2) for v in load0], "load_end": [round(v, 2) for v in load1]}
    print("graph", res["graph"], flush=True)


def _stage(diag: dict, suffix: str) -> dict:
    """The diagnostics of the stage named exactly ``.../<suffix>`` (the root embedder is not /noreid's)."""
    for name, values in diag.items():
        if name.endswith(suffix) and (suffix.startswith("/noreid") or "/noreid" not in name):
            return values
    return {}


def part_text(args, obs, feats, enc, res: dict):
    """Score one text query per walker: mAP over tracks vs over persons (generated captions)."""
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.core.config import EncoderConfig
    cfg = EncoderConfig(arch=args.clip_arch, weights=args.clip_weights, image_height=args.clip_size[0],
                        image_width=args.clip_size[1], threads=args.threads)
    clip = ClipEncoder(cfg)
    tracks = defaultdict(list)
    for i, o in enumerate(obs):
        tracks[(o["source"], o["track"])].append(i)
    keys = [k for k, idx in tracks.items() if Counter(obs[i]["gt"] for i in idx).most_common(1)[0][0] >= 0]
    gt = {k: Counter(obs[i]["gt"] for i in tracks[k]).most_common(1)[0][0] for k in keys}
    img = {k: clip.encode_images([obs[i]["crop"] for i in tracks[k][:: max(1, len(tracks[k]) // 4)]]) for k in keys}
    linked, _ = link(obs, feats, enc.model_id, ReidConfig(link_threshold=args.threshold,
                                                          min_link_crops=args.min_link_crops))
    person = {(o["source"], o["track"]): p for o, p in zip(obs, linked)}
    colours = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
    aps_track, aps_person = [], []
    for g in sorted(set(gt.values())):
        q = clip.encode_text([f"a person in {colours[g % len(colours)]} clothes walking on a street"])[0]
        score = {k: float((img[k] @ q).max()) for k in keys}
        ranked = sorted(keys, key=lambda k: -score[k])
        rel = np.array([gt[k] == g for k in ranked])
        aps_track.append(_ap(rel))
        seen, prel = set(), []
        for k in ranked:  # one entry per person, at its best track (what /query_person answers)
            if person[k] in seen:
                continue
            seen.add(person[k])
            members = [m for m in keys if person[m] == person[k]]
            prel.append(Counter(gt[m] for m in members).most_common(1)[0][0] == g)
        aps_person.append(_ap(np.array(prel)))
    which = f"weights {Path(args.clip_weights).name}" if args.clip_weights else "RANDOM weights: plumbing only"
    res["text"] = {"clip": f"{args.clip_arch} {which}",
                   "queries": len(aps_track), "tracks": len(keys), "persons": len(set(person[k] for k in keys)),
                   "mAP_by_track": round(float(np.mean(aps_track)), 3),
                   "mAP_by_person": round(float(np.mean(aps_person)), 3),
                   "note": "relevant = tracks (persons) whose majority ground-truth walker is the query's walker; "
                           "captions name a colour the walkers were not drawn with: generated, not a caption set"}
    print(res["text"], flush=True)


# colour names of the clothes (OpenCV hue 0..180), for the colour-name "text" scorer of --part rerank
HUE_NAMES = {"red": ((0, 8), (170, 180)), "orange": ((8, 20),), "yellow": ((20, 35),), "green": ((35, 85),),
             "blue": ((85, 130),), "purple": ((130, 170),)}


def colour_shares(crop: np.ndarray) -> np.ndarray:
    """Share of a crop's pixels that are clearly coloured (S > 70, V > 60) in each hue name of HUE_NAMES."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    h, ok = hsv[..., 0], (hsv[..., 1] > 70) & (hsv[..., 2] > 60)
    return np.array([sum(float(np.mean(ok & (h >= lo) & (h < hi))) for lo, hi in spans)
                     for spans in HUE_NAMES.values()], np.float32)


def rank_persons(score: dict, person: dict, mean: dict, how: str, top_n: int = 5, beta: float = 0.5):
    """Rank persons for one query from per-track text scores.

    ``best``: a person's score is its best track's (what /query_person answers today);
    ``mean``: the mean over its tracks; ``reid``: re-ranking with re-id neighbours of the top
    text hits: ``q`` = the text-weighted mean re-id feature of the ``top_n`` best tracks, each
    track's score becomes ``text / best text + beta * cos(track, q)``, then a person's best track.
    Returns (persons best first, the per-track scores used).
    """
    keys = list(score)
    s = dict(score)
    if how == "reid":
        top = sorted(keys, key=lambda k: -score[k])[:top_n]
        q = np.sum([max(score[k], 0.0) * mean[k] for k in top], axis=0)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        best = max(max(score.values()), 1e-12)
        s = {k: score[k] / best + beta * float(mean[k] @ q) for k in keys}
    per = defaultdict(list)
    for k in keys:
        per[person[k]].append(s[k])
    agg = {p: (float(np.mean(v)) if how == "mean" else max(v)) for p, v in per.items()}
    return sorted(agg, key=lambda p: -agg[p]), s


def part_rerank(args, work: Path, res: dict, first=None):
    """Text ranking by person: best track vs mean over tracks vs re-id re-ranking, several crowd seeds.

    The "text" is a colour-name scorer standing in for a trained CLIP (none exists offline):
    the query of a walker names its clothes' main colour (from its own camera-A crops), a
    crop's score is its share of pixels of that colour, a track's score its best crop's.
    """
    methods = ["best"] + ["mean"] + [f"reid b={b}" for b in args.rerank_betas]
    per_seed = []
    enc = first[2] if first else None
    for seed in args.rerank_seeds:
        if first is not None and seed == args.seed:
            obs, feats = first[0], first[1]
        else:
            obs, feats, enc, *_ = observe_crowd(args, seed, work, enc)
        linked, _ = link(obs, feats, enc.model_id, ReidConfig(link_threshold=args.threshold,
                                                              link_margin=args.margin,
                                                              min_link_crops=args.min_link_crops))
        tracks = defaultdict(list)
        for i, o in enumerate(obs):
            tracks[(o["source"], o["track"])].append(i)
        gt = {k: Counter(obs[i]["gt"] for i in idx).most_common(1)[0][0] for k, idx in tracks.items()}
        keys = [k for k in tracks if gt[k] >= 0]
        person = {(o["source"], o["track"]): p for o, p in zip(obs, linked)}
        pgt = {}
        for p in {person[k] for k in keys}:
            pgt[p] = Counter(g for k in keys if person[k] == p for g in [gt[k]] * len(tracks[k])).most_common(1)[0][0]
        shares = np.stack([colour_shares(o["crop"]) for o in obs])
        mean = {k: feats[idx].mean(axis=0) / np.linalg.norm(feats[idx].mean(axis=0)) for k, idx in tracks.items()}
        names = list(HUE_NAMES)
        out = {m: {"ap": [], "r1": []} for m in methods}
        out["by track (no persons)"] = {"ap": [], "r1": []}
        named = []
        for g in sorted(set(gt[k] for k in keys)):
            own = [i for i, o in enumerate(obs) if o["gt"] == g and o["source"] == "camA"]
            if not own:
                continue
            colour = int(np.argmax(shares[own].mean(axis=0)))  # the caption: "a person in <colour> clothes"
            named.append(names[colour])
            score = {k: float(shares[tracks[k], colour].max()) for k in keys}
            ranked_tracks = sorted(keys, key=lambda k: -score[k])
            rel = np.array([gt[k] == g for k in ranked_tracks])
            out["by track (no persons)"]["ap"].append(_ap(rel))
            out["by track (no persons)"]["r1"].append(float(rel[0]))
            for m in methods:
                how, beta = ("reid", float(m.split("=")[1])) if m.startswith("reid") else (m, 0.0)
                ranked, _ = rank_persons(score, person, mean, how, top_n=args.rerank_top, beta=beta)
                prel = np.array([pgt[p] == g for p in ranked])
                out[m]["ap"].append(_ap(prel))
                out[m]["r1"].append(float(prel[0]))
        row = {"seed": seed, "queries": len(out["best"]["ap"]), "tracks": len(keys),
               "persons": len({person[k] for k in keys}),
               "colours_named": sorted(set(named))}
        for m, v in out.items():
            row[m] = {"mAP": round(float(np.mean(v["ap"])), 3), "rank1": round(float(np.mean(v["r1"])), 3)}
        per_seed.append(row)
        print("rerank", row, flush=True)
    summary = {}
    for m in methods + ["by track (no persons)"]:
        maps = np.array([r[m]["mAP"] for r in per_seed])
        r1s = np.array([r[m]["rank1"] for r in per_seed])
        d = maps - np.array([r["best"]["mAP"] for r in per_seed])
        summary[m] = {"mAP_mean": round(float(maps.mean()), 3), "mAP_sd": round(float(maps.std(ddof=1)), 3)
                      if len(maps) > 1 else None,
                      "rank1_mean": round(float(r1s.mean()), 3),
                      "mAP_minus_best_per_seed": [round(float(x), 3) for x in d],
                      "mAP_minus_best_mean": round(float(d.mean()), 3),
                      "mAP_minus_best_sd": round(float(d.std(ddof=1)), 3) if len(d) > 1 else None}
    res["rerank"] = {"text_scorer": "colour name of the walker's clothes (share of crop pixels of that hue, best "
                                    "crop per track): a stand-in for a trained CLIP, none exists offline",
                     "relevant": "persons (linker ids) whose majority walker is the query's walker",
                     "linker": {"threshold": args.threshold, "margin": args.margin,
                                "min_link_crops": args.min_link_crops},
                     "rerank_top_n": args.rerank_top, "seeds": args.rerank_seeds, "per_seed": per_seed,
                     "summary": summary}
    print("rerank summary", summary, flush=True)


def _ap(rel: np.ndarray) -> float:
    hits = np.flatnonzero(rel)
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1))) if hits.size else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["identity", "cost", "text", "rerank", "graph"],
                    choices=["identity", "cost", "text", "rerank", "graph"])
    ap.add_argument("--graph-seconds", type=float, default=60.0, help="measurement of --part graph")
    ap.add_argument("--graph-budget", default="all", help="encoder.crop_budget of both embedders in --part graph")
    ap.add_argument("--rerank-seeds", nargs="+", type=int, default=[0, 1, 2, 3], help="crowd seeds of --part rerank")
    ap.add_argument("--rerank-betas", nargs="+", type=float, default=[0.25, 0.5, 1.0],
                    help="weights of the re-id similarity in the re-ranking")
    ap.add_argument("--rerank-top", type=int, default=5, help="top text hits whose re-id features form the query")
    ap.add_argument("--people", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-iou", type=float, default=0.3, help="detection <-> drawn sprite box")
    ap.add_argument("--min-obs", type=int, default=3, help="an id counts for a walker from this many detections")
    ap.add_argument("--threshold", type=float, default=ReidConfig().link_threshold)
    ap.add_argument("--min-link-crops", type=int, default=ReidConfig().min_link_crops)
    ap.add_argument("--margin", type=float, default=ReidConfig().link_margin)
    ap.add_argument("--sweep", nargs="+", type=float, default=[0.6, 0.7, 0.8, 0.9], help="link thresholds")
    ap.add_argument("--margins", nargs="+", type=float, default=[0.0, ReidConfig().link_margin])
    ap.add_argument("--crops", nargs="+", type=int, default=[3, 6],
                    help="min_link_crops of the sweep")
    ap.add_argument("--reid-model", default=ReidConfig().model)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-crops", type=int, default=256)
    ap.add_argument("--cost-batch", type=int, default=8, help="crops per embed call (people in one frame)")
    ap.add_argument("--cost-seconds", type=float, default=40.0)
    ap.add_argument("--clip-arch", default="PS-Small-ViT")
    ap.add_argument("--clip-weights", default="", help="a trained CLIP checkpoint ('' = random: plumbing only)")
    ap.add_argument("--clip-size", type=int, nargs=2, default=[64, 32])
    ap.add_argument("--out", default=str(ROOT / "docs" / "reid_results.json"))
    ap.add_argument("--replace", action="store_true",
                    help="write only this run's parts (default: merge them into --out, other parts kept)")
    ap.add_argument("--doc", default="", metavar="MD",
                    help="rewrite the document's <!-- results:reid_* --> blocks from --out after the run")
    ap.add_argument("--redraw", action="store_true", help="measure nothing: only rewrite --doc from --out")
    args = ap.parse_args(argv)
    if args.redraw:
        if not args.doc:
            ap.error("--redraw needs --doc")
        try:
            res = json.loads(Path(args.out).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"--out {args.out}: not a readable results file ({exc.__class__.__name__})")
        return write_doc(args.doc, res)
    res = {"command": "python -m benchmarks.bench_reid " + " ".join(argv if argv is not None else sys.argv[1:]),
           "commit": git_commit(), "machine": cpu_line(), "python": platform.python_version(),
           "load_before": [round(v, 2) for v in os.getloadavg()],
           "generated": "walkers cut out of 4 real photo people, re-coloured/mirrored (demo/crowd.py)"}
    print(res["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_reid_") as tmp:
        needs_crowd = bool({"identity", "cost", "text", "rerank"} & set(args.parts))
        if needs_crowd:  # the later parts use its tracks and crops
            obs, feats, enc = part_identity(args, Path(tmp), res)
        if "cost" in args.parts:
            part_cost(args, obs, res)
        if "text" in args.parts:
            part_text(args, obs, feats, enc, res)
        if "rerank" in args.parts:
            part_rerank(args, Path(tmp), res, (obs, feats, enc))
        if "graph" in args.parts:
            part_graph(args, Path(tmp), res)
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    run = {k: res[k] for k in ("command", "commit", "machine", "load_before", "load_after")}
    parts = (["identity"] if needs_crowd else []) + [p for p in ("cost", "text", "rerank", "graph") if p in args.parts]
    key_of = {"identity": "identity", "cost": "cost", "text": "text", "rerank": "rerank", "graph": "graph"}
    for p in parts:
        res[key_of[p]]["run"] = run  # each part says which run wrote it
    out = Path(args.out)
    if out.exists() and not args.replace:  # parts not run now keep their figures (and their own run record)
        old = json.loads(out.read_text())
        old.update({k: v for k, v in res.items()})
        res = old
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {args.out}; load average {res['load_after']}")
    return write_doc(args.doc, res) if args.doc else 0


def _ran(part: dict, key: str) -> str:
    r = part.get("run") or {}
    lb, la = (r.get("load_before") or [float("nan")])[0], (r.get("load_after") or [float("nan")])[0]
    return (f"`{r.get('command', '?')}` (commit {str(r.get('commit', '?'))[:7]}, load average {lb:.1f} at the start, "
            f"{la:.1f} at the end; [reid_results.json](reid_results.json) `{key}`)")


def doc_blocks(res: dict) -> dict:
    """Return the markdown of each part present in ``res`` (the results file), keyed by its document block."""
    out = {}
    head = "| {} | ids per walker | split | merge | B-cubed precision | B-cubed recall |"
    cols = ("ids_per_person", "split_share", "merge_share", "bcubed_precision", "bcubed_recall")
    ident = res.get("identity")
    if ident:
        lines = [f"Written by {_ran(ident, 'identity')}: {ident['detections']} detections, "
                 f"{ident['matched_to_truth']} of them matched to a walker, {ident['tracks']} tracks.", "",
                 head.format("view | identity | walkers"), "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in ident["rows"]:
            lines.append(f"| {r['view']} | {r['identity']} | {r['persons']} | " + " | ".join(str(r[c]) for c in cols)
                         + " |")
        out["reid_identity"] = "\n".join(lines)
        lines = [head.format("threshold | margin | crops"), "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ident["sweep"]:
            lines.append(f"| {r['threshold']} | {r['margin']} | {r['min_link_crops']} | "
                         + " | ".join(str(r[c]) for c in cols) + " |")
        out["reid_sweep"] = "\n".join(lines)
    text = res.get("text")
    if text:
        out["reid_text"] = (f"Written by {_ran(text, 'text')}: {text['queries']} queries over {text['tracks']} tracks "
                            f"({text['persons']} persons after linking); mAP by track {text['mAP_by_track']}, by "
                            f"person {text['mAP_by_person']}; CLIP: {text['clip']}.")
    rr = res.get("rerank")
    if rr:
        n = len(rr.get("seeds", []))
        lines = [f"Written by {_ran(rr, 'rerank')}.", "",
                 f"| ranking of persons | mAP, mean of {n} seeds (sd) | Rank-1 | mAP minus best track, per seed "
                 f"{' / '.join(str(x) for x in rr.get('seeds', []))} | mean (sd) |", "|---|---:|---:|---|---:|"]
        names = {"best": "best track (default)", "mean": "mean over tracks",
                 "by track (no persons)": "(per track, no persons; relevant = tracks)"}
        for k, v in rr["summary"].items():
            label = names.get(k, k.replace("reid b=", "re-id re-ranking b = "))
            if k == "best":
                delta, mean = "-", "-"
            elif k.startswith("by track"):
                delta, mean = "other unit: not comparable", ""
            else:
                delta = " / ".join(f"{x:.3f}" for x in v["mAP_minus_best_per_seed"])
                mean = f"{v['mAP_minus_best_mean']:.3f} ({v['mAP_minus_best_sd']:.3f})"
            lines.append(f"| {label} | {v['mAP_mean']:.3f} ({v['mAP_sd']:.3f}) | {v['rank1_mean']:.3f} | {delta} | "
                         f"{mean} |")
        out["reid_rerank"] = "\n".join(lines)
    cost = res.get("cost")
    if cost:
        out["reid_cost"] = (f"* Embedder stage (`core/embed_stage.py`, what the embedder node runs), written by "
                            f"{_ran(cost, 'cost')}: {cost['clip']}, {cost['reid']}, {cost['batch']} crops per call "
                            f"(real crops from part 1), re-id on and off interleaved ({cost['rounds']} rounds): "
                            f"**{cost['crops_per_s_reid_off']} crops/s off, {cost['crops_per_s_reid_on']} on** "
                            f"(x{cost['slowdown']} time); in the same calls re-id took "
                            f"**{cost['reid_time_share_of_clip_tower']}** of the CLIP tower's time.")
    g = res.get("graph")
    if g:
        c = g["cells"]
        lines = [f"Written by {_ran(g, 'graph')}; {g['seconds']:.0f} s measured, {g['sets']}:", "",
                 f"| embedder node | crops embedded in {g['seconds']:.0f} s | crops/s (wall) | crops per busy second "
                 "(the budget's throughput) | model s per crop | of which re-id |", "|---|---:|---:|---:|---:|---:|"]
        for k in ("re-id off", "re-id on"):
            v = c[k]
            reid = f"{v['reid_s_per_crop']:.3f}" if v["reid_s_per_crop"] else "-"
            lines.append(f"| {k} | {v['crops_embedded']} | {v['crops_per_wall_s']} | "
                         f"{v['throughput_crops_per_busy_s']:.2f} | {v['model_s_per_crop']:.3f} | {reid} |")
        lines += ["", f"Re-id on: x{g['throughput_ratio_off_over_on']} in throughput (crops per busy second, off / "
                  f"on), x{g['model_time_ratio_on_over_off']} in model time per crop; re-id is "
                  f"{g['reid_share_of_model_time']} of the embedder's model time (one run, no interval)."]
        out["reid_graph"] = "\n".join(lines)
    return out


def write_doc(doc: str, res: dict) -> int:
    """Rewrite every reid_* block of ``doc`` that ``res`` has a part for; 1 when a block is missing."""
    from benchmarks.common import replace_block

    ok = [replace_block(doc, name, text) for name, text in doc_blocks(res).items()]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())

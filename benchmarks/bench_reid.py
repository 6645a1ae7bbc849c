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

    python benchmarks/bench_reid.py            # all parts, ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_line  # noqa: E402
from person_search.core.config import DetectorConfig, ReidConfig  # noqa: E402
from person_search.core.gallery.persons import PersonLinker  # noqa: E402
from person_search.core.paths import shared_models_dir  # noqa: E402
from person_search.core.reid.encoder import ReidEncoder  # noqa: E402
from person_search.core.types import Frame  # noqa: E402
from person_search.demo.crowd import make_crowd_video  # noqa: E402

S = 1_000_000_000


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def second_camera(src: Path, dst: Path, truth, fps: int):
    """Camera B: the same people, mirrored, darker, starting half the video later (wraps)."""
    cap = cv2.VideoCapture(str(src))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
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
    cap = cv2.VideoCapture(str(path))
    obs, k = [], 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        stamp = int(k * S / fps)
        det = tracker.update(Frame(image=img, stamp_ns=stamp, source_id=source, index=k))
        for p in det.people:
            cands = [(iou(p.box, t[2:]), t[0]) for t in truth[k]]
            best = max(cands, default=(0.0, -1))
            obs.append(dict(stamp=stamp, source=source, track=int(p.track_id),
                            gt=best[1] if best[0] >= min_iou else -1, crop=p.crop))
        k += 1
    cap.release()
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


def part_identity(args, work: Path, res: dict):
    truth_a = []
    va = make_crowd_video(work / "cam_a.mp4", people=args.people, seconds=args.seconds, fps=args.fps,
                          size=(1280, 720), seed=args.seed, truth=truth_a)
    truth_b = second_camera(va, work / "cam_b.mp4", truth_a, args.fps)
    yolo = shared_models_dir() / "yolo11n_int8_openvino_model"
    det_cfg = DetectorConfig(backend="yolo" if yolo.is_dir() else "hog", model=str(yolo), conf=0.35)
    t0 = time.perf_counter()
    obs_a, n = track_video(va, "camA", det_cfg, truth_a, args.fps, args.min_iou)
    obs_b, _ = track_video(work / "cam_b.mp4", "camB", det_cfg, truth_b, args.fps, args.min_iou)
    t_det = time.perf_counter() - t0
    enc = ReidEncoder(ReidConfig(model=args.reid_model, threads=args.threads))
    obs = obs_a + obs_b
    feats = np.concatenate([enc.encode([o["crop"] for o in obs[i:i + 64]]) for i in range(0, len(obs), 64)])
    na = len(obs_a)
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
    t_end = time.perf_counter() + args.cost_seconds
    k = 1
    while time.perf_counter() < t_end:
        for name, emb in stages.items():  # interleaved: load from other processes hits both alike
            batch = frames[k % len(frames)]
            t0 = time.perf_counter()
            emb.embed(det(batch, k))
            rates[name].append(len(batch) / (time.perf_counter() - t0))
        k += 1
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


def _ap(rel: np.ndarray) -> float:
    hits = np.flatnonzero(rel)
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1))) if hits.size else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["identity", "cost", "text"], choices=["identity", "cost", "text"])
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
    args = ap.parse_args(argv)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    res = {"command": "python benchmarks/bench_reid.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "commit": commit, "machine": cpu_line(), "python": platform.python_version(),
           "load_before": [round(v, 2) for v in os.getloadavg()],
           "generated": "walkers cut out of 4 real photo people, re-coloured/mirrored (demo/crowd.py)"}
    print(res["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_reid_") as tmp:
        obs, feats, enc = part_identity(args, Path(tmp), res)
        if "cost" in args.parts:
            part_cost(args, obs, res)
        if "text" in args.parts:
            part_text(args, obs, feats, enc, res)
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"written {args.out}; load average {res['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

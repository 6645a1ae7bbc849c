"""Does the live graph find the right person? End-to-end accuracy against a captioned crowd's ground truth.

1. Generates a captioned crowd (``make_captioned_crowd``, generated data) whose walkers wear
   held-out colour pairs (never in the training set of ``person-search data crowd``).
2. **Offline upper bound**: the same model (``--model RUN``, trained by the lab) ranks the
   crowd's identities from ground-truth crops cut from the video at the drawn boxes (person
   level: an identity's score is its best crop's cosine); the crops are also written as a
   CUHK-PEDES test split and ``person-search eval`` of the model on it is run (image level).
3. **Live**: starts the real graph (the launcher ``person-search up`` uses: one process per
   node, real DDS; the config's detector: YOLO11n int8 OpenVINO where found, e.g. the shared
   test models, else HOG, and the trained model as the CLIP tower) on the video played like a
   camera, records every crop on ``/person_crops`` and every embedded track on
   ``/person_embeddings``, asks each identity's captions through ``/query_person`` (answers
   by person) and scores the answers: person-level Rank-1/5 and mAP.
4. Where the difference went, per query the offline model gets right and the live graph does
   not: never detected, never embedded, evicted, merged into another person, ranked below
   another (``person_search/lab/eval/groundtruth.py``); per walker: tracks and persons it was
   split over.

Variants (``--variants``): ``reid`` (the CPU config as is: crop budget auto, re-id linking),
``noreid`` (re-id off: one answer per track), ``all`` (re-id, every crop embedded).

``--train`` trains the text model first, in the working folder, by the lab's own commands
(``person-search data crowd`` and ``person-search train`` with ``TRAIN_RECIPE``; about 20 min on
one thread for 1,400 steps), so that one command makes the whole page; the commands and their wall
times go into the results file. Rank-1 figures carry a 95 % bootstrap interval over the crowd's
identities (one training seed, one crowd: the interval covers the queries, not the training).

    python -m benchmarks.bench_e2e --train [--people 12 --seconds 30 --seed 1] [--variants reid,noreid,all]
    python -m benchmarks.bench_e2e --model RUN [--test-data DATA] [--people 10 --seconds 30 --seed 1]
        [--json docs/e2e.json --md docs/e2e.md --png docs/e2e.png]
    python -m benchmarks.bench_e2e --report-only      # redraw docs/e2e.md from docs/e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from benchmarks import lab_proof
from benchmarks.common import new_record, video_frames

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "reid": ({}, "CPU config, re-id linking on (answers by person)"),
    "noreid": ({"reid.enabled": False}, "CPU config, re-id off (one answer per track)"),
    "all": ({"encoder.crop_budget": "all", "encoder.max_crops_per_track_s": 0.0},
            "CPU config, re-id on, every crop embedded (no crop budget)"),
}
GT_MIN_VISIBLE = 0.7  # ground-truth crops: at least this share of the box not covered by nearer walkers
GT_CROPS_PER_ID = 12
MAX_TOP_K = 100  # the query service's limit: every person of a short crowd fits
PART_OF = 0.2  # a shown crop "holds part of" a walker when it covers this share of the walker's drawn box
TRAIN_RECIPE = {  # --train: lab_proof's from-scratch recipe, on `data crowd` crops of other identities
    **lab_proof.MAIN, "arch": lab_proof.ARCH, "images_per_id": 8, "eval_every": 200,
}


def train_commands(work: Path, *, steps: int, seed: int, threads: int) -> Tuple[Path, Path, List[List[str]]]:
    """Return (run folder, data folder, the two ``person-search`` commands) that train the text model."""
    r = TRAIN_RECIPE
    data, run = work / "crowd_pedes", work / "runs" / f"crowd-small-s{seed}"
    return run, data, [
        ["data", "crowd", str(data), "--images-per-id", str(r["images_per_id"]), "--force"],
        ["train", "--data", str(data), "--format", "cuhk-pedes", "--arch", r["arch"], "--image-size", r["size"],
         "--out", str(run), "--mode", "full", "--weights", "", "--max-steps", str(steps), "--batch-size",
         str(r["batch"]), "--lr", str(r["lr"]), "--warmup-steps", str(r["warmup"]), "--loss", r["loss"],
         "--logit-scale", str(r["logit_scale"]), "--threads", str(threads), "--seed", str(seed),
         "--eval-every", str(r["eval_every"])]]


def train_model(work: Path, *, steps: int, seed: int, threads: int) -> Tuple[Path, Path, List[dict]]:
    """Train the text model by the lab's commands (skipped when the run folder is already complete).

    Returns (run folder, data folder, [{command, wall_s}]); a failed command ends the benchmark with its last line.
    """
    import shlex

    from person_search.core.models.run import read_model_json
    run, data, cmds = train_commands(work, steps=steps, seed=seed, threads=threads)
    done: List[dict] = []
    try:
        meta = read_model_json(run)
    except (FileNotFoundError, ValueError):
        meta = None
    walls = work / "train_steps.json"  # what trained the folder's model, kept for a rerun that skips training
    if meta is not None and (data / "reid_raw.json").is_file() and walls.is_file():
        done = json.loads(walls.read_text())
        if [d["command"] for d in done] == ["person-search " + shlex.join(c) for c in cmds]:
            print(f"text model already trained in {run} by the same commands", flush=True)
            return run, data, done
    for c in cmds:
        shown = "person-search " + shlex.join(c)
        print(f"$ {shown}", flush=True)
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "person_search", *c], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit(f"error: `{shown}` failed (exit {p.returncode}); see its output above")
        done.append({"command": shown, "wall_s": round(time.monotonic() - t0, 1)})
    walls.write_text(json.dumps(done, indent=1))
    return run, data, done


def bootstrap_interval(per_query: List[dict], key: str = "r1") -> Tuple[float, float]:
    """95 % bootstrap interval (%) of the mean of ``key`` over queries, drawing the crowd's identities."""
    iv = lab_proof.interval(lab_proof.bootstrap_r1([[q[key] for q in per_query]], [q["id"] for q in per_query]))
    return iv if iv is not None else (float("nan"), float("nan"))


def paired_interval(live: List[dict], offline: List[dict]) -> Tuple[float, float]:
    """95 % bootstrap interval (points) of live R1 - offline R1, paired by query, drawing identities."""
    off = {(q["id"], q["caption"]): q["r1"] for q in offline}
    pairs = [dict(id=q["id"], d=q["r1"] - off[(q["id"], q["caption"])]) for q in live if (q["id"], q["caption"]) in off]
    return bootstrap_interval(pairs, "d") if pairs else (float("nan"), float("nan"))


OWN_TEMPLATES = "the model's own (its run folder's text_templates)"


def model_settings(run: Path) -> Dict[str, object]:
    """Return the graph settings of a lab run folder (model.json + best/last.safetensors).

    ``encoder.weights`` is the run folder itself: the model contract serves it with what it was
    trained with, its input size and attention and the text templates of its captions (the lab
    trains on captions as written: a description goes to the model as it is, not in CLIP's
    "a photo of {}." prompt). The input size is repeated here because the config must match it.
    """
    from person_search.core.models.run import read_model_json, servable
    try:
        meta = read_model_json(run)
        servable(run)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    h, w = meta["image_size"]
    return {"encoder.arch": meta["arch"], "encoder.weights": str(Path(run).resolve()), "encoder.image_height": int(h),
            "encoder.image_width": int(w)}


def _pad(box, w, h, pad=0.05):
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    return (max(0, int(x1 - pad * bw)), max(0, int(y1 - pad * bh)), min(w, int(x2 + pad * bw)),
            min(h, int(y2 + pad * bh)))


def ground_truth_crops(video: Path, truth: dict) -> Dict[int, List[np.ndarray]]:
    """Cut up to GT_CROPS_PER_ID crops per identity at the drawn boxes (mostly visible, not cut by the border)."""
    want: Dict[int, List[Tuple[int, tuple]]] = {}
    for ident in truth["identities"]:
        rows = [r for r in ident["boxes"] if r[5] >= GT_MIN_VISIBLE]
        widths = np.array([r[3] - r[1] for r in rows]) if rows else np.zeros(0)
        rows = [r for r in rows if widths.size and r[3] - r[1] >= 0.9 * np.median(widths)]
        pick = np.linspace(0, len(rows) - 1, min(GT_CROPS_PER_ID, len(rows))).round().astype(int) if rows else []
        want[ident["id"]] = [(rows[i][0], tuple(rows[i][1:5])) for i in sorted(set(pick))]
    by_frame: Dict[int, List[Tuple[int, tuple]]] = {}
    for i, items in want.items():
        for f, box in items:
            by_frame.setdefault(f, []).append((i, box))
    out: Dict[int, List[np.ndarray]] = {i: [] for i in want}
    for f, img in enumerate(video_frames(video)):
        for i, box in by_frame.get(f, []):
            x1, y1, x2, y2 = _pad(box, img.shape[1], img.shape[0])
            out[i].append(img[y1:y2, x1:x2].copy())
    return out


def queries_of(truth: dict) -> List[Tuple[int, str]]:
    """Return (identity, caption) for every caption of every identity."""
    return [(i["id"], c) for i in truth["identities"] for c in i["captions"]]


def offline_upper_bound(settings: dict, crops: Dict[int, List[np.ndarray]], queries) -> dict:
    """Rank the identities by their best ground-truth crop's cosine with each caption; person-level metrics.

    Each caption is encoded the way the live query service encodes it (``QueryEngine`` with the
    graph's ``query.templates`` where ``settings`` set them, else the model's own), so that offline
    and live differ only by what the graph does to the crops, not by the text sent to the model.
    """
    from person_search.core.config import EncoderConfig, QueryConfig
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.core.query import QueryEngine
    from person_search.lab.eval.groundtruth import rank_scores
    cfg = EncoderConfig(arch=settings["encoder.arch"], weights=settings["encoder.weights"],
                        image_height=settings["encoder.image_height"], image_width=settings["encoder.image_width"],
                        threads=1, backend="torch")
    enc = ClipEncoder(cfg)
    qcfg = QueryConfig(templates=list(settings["query.templates"])) if "query.templates" in settings else QueryConfig()
    engine = QueryEngine(enc, qcfg)
    ids = [i for i in crops if crops[i]]
    feats = {i: enc.encode_images(crops[i]) for i in ids}
    text = np.stack([engine.encode(c) for _, c in queries])
    rows = []
    for (target, cap), t in zip(queries, text):
        score = {i: float((feats[i] @ t).max()) for i in ids}
        order = sorted(ids, key=lambda i: -score[i])
        rows.append({"id": target, "caption": cap, **rank_scores(order, target), "top": order[:5]})
    return {"per_query": rows, **summary(rows), "identities": len(ids), "model_id": enc.model_id,
            "crops": {str(i): len(crops[i]) for i in crops}, "templates": list(engine.templates)}


def summary(rows: List[dict]) -> dict:
    """Mean Rank-1 / Rank-5 / mAP (%) over queries."""
    n = max(1, len(rows))
    return {"R1": round(100 * sum(r["r1"] for r in rows) / n, 2), "R5": round(100 * sum(r["r5"] for r in rows) / n, 2),
            "mAP": round(100 * sum(r["ap"] for r in rows) / n, 2), "queries": len(rows)}


def write_gt_pedes(root: Path, truth: dict, crops: Dict[int, List[np.ndarray]]) -> Path:
    """Write the ground-truth crops as a CUHK-PEDES test split (for ``person-search eval``)."""
    import cv2
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    caps = {i["id"]: i["captions"] for i in truth["identities"]}
    recs = []
    for i, items in crops.items():
        for n, img in enumerate(items):
            rel = f"{i:03d}_{n:02d}.jpg"
            cv2.imwrite(str(root / "imgs" / rel), img)
            recs.append({"split": "test", "id": int(i), "file_path": rel, "captions": caps[i]})
    (root / "reid_raw.json").write_text(json.dumps(recs))
    return root


class Recorder:
    """Record every crop (stamp, box) per track and every embedded track, on a background executor."""

    def __init__(self):
        from benchmarks.graph_probe import background_node
        self.lock = threading.Lock()
        self.tracks: Dict[tuple, list] = {}
        self.embedded: set = set()
        self.frame_size = None
        self.thumbs: Dict[int, bytes] = {}  # stamp -> the detector's frame thumbnail (JPEG)
        self.jpegs: Dict[int, tuple] = {}  # hash of a crop's JPEG -> (stamp, box): which moment a shown crop is
        self.gallery = 0
        self.node, self.executor = background_node("bench_e2e")

    def subscribe_when_graph_listens(self, graph, timeout: float) -> None:
        """Subscribe once the embedder and the index listen (the detector starts on its first subscriber)."""
        from std_msgs.msg import Int64
        from person_search.nodes.qos import RELIABLE_QOS
        from person_search_interfaces.msg import PersonCrops, PersonEmbeddings
        t_end = time.monotonic() + timeout
        while self.node.count_subscribers("/person_crops") < 1 or self.node.count_subscribers("/person_embeddings") < 1:
            if time.monotonic() > t_end:
                raise RuntimeError("the embedder / index never subscribed")
            bad = {n: c for n, c in graph.dead().items()}
            if bad:
                raise RuntimeError(f"node(s) exited while starting: {bad}")
            time.sleep(0.1)
        self.node.create_subscription(PersonCrops, "/person_crops", self.on_crops, RELIABLE_QOS)
        self.node.create_subscription(PersonEmbeddings, "/person_embeddings", self.on_emb, RELIABLE_QOS)
        self.node.create_subscription(Int64, "/index/gallery_size", self.on_size, RELIABLE_QOS)

    def on_crops(self, msg):
        s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.frame_size = (int(msg.frame_width), int(msg.frame_height))
            if msg.frame_thumbnail.data:
                self.thumbs[s] = bytes(msg.frame_thumbnail.data)
            for p in msg.people:
                self.tracks.setdefault((msg.header.frame_id, int(p.track_id)), []).append((s, list(p.box)))
                if p.crop.data:
                    self.jpegs[hash(bytes(p.crop.data))] = (s, list(p.box))

    def on_emb(self, msg):
        with self.lock:
            for t in msg.track_ids:
                self.embedded.add((msg.header.frame_id, int(t)))

    def on_size(self, msg):
        self.gallery = int(msg.data)

    def close(self):
        import rclpy
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


SMALL = (96, 54)  # frames are matched to thumbnails at this size (grey)


def small_picture(jpeg: bytes) -> np.ndarray:
    """Decode a JPEG to a small grey picture (SMALL) for frame matching."""
    import cv2
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(img, SMALL, interpolation=cv2.INTER_AREA)


def small_frames(video: Path) -> np.ndarray:
    """Every frame of the video as a small grey picture (SMALL)."""
    import cv2
    return np.stack([cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), SMALL, interpolation=cv2.INTER_AREA)
                     for img in video_frames(video)])


def _keys(m) -> List[tuple]:
    keys = [(c, int(t)) for c, t in zip(m.cameras, m.person_track_ids)]
    return keys or [(m.camera_frame_id, int(m.track_id))]


def detector_line(log_dir: Path) -> str:
    """The detector node's description of its model, from its log (what actually ran)."""
    for p in sorted(log_dir.glob("*detector*.log")):
        for line in p.read_text(errors="replace").splitlines():
            low = line.lower()
            if "yolo" in low or "hog" in low:
                return line.strip()[-200:]
    return "unknown (no detector log line)"


def run_live(video: Path, truth: dict, settings: dict, variant: str, config: str, work: Path,
             timeout: float) -> dict:
    """Run the graph on the video, ask every caption, score the answers against the ground truth."""
    from person_search.cli.ros import query_service
    from person_search.lab.eval.groundtruth import (CAUSES, CrowdTruth, align_clock, assign_tracks,
                                                    frames_by_content, loss_cause, mean_best_iou, person_label,
                                                    rank_scores)
    from person_search.graph import CameraSpec
    from person_search.graph.supervisor import make_graph
    sets = dict(settings)
    sets.update(VARIANTS[variant][0])
    sets["ros.wait_for_subscribers_s"] = float(timeout)  # models load before the first frame is taken
    log_dir = work / f"logs_{variant}"
    graph = make_graph(config, [CameraSpec("cam0", str(video))], loop=False, extra_params=sets, log_dir=log_dir)
    rec = Recorder()
    t0 = time.monotonic()
    answers = {}
    with graph:
        rec.subscribe_when_graph_listens(graph, timeout)
        print(f"[{variant}] graph listening after {time.monotonic() - t0:.0f} s; playing "
              f"{truth['frames'] / truth['args']['fps']:.0f} s of video", flush=True)
        last, changed = -1, time.monotonic()
        while time.monotonic() - t0 < timeout + 2 * truth["frames"] / truth["args"]["fps"]:
            time.sleep(0.5)
            dead = graph.dead()
            bad = {n: c for n, c in dead.items() if not n.endswith("/camera")}
            if bad:
                raise RuntimeError(f"node(s) died: {bad}; logs in {log_dir}")
            if rec.gallery != last:
                last, changed = rec.gallery, time.monotonic()
            if any(n.endswith("/camera") for n in dead) and last > 0 and time.monotonic() - changed > 4.0:
                break
        print(f"[{variant}] video done; gallery {rec.gallery} embeddings; asking "
              f"{len(queries_of(truth))} captions", flush=True)
        queries = queries_of(truth)
        every = query_service(queries[0][1], top_k=MAX_TOP_K, by_track=True, return_crops=False, timeout=30)
        if not every.success:
            raise RuntimeError(f"query failed: {every.message}")
        in_gallery = {(m.camera_frame_id, int(m.track_id)) for m in every.matches}
        if len(in_gallery) >= MAX_TOP_K:
            print(f"[{variant}] warning: {len(in_gallery)} tracks answered, the service's limit: 'evicted' may "
                  f"count tracks beyond it", flush=True)
        for n, (_, cap) in enumerate(queries):
            resp = query_service(cap, top_k=MAX_TOP_K, return_crops=True, timeout=30)
            if not resp.success:
                raise RuntimeError(f"query failed: {resp.message}")
            answers[n] = [(_keys(m), float(m.score), bytes(m.crop.data), (m.camera_frame_id, int(m.track_id)),
                           list(m.box)) for m in resp.matches]
    rec.close()
    det = detector_line(log_dir)

    ct = CrowdTruth(truth)
    scale = truth["args"]["size"][0] / rec.frame_size[0] if rec.frame_size else 1.0
    sample = [(s, [v * scale for v in b]) for crops in rec.tracks.values() for s, b in crops]
    sample = sample[:: max(1, len(sample) // 1500)]
    clock, clock_iou = align_clock(ct, sample)
    # each crops message's frame, found by its picture (the detector's thumbnail) among the video's frames:
    # exact whatever the live camera's clock did; the piecewise clock for stamps without a thumbnail
    by_content = frames_by_content(small_frames(video), {s: small_picture(j) for s, j in rec.thumbs.items()})
    t0_ns = {s: by_content.get(s, -1) if s in by_content else int(round((s - clock.t0(s)) * ct.fps / 1e9))
             for crops in rec.tracks.values() for s, _ in crops}
    align_iou = mean_best_iou(ct, sample, t0_ns)
    tracks = assign_tracks(ct, rec.tracks, t0_ns, scale)

    def shown_crop(best_track, box):
        """(frame, box in truth pixels) of the crop an answer shows (its best crop), None if not recorded."""
        for s, b in rec.tracks.get(best_track, []):
            if max(abs(u - v) for u, v in zip(b, box)) < 0.5:
                return t0_ns.get(s, -1), [v * scale for v in b]
        return None

    def shown_walker(keys, best_track, box):
        """The walker of the crop the answer shows (its best crop), else the person's majority walker."""
        at = shown_crop(best_track, box)
        if at is not None:
            w, _ = ct.match(*at)
            if w >= 0:
                return w
        return person_label(keys, tracks)

    def holds_part_of(target, best_track, box) -> bool:
        """True when the shown crop holds >= PART_OF of the asked walker's drawn box (an occluder or neighbour)."""
        at = shown_crop(best_track, box)
        if at is None:
            return False
        ids, boxes = ct.at(at[0])
        for i, b in zip(ids, boxes):
            if i == target:
                x1, y1, x2, y2 = at[1]
                iw = max(0.0, min(x2, b[2]) - max(x1, b[0]))
                ih = max(0.0, min(y2, b[3]) - max(y1, b[1]))
                return iw * ih >= PART_OF * max(1e-9, (b[2] - b[0]) * (b[3] - b[1]))
        return False

    def crop_walker(jpeg: bytes) -> int:
        """The walker the answer's JPEG crop shows (the track's best-quality crop), -1 if not found."""
        hit = rec.jpegs.get(hash(jpeg)) if jpeg else None
        if hit is None or hit[0] not in t0_ns:
            return -1
        return ct.match(t0_ns[hit[0]], [v * scale for v in hit[1]])[0]

    rows, crops_for_png = [], {}
    shown_differs = 0
    for n, (target, cap) in enumerate(queries):
        persons = [a[0] for a in answers[n]]
        labels = [shown_walker(a[0], a[3], a[4]) for a in answers[n]]
        pictured = [crop_walker(a[2]) for a in answers[n][:5]]
        shown_differs += int(bool(labels) and pictured[0] >= 0 and pictured[0] != labels[0])
        r = {"id": target, "caption": cap, **rank_scores(labels, target), "top": labels[:5],
             "cause": loss_cause(target, tracks, rec.embedded, in_gallery, persons,
                                 first_label=labels[0] if labels else None)}
        if r["cause"] == CAUSES[4] and answers[n]:
            r["first_holds_part_of_target"] = holds_part_of(target, answers[n][0][3], answers[n][0][4])
        rows.append(r)
        crops_for_png[n] = [(lab, a[2], pic) for lab, a, pic in zip(labels[:5], answers[n][:5], pictured)]
    per_walker = {}
    for w in ct.ids:
        mine = [k for k, t in tracks.items() if t.walker == w]
        persons_of = set()
        for n, ans in answers.items():
            for keys, *_ in ans:
                if set(keys) & set(mine):
                    persons_of.add(tuple(sorted(keys)))
            break  # one query's answer lists every person
        per_walker[str(w)] = {"tracks": len(mine), "embedded_tracks": len(set(mine) & rec.embedded),
                              "persons": len(persons_of), "crops": sum(tracks[k].matched for k in mine)}
    unmatched = sum(1 for t in tracks.values() if t.walker < 0)
    impure = sum(1 for t in tracks.values() if t.walker >= 0 and t.purity < 0.9)
    return {"variant": variant, "what": VARIANTS[variant][1], "sets": {k: v for k, v in sets.items()},
            "detector": det, "per_query": rows, **summary(rows),
            "causes": {c: sum(1 for r in rows if r["cause"] == c) for c in CAUSES},
            "ranked_below_by_a_crop_holding_part_of_the_target": sum(
                1 for r in rows if r.get("first_holds_part_of_target")),
            "tracks": len(tracks), "tracks_unmatched": unmatched, "tracks_impure": impure,
            "embedded_tracks": len(rec.embedded), "gallery_tracks": len(in_gallery),
            "persons_answered": len(answers[0]) if answers else 0, "align_mean_iou": round(align_iou, 3),
            "clock_pieces_s": [round((t - clock.pieces[0][1]) / 1e9, 2) for _, t in clock.pieces],
            "clock_mean_iou": round(clock_iou, 3), "thumbnails": len(rec.thumbs),
            "first_answer_crop_shows_another_walker": shown_differs,
            "track_purity": sorted(round(t.purity, 2) for t in tracks.values()),
            "per_walker": per_walker, "_png": crops_for_png}


def loss_rows(offline: dict, live: dict) -> dict:
    """Queries the offline model ranks first and the live graph does not, by cause; and the reverse."""
    lost: Dict[str, int] = {}
    gained = 0
    for o, v in zip(offline["per_query"], live["per_query"]):
        if o["r1"] and not v["r1"]:
            lost[v["cause"] or "?"] = lost.get(v["cause"] or "?", 0) + 1
        elif v["r1"] and not o["r1"]:
            gained += 1
    return {"lost": lost, "gained": gained}


def picture(path: Path, truth: dict, gt: Dict[int, List[np.ndarray]], live: dict, n_rows: int = 6) -> None:
    """Query -> the live graph's top-5 crops, green when they are the identity asked for, red when not."""
    import cv2
    H, W = 128, 64
    rows = []
    for n, q in enumerate(live["per_query"][: 2 * n_rows: 2]):
        n *= 2
        text = np.full((H, 360, 3), 255, np.uint8)
        words, line, y = q["caption"].split(), "", 18
        for w in words:
            if len(line) + len(w) > 46:
                cv2.putText(text, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
                line, y = "", y + 18
            line += (" " if line else "") + w
        cv2.putText(text, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(text, f"truth ->  live rank {q['rank'] or '-'}", (4, H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (90, 90, 90), 1, cv2.LINE_AA)
        ref = gt[q["id"]][0] if gt.get(q["id"]) else np.zeros((H, W, 3), np.uint8)
        cells = [text, cv2.copyMakeBorder(cv2.resize(ref, (W - 8, H - 8)), 4, 4, 4, 4, cv2.BORDER_CONSTANT,
                                          value=(200, 200, 200)), np.full((H, 12, 3), 255, np.uint8)]
        for lab, jpg, pic in live["_png"][n]:
            img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR) if jpg else None
            img = np.zeros((H, W, 3), np.uint8) if img is None else img
            shows = pic if pic >= 0 else lab
            colour = (40, 170, 40) if shows == q["id"] else (40, 40, 220)
            cell = cv2.copyMakeBorder(cv2.resize(img, (W - 8, H - 8)), 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=colour)
            if pic >= 0 and pic != lab:  # the crop shown is not of the walker whose embedding matched
                cv2.rectangle(cell, (W - 16, 0), (W - 1, 15), (0, 215, 255), -1)
            cells.append(cell)
        while len(cells) < 8:
            cells.append(np.full((H, W, 3), 255, np.uint8))
        rows.append(np.hstack(cells))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    if rows:
        cv2.imwrite(str(path), np.vstack(rows))


def _fmt_r1(best: dict) -> str:
    """The validation Rank-1 of model.json's ``best`` (its ``metrics`` or, in older runs, flat)."""
    r1 = (best.get("metrics") or best).get("R1")
    return f"{r1:.1f} % on the data folder's val split" if isinstance(r1, (int, float)) else "not recorded"


def render_md(doc: dict) -> str:
    """The results page, from the results file alone."""
    run = doc["run"]
    off = doc["offline"]
    lines = ["# End-to-end accuracy: does the live graph find the right person?", "",
             "Written by `python -m benchmarks.bench_e2e --report-only` from [e2e.json](e2e.json); the figures "
             "come from",
             f"`{doc['command']}`", "",
             "**Generated data and self-trained weights**: the crowd is real photo people re-coloured on a drawn "
             "street (`person_search/demo/crowd.py`); the text model is a "
             f"`{doc['model']['arch']}` trained here from random init by the lab on crops of the same generator "
             "(`person-search data crowd`, other identities; the crowd's walkers wear colour pairs held out of "
             "training). No pretrained CLIP exists on this machine. These figures are not comparable with any "
             "real-dataset figure.", "",
             f"Run {run['run_id']}, commit `{run['commit']}`, {run['machine']['cpu']} ({run['machine']['cores']} "
             f"cores, shared with other jobs), load average {run['load1_start']} at the start, "
             f"{doc.get('load1_end', '?')} at the end. Crowd: {doc['crowd']['people']} walkers, "
             f"{doc['crowd']['seconds']:g} s at {doc['crowd']['fps']} fps, {doc['crowd']['size']}, seed "
             f"{doc['crowd']['seed']}; {off['queries']} queries ({doc['crowd']['captions_per_id']} captions per "
             f"identity); chance Rank-1 {100 / max(1, off['identities']):.1f} %.", "",
             "## Live answers against the offline upper bound (person level)", "",
             "Offline: the same model ranks the crowd's identities from ground-truth crops cut at the drawn boxes "
             f"(up to {GT_CROPS_PER_ID} per identity, >= {int(100 * GT_MIN_VISIBLE)} % visible; an identity "
             "scores its best crop). Live: the answers of `/query_person`, each answered person labelled with "
             "the walker most of its tracks' crops overlap (IoU >= 0.3); Rank-k = the identity among the first "
             "k persons, AP over the answer list. Mean over queries, %.", "",
             "Text sent to the model: live, the query service's templates "
             + ", ".join(f"{v['variant']} {v['sets'].get('query.templates', OWN_TEMPLATES)}" for v in doc["variants"])
             + "; offline, " + (f"the same through `QueryEngine` ({off['templates']})" if off.get("templates")
                                else "the bare caption (this run predates the fix: offline and live sent the model "
                                     "different text, see test/ros/test_e2e_small.py)") + ".", "",
             f"Brackets: 95 % bootstrap interval over the crowd's {off['identities']} identities (2,000 draws; "
             "one crowd, one trained model: it covers the choice of people and queries, not the training seed); "
             "'live - offline' is paired by query.", "",
             "| variant | live R1 [95 %] | live R5 | live mAP | offline R1 [95 %] | live - offline R1 [95 %] | "
             "offline R5 | offline mAP | lost (offline R1 hit, live miss) | gained |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    oiv = bootstrap_interval(off["per_query"])
    for v in doc["variants"]:
        lost = ", ".join(f"{k}: {n}" for k, n in v["loss"]["lost"].items()) or "none"
        liv, div = bootstrap_interval(v["per_query"]), paired_interval(v["per_query"], off["per_query"])
        lines.append(f"| {v['what']} | {v['R1']:.1f} [{liv[0]:.1f}, {liv[1]:.1f}] | {v['R5']:.1f} | "
                     f"{v['mAP']:.1f} | {off['R1']:.1f} [{oiv[0]:.1f}, {oiv[1]:.1f}] | "
                     f"{v['R1'] - off['R1']:+.1f} [{div[0]:+.1f}, {div[1]:+.1f}] | {off['R5']:.1f} | "
                     f"{off['mAP']:.1f} | {lost} | {v['loss']['gained']} |")
    lines += ["", "Detector (from its log): " + "; ".join(sorted({v["detector"].split("] ")[-1]
                                                                  for v in doc["variants"]})), "",
              "## Where the difference went", "",
              "Every live miss, by its first cause in pipeline order (`lab/eval/groundtruth.py`: never detected -> "
              "never embedded -> evicted -> merged with another walker -> ranked below another), and the track "
              "bookkeeping of each run.", "",
              "| variant | misses | " + " | ".join(doc["causes"]) + " | tracks | tracks with no walker | impure "
              "tracks | embedded tracks | tracks in gallery | persons answered | persons per walker | stamp "
              "alignment IoU |",
              "|---|---:|" + "---:|" * len(doc["causes"]) + "---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in doc["variants"]:
        misses = sum(v["causes"].values())
        lines.append(f"| {v['variant']} | {misses} | " + " | ".join(str(v["causes"][c]) for c in doc["causes"])
                     + f" | {v['tracks']} | {v['tracks_unmatched']} | {v['tracks_impure']} | {v['embedded_tracks']}"
                     f" | {v['gallery_tracks']} | {v['persons_answered']} | "
                     f"{np.mean([w['persons'] for w in v['per_walker'].values()]):.1f} | {v['align_mean_iou']} |")
    lines += ["", "Track purity (share of a track's matched crops on its majority walker; 'impure' = below 0.9), "
              "median per variant: " + ", ".join(
                  f"{v['variant']} {np.median(v['track_purity']):.2f}" for v in doc["variants"]
                  if v.get("track_purity")) + ". Each crop's video frame is found by its picture (the detector's "
              "frame thumbnail against the video's frames, `groundtruth.frames_by_content`), exact whatever the "
              "live camera's clock did; the capture clock alone (piecewise, `align_clock`) fits as well here "
              "(mean IoU " + ", ".join(f"{v['variant']} {v.get('clock_mean_iou', '?')}" for v in doc["variants"])
              + "): the camera's video clock moved on by " + ", ".join(
                  f"{v['variant']} {-min(v.get('clock_pieces_s') or [0]):.1f} s" for v in doc["variants"])
              + " during the run."]
    lines += ["", "Of the 'ranked below another' misses, those whose first answer shows a crop that covers >= "
              f"{int(100 * PART_OF)} % of the asked walker's drawn box (a neighbour or occluder in the same crop): "
              + ", ".join(f"{v['variant']} {v.get('ranked_below_by_a_crop_holding_part_of_the_target', '?')}"
                          for v in doc["variants"]) + "."]
    lines += ["", "Per walker (tracks it was split over / of them embedded / persons they made):", "",
              "| walker | outfit | " + " | ".join(v["variant"] for v in doc["variants"]) + " |",
              "|---|---|" + "---|" * len(doc["variants"])]
    for ident in doc["identities"]:
        w = str(ident["id"])
        cells = [f"{v['per_walker'][w]['tracks']} / {v['per_walker'][w]['embedded_tracks']} / "
                 f"{v['per_walker'][w]['persons']}" for v in doc["variants"]]
        lines.append(f"| {w} | {ident['outfit']} | " + " | ".join(cells) + " |")
    lab = doc.get("lab_eval") or {}
    lines += ["", "## The lab's figures of the same model (image level, IRRA's metrics)", "",
              "| split | command | R1 | R5 | R10 | mAP |", "|---|---|---:|---:|---:|---:|"]
    for name, e in lab.items():
        if e.get("t2i"):
            t = e["t2i"]
            lines.append(f"| {name} | `{e['command']}` | {t['R1']:.2f} | {t['R5']:.2f} | {t['R10']:.2f} | "
                         f"{t['mAP']:.2f} |")
        else:
            lines.append(f"| {name} | `{e['command']}` | {e.get('error', 'not run')} | | | |")
    m = doc["model"]
    if m.get("trained_here"):
        best = m.get("best") or {}
        lines += ["", "Training (run by the command above, `--train`): " + " then ".join(
            f"`{t['command']}`" + (f" ({t['wall_s'] / 60:.1f} min)" if t.get("wall_s") else "")
            for t in m["train_steps"]) + f"; {m.get('steps', '?')} steps, best.safetensors = step "
            f"{best.get('step', '?')} (validation Rank-1 {_fmt_r1(best)})."]
    else:
        train = m["train_command"]
        note = ""
        if " (" in train and train.endswith(")"):
            train, note = train[:train.index(" (")], " (" + train[train.index(" (") + 2:]
        lines += ["", "Training (run by hand, not by this command: its folder and steps as the page says): "
                  + " then ".join(f"`{c.strip()}`" for c in train.split("&&") if c.strip()) + note]
    lines += ["",
              "![query -> live answers](e2e.png)", "",
              "Picture: each row a query (caption), the ground-truth crop of the identity asked for (grey), then "
              "the live graph's first five answered persons as the service returns them. The border is the "
              "walker of the embedding that matched (the answer's `box`; what Rank-k counts): green = the "
              "identity asked for, red = another. The crop shown is the track's best-quality crop, which the "
              "gallery keeps apart from the matching embedding: when the track switched people between the two "
              "(a tracker id switch on crossing walkers; see 'impure tracks' above) the crop shows another "
              "walker than the border says (several rows here). A yellow corner would mark it where the crop's JPEG "
              "is found byte for byte among the detector's crops; the embedder re-encodes the crop it keeps "
              "(`crop_thumbnail`), so it is never found and no corner shows (first answers marked: "
              + ", ".join(f"{v['variant']} {v.get('first_answer_crop_shows_another_walker', '?')}"
                          for v in doc["variants"]) + ").", ""]
    return "\n".join(lines)


def lab_eval(data: Path, run: Path, name: str, work: Path) -> dict:
    """Run ``person-search eval`` on a CUHK-PEDES test split; return its JSON (and the command)."""
    out = work / f"eval_{name}.json"
    cmd = [sys.executable, "-m", "person_search", "eval", "--data", str(data), "--split", "test", "--weights",
           str(run), "--threads", "1", "--json", str(out)]
    shown = f"person-search eval --data {data} --split test --weights {run}"
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0 or not out.is_file():
        return {"command": shown, "error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    res = json.loads(out.read_text())
    t2i = res.get("t2i") or res.get("metrics", {}).get("t2i") or res
    return {"command": shown, "t2i": {k: float(t2i[k]) for k in ("R1", "R5", "R10", "mAP") if k in t2i}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="lab run folder (model.json + best.safetensors) of the text model")
    ap.add_argument("--train", action="store_true",
                    help="train the text model first, under --work, by the lab's commands (TRAIN_RECIPE; "
                         "~20 min on one thread); its data folder's test split is also evaluated")
    ap.add_argument("--train-steps", type=int, default=TRAIN_RECIPE["steps"])
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--train-threads", type=int, default=1)
    ap.add_argument("--train-command", default="", help="the command that trained --model (for the page)")
    ap.add_argument("--test-data", help="the `data crowd` folder: also run `person-search eval` on its test split")
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--size", default="960x540")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--captions", type=int, default=2, help="captions (queries) per identity")
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--variants", default="reid,noreid")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds for the graph to load its models")
    ap.add_argument("--work", help="working folder (default: a new temporary one)")
    ap.add_argument("--json", default="docs/e2e.json")
    ap.add_argument("--md", default="docs/e2e.md")
    ap.add_argument("--png", default="docs/e2e.png")
    ap.add_argument("--report-only", action="store_true", help="redraw --md from --json")
    a = ap.parse_args(argv)
    if a.report_only:
        Path(a.md).write_text(render_md(json.loads(Path(a.json).read_text())))
        print(f"wrote {a.md}")
        return 0
    if bool(a.model) == bool(a.train):
        print("error: give --model RUN (a lab run folder) or --train (train one here), not both" if a.model else
              "error: --model RUN (a lab run folder) or --train is required", file=sys.stderr)
        return 2
    variants = [v for v in a.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"error: unknown variant(s) {bad}; choose from {sorted(VARIANTS)}", file=sys.stderr)
        return 2
    from benchmarks.graph_probe import private_domain

    from person_search.demo.crowd import make_captioned_crowd
    from person_search.lab.eval.groundtruth import CAUSES
    w, h = (int(v) for v in a.size.lower().split("x"))
    record = new_record(vars(a), "bench_e2e")
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_e2e_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    trained = []
    if a.train:
        model_dir, data_dir, trained = train_model(work, steps=a.train_steps, seed=a.train_seed,
                                                   threads=a.train_threads)
        a.model, a.test_data = str(model_dir), a.test_data or str(data_dir)
    run = Path(a.model).resolve()
    settings = model_settings(run)
    private_domain(120)
    video, tpath = make_captioned_crowd(work / "crowd.mp4", people=a.people, seconds=a.seconds, fps=a.fps,
                                        size=(w, h), seed=a.seed, split="test", captions_per_id=a.captions)
    truth = json.loads(tpath.read_text())
    gt = ground_truth_crops(video, truth)
    queries = queries_of(truth)
    offline = offline_upper_bound(settings, gt, queries)
    print(f"offline upper bound ({offline['identities']} identities, {offline['queries']} queries): R1 "
          f"{offline['R1']:.1f}, R5 {offline['R5']:.1f}, mAP {offline['mAP']:.1f}", flush=True)
    gt_data = write_gt_pedes(work / "gt_pedes", truth, gt)
    lab = {"ground-truth crops of this crowd": lab_eval(gt_data, run, "gt", work)}
    if a.test_data:
        lab["held-out test split of `data crowd`"] = lab_eval(Path(a.test_data), run, "test", work)
    lives = []
    for v in variants:
        live = run_live(video, truth, settings, v, a.config, work, a.timeout)
        live["loss"] = loss_rows(offline, live)
        print(f"[{v}] live R1 {live['R1']:.1f}, R5 {live['R5']:.1f}, mAP {live['mAP']:.1f} vs offline R1 "
              f"{offline['R1']:.1f}; lost {live['loss']['lost']}, gained {live['loss']['gained']}; misses by cause "
              f"{live['causes']}; load {os.getloadavg()[0]:.2f}", flush=True)
        lives.append(live)
    if lives:
        picture(Path(a.png), truth, gt, lives[0])
    for live in lives:
        live.pop("_png", None)
    meta = json.loads((run / "model.json").read_text())
    doc = {"run": record, "load1_end": round(os.getloadavg()[0], 2),
           "command": "python -m benchmarks.bench_e2e " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": {"arch": meta.get("arch"), "image_size": meta.get("image_size"), "run": str(run),
                     "train_command": " && ".join(t["command"] for t in trained) if trained else a.train_command,
                     "trained_here": bool(trained), "train_steps": trained, "best": meta.get("best"),
                     "steps": meta.get("steps")},
           "crowd": {"people": a.people, "seconds": a.seconds, "fps": a.fps, "size": a.size, "seed": a.seed,
                     "captions_per_id": a.captions},
           "identities": [{k: i[k] for k in ("id", "outfit", "captions")} for i in truth["identities"]],
           "causes": list(CAUSES), "offline": offline, "lab_eval": lab, "variants": lives}
    Path(a.json).write_text(json.dumps(doc, indent=1, default=str))
    Path(a.md).write_text(render_md(doc))
    print(f"wrote {a.json}, {a.md}, {a.png}; load average at the end {doc['load1_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

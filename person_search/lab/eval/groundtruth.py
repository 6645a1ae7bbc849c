"""Score what a running graph answered against a generated crowd's ground truth (no ROS).

The crowd generator (``make_captioned_crowd``) knows, per frame, the box of every walker. A
graph reports tracks as (stamp, box) crops on ``/person_crops`` and answers queries with
persons made of tracks. This module

* finds the video time of the stamps (``align_stamps``: a live camera stamps frames at
  capture on the wall clock, so the offset of frame 0 is searched for: the one that makes the
  reported boxes overlap the drawn ones best; ``align_clock`` does it piece by piece, since a
  camera that fell a second behind moves its video clock on),
* gives every track its walker (``assign_tracks``: each crop goes to the walker whose box it
  overlaps most, IoU >= ``MIN_IOU`` as in the re-id benchmark; the track to its majority),
* scores a ranked answer list against the identity asked for (``rank_scores``: Rank-k and
  average precision over the list), and
* says why an identity was lost (``loss_cause``: never detected, never embedded, evicted,
  merged into another person, or ranked below another).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

MIN_IOU = 0.3
CAUSES = ("never detected", "never embedded", "evicted", "merged with another walker", "ranked below another")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU of every box of ``a`` (N x 4, x1 y1 x2 y2) with every box of ``b`` (M x 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


class CrowdTruth:
    """A captioned crowd's ground truth (the dict ``make_captioned_crowd`` writes), indexed by frame."""

    def __init__(self, doc: dict):
        """Index the boxes of ``doc`` (the parsed ``.truth.json``) by frame."""
        self.doc = doc
        self.fps = float(doc["args"]["fps"])
        self.size = tuple(doc["args"]["size"])  # (width, height)
        self.frames = int(doc["frames"])
        self.ids = [int(i["id"]) for i in doc["identities"]]
        per: Dict[int, Tuple[List[int], List[List[float]], List[float]]] = {}
        for ident in doc["identities"]:
            for f, x1, y1, x2, y2, vis in ident["boxes"]:
                ids, boxes, shares = per.setdefault(int(f), ([], [], []))
                ids.append(int(ident["id"]))
                boxes.append([x1, y1, x2, y2])
                shares.append(float(vis))
        self._per = {f: (np.array(i), np.array(b, np.float64)) for f, (i, b, _) in per.items()}
        self._vis = {f: np.array(v, np.float64) for f, (_, _, v) in per.items()}

    def at(self, frame: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return (walker ids, boxes) drawn in a frame (empty arrays outside the video)."""
        return self._per.get(int(frame), (np.zeros(0, int), np.zeros((0, 4))))

    def match(self, frame: int, box: Sequence[float]) -> Tuple[int, float]:
        """Return (walker, IoU) of the walker a reported box is of in ``frame`` (-1: no IoU reaches MIN_IOU).

        Among the walkers whose drawn box overlaps it by IoU >= MIN_IOU, the one with the
        largest IoU x visible share: two walkers of one cut-out on neighbouring lanes have
        near-equal boxes when one passes in front of the other, and the detector sees the one in
        front.
        """
        ids, boxes = self.at(frame)
        if len(ids) == 0:
            return -1, 0.0
        iou = iou_matrix(np.asarray(box, np.float64)[None], boxes)[0]
        if iou.max() < MIN_IOU:
            return -1, float(iou.max())
        k = int(np.argmax(np.where(iou >= MIN_IOU, iou * self._vis[int(frame)], -1.0)))
        return int(ids[k]), float(iou[k])


class StampClock:
    """Capture stamp -> video frame, piecewise: a live camera that falls a second behind moves its video clock on.

    ``pieces`` are (first stamp ns, t0 ns): from that stamp on, frame = (stamp - t0) x fps.
    """

    def __init__(self, pieces: Sequence[Tuple[int, int]]):
        """Keep the pieces sorted by their first stamp."""
        self.pieces = sorted((int(a), int(b)) for a, b in pieces)

    def t0(self, stamp_ns: int) -> int:
        """Return the t0 of the piece a stamp falls in (the first piece's before it)."""
        t0 = self.pieces[0][1]
        for start, t in self.pieces:
            if stamp_ns < start:
                break
            t0 = t
        return t0


def _frame_of(stamp_ns: int, t0_ns, fps: float) -> int:
    if isinstance(t0_ns, dict):  # stamp -> frame, found from the frames themselves (``frames_by_content``)
        return int(t0_ns.get(stamp_ns, -1))
    t0 = t0_ns.t0(stamp_ns) if isinstance(t0_ns, StampClock) else t0_ns
    return int(round((stamp_ns - t0) * fps / 1e9))


def frames_by_content(video_frames: np.ndarray, thumbs: Dict[int, np.ndarray]) -> Dict[int, int]:
    """Find the video frame of each stamp by its picture: the frame nearest (mean absolute difference) to it.

    Args:
        video_frames: (N, h, w) grey frames of the video, all at one small size.
        thumbs: stamp -> (h, w) grey picture of what the graph saw at that stamp (e.g. the
            frame thumbnail the detector sends with its crops, resized to (h, w)).

    Returns:
        stamp -> frame index. Exact whatever the camera's clock did (late frames, skips).
    """
    vf = video_frames.reshape(len(video_frames), -1).astype(np.float32)
    out = {}
    for stamp, img in thumbs.items():
        d = np.abs(vf - img.reshape(1, -1).astype(np.float32)).mean(axis=1)
        out[int(stamp)] = int(np.argmin(d))
    return out


def align_clock(truth: "CrowdTruth", crops: Sequence[Tuple[int, Sequence[float]]], *, chunk_s: float = 2.0,
                search_s: float = 3.0, step_s: float = 0.01) -> Tuple[StampClock, float]:
    """Align stamps piece by piece (``chunk_s`` of stamps each): a live camera's video clock jumps forward.

    The first piece is searched as ``align_stamps`` does; each later one from the previous
    piece's t0 back by up to ``search_s`` (the camera skipped video) to a frame forward (jitter).
    A piece with fewer than 5 crops keeps the previous t0. Returns the clock and the mean best
    IoU of all crops under it.
    """
    if not crops:
        raise ValueError("no crops to align")
    crops = sorted(crops, key=lambda c: c[0])
    chunks: List[list] = []
    for c in crops:
        if not chunks or c[0] - chunks[-1][0][0] > chunk_s * 1e9:
            chunks.append([])
        chunks[-1].append(c)
    t0, _ = align_stamps(truth, chunks[0], search_s=search_s, step_s=step_s)
    pieces = [(chunks[0][0][0], t0)]
    for ch in chunks[1:]:
        if len(ch) >= 5:
            t0 = _best_t0(truth, ch, np.arange(t0 - search_s * 1e9, t0 + 1e9 / truth.fps + 1, step_s * 1e9))[0]
        pieces.append((ch[0][0], t0))
    clock = StampClock(pieces)
    return clock, _mean_best_iou(truth, crops, clock)


def mean_best_iou(truth: "CrowdTruth", crops, t0) -> float:
    """Return the mean over crops of the best IoU with a drawn box of the frame ``t0`` maps its stamp to."""
    return _mean_best_iou(truth, crops, t0)


def _mean_best_iou(truth: "CrowdTruth", crops, t0) -> float:
    total = 0.0
    for s, box in crops:
        ids, boxes = truth.at(_frame_of(s, t0, truth.fps))
        if len(ids):
            total += float(iou_matrix(np.asarray(box, np.float64)[None], boxes).max())
    return total / max(1, len(crops))


def _best_t0(truth: "CrowdTruth", crops, candidates) -> Tuple[int, float]:
    best = (int(candidates[0]), -1.0)
    for t0 in candidates:
        mean = _mean_best_iou(truth, crops, int(t0))
        if mean > best[1]:
            best = (int(t0), mean)
    return best


def align_stamps(truth: CrowdTruth, crops: Sequence[Tuple[int, Sequence[float]]], *,
                 search_s: float = 3.0, step_s: float = 0.01) -> Tuple[int, float]:
    """Find the capture stamp of frame 0: the offset whose frames make the crops' boxes overlap the truth most.

    Args:
        truth: the crowd's ground truth.
        crops: (stamp ns, box) of reported crops (a few hundred are plenty).
        search_s: how far before the first crop's stamp frame 0 may have been captured.
        step_s: search step.

    Returns:
        (t0 ns, mean best IoU of the crops at that offset).
    """
    if not crops:
        raise ValueError("no crops to align")
    first = min(s for s, _ in crops)
    offsets = np.arange(-search_s, step_s / 2 + 1.0 / truth.fps, step_s)
    return _best_t0(truth, crops, [first + off * 1e9 for off in offsets])


@dataclass
class TrackTruth:
    """The walker a track belongs to: majority of its crops' walkers."""

    walker: int  # -1: no crop matched a walker
    purity: float  # share of the track's matched crops that are of that walker
    crops: int  # crops reported for the track
    matched: int  # crops matched to some walker


def assign_tracks(truth: CrowdTruth, tracks: Dict[Hashable, Sequence[Tuple[int, Sequence[float]]]],
                  t0_ns, scale: float = 1.0) -> Dict[Hashable, TrackTruth]:
    """Give each track its walker (``scale`` = truth pixels per reported pixel, when the source was downscaled).

    ``t0_ns``: the capture stamp of frame 0 (``align_stamps``), a ``StampClock`` (``align_clock``) or a
    dict stamp -> frame (``frames_by_content``; stamps not in it match nothing).
    """
    out = {}
    for key, crops in tracks.items():
        votes: Counter = Counter()
        for s, box in crops:
            w, _ = truth.match(_frame_of(s, t0_ns, truth.fps), [v * scale for v in box])
            if w >= 0:
                votes[w] += 1
        n = sum(votes.values())
        if n:
            w, c = votes.most_common(1)[0]
            out[key] = TrackTruth(int(w), c / n, len(crops), n)
        else:
            out[key] = TrackTruth(-1, 0.0, len(crops), 0)
    return out


def rank_scores(labels: Sequence[int], target: int, ks: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """Score one ranked answer list (a walker per answer, -1 unknown) for the walker asked for.

    Returns ``r<k>`` (1.0 when the target is among the first k), ``ap`` (average precision over
    the list: mean of the precision at each answer of the target; 0 when it is absent) and
    ``rank`` (1-based position of its first answer, 0 when absent).
    """
    hits = [i for i, lab in enumerate(labels) if lab == target]
    out = {f"r{k}": float(bool(hits) and hits[0] < k) for k in ks}
    out["ap"] = float(np.mean([(n + 1) / (i + 1) for n, i in enumerate(hits)])) if hits else 0.0
    out["rank"] = hits[0] + 1 if hits else 0
    return out


def person_label(track_keys: Sequence[Hashable], tracks: Dict[Hashable, TrackTruth]) -> int:
    """Return the walker of an answered person: the majority over its tracks' matched crops (-1 unknown)."""
    votes: Counter = Counter()
    for k in track_keys:
        t = tracks.get(k)
        if t is not None and t.walker >= 0:
            votes[t.walker] += t.matched
    return votes.most_common(1)[0][0] if votes else -1


def loss_cause(walker: int, tracks: Dict[Hashable, TrackTruth], embedded: set, in_gallery: set,
               answers: Sequence[Sequence[Hashable]], first_label: Optional[int] = None) -> Optional[str]:
    """Say why a walker's person is not the first answer (None when it is).

    Args:
        walker: the walker asked for.
        tracks: every track's walker (``assign_tracks``).
        embedded: keys of tracks that reached ``/person_embeddings``.
        in_gallery: keys of tracks in the gallery when asked (the by-track answer of every track).
        answers: the answered persons, best first, each as its track keys.
        first_label: the walker the first answer shows (e.g. the walker of its best crop);
            None = the majority walker of its tracks.

    The first cause that applies, in pipeline order: ``never detected`` (no track is the
    walker's), ``never embedded`` (none of them was embedded), ``evicted`` (embedded, but none
    is in the gallery now), ``merged with another walker`` (the first answer holds a track of
    this walker but shows another: a track switch or a wrong re-id link), else ``ranked below
    another``.
    """
    mine = {k for k, t in tracks.items() if t.walker == walker}
    first = first_label if first_label is not None or not answers else person_label(answers[0], tracks)
    if answers and first == walker:
        return None
    if not mine:
        return CAUSES[0]
    if not mine & embedded:
        return CAUSES[1]
    if not mine & in_gallery:
        return CAUSES[2]
    if answers and mine & set(answers[0]):
        return CAUSES[3]
    return CAUSES[4]

"""Scoring live answers against a crowd's ground truth: stamp alignment, track -> walker, ranks, causes."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.lab.eval.groundtruth import (CAUSES, CrowdTruth, StampClock, TrackTruth, align_clock, align_stamps,
                                                assign_tracks, frames_by_content, iou_matrix, loss_cause, person_label,
                                                rank_scores)

FPS = 10


def _doc(frames=40):
    """Two walkers crossing each other: 0 moves right, 1 moves left, 8 px per frame."""
    ids = []
    for w, (x0, v) in enumerate(((0, 8), (400, -8))):
        boxes = [[f, x0 + v * f, 100, x0 + v * f + 60, 260, 1.0] for f in range(frames)]
        ids.append({"id": w, "boxes": boxes})
    return {"args": {"fps": FPS, "size": [640, 360]}, "frames": frames, "identities": ids}


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(iou_matrix(a, b), [[1, 1 / 3, 0]] * 2)


@pytest.mark.parametrize("t0", [1_000_000_000_000, 1_000_000_123_456_789])
def test_align_recovers_the_capture_stamp_of_frame_0(t0):
    ct = CrowdTruth(_doc())
    rng = np.random.default_rng(0)
    crops = []
    for f in range(3, 40, 2):  # the first frames were not detected; 20 ms capture jitter
        for ident in ct.doc["identities"]:
            _, x1, y1, x2, y2, _ = ident["boxes"][f]
            crops.append((t0 + int(f * 1e8 + rng.uniform(0, 2e7)), [x1 + 2, y1, x2 + 2, y2]))
    got, iou = align_stamps(ct, crops)
    assert abs(got - t0) < 0.5e8 and iou > 0.8  # within half a frame


def test_clock_follows_a_camera_that_skipped_video():
    """Frames 0-19 stamped from t0; then the camera fell 1 s behind and moved on: frames 20-29 never came."""
    ct = CrowdTruth(_doc(60))
    t0 = 7_000_000_000
    crops, walker0 = [], []
    for f in [*range(20), *range(30, 60)]:
        stamp = t0 + int(f * 1e8) if f < 20 else t0 + int((f - 10) * 1e8) + 1  # frame 30 comes at 2.0 s
        for ident in ct.doc["identities"]:
            _, x1, y1, x2, y2, _ = ident["boxes"][f]
            crops.append((stamp, [x1, y1, x2, y2]))
            if ident["id"] == 0:
                walker0.append(crops[-1])
    _, one = align_stamps(ct, crops)
    clock, iou = align_clock(ct, crops)
    assert iou > 0.9 > one  # one offset cannot fit both parts
    assert abs(clock.t0(t0 + int(5e8)) - t0) < 0.5e8 and abs(clock.t0(t0 + int(4.5e9)) - (t0 - int(1e9))) < 0.5e8
    got = assign_tracks(ct, {"a": walker0}, clock)["a"]
    assert got.walker == 0 and got.purity > 0.95
    assert StampClock([(5, 1), (2, 0)]).t0(3) == 0


def test_frames_found_by_their_picture():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (30, 18, 32)).astype(np.uint8)
    noisy = {1000 + k: np.clip(video[f].astype(int) + rng.integers(-20, 20, video[f].shape), 0, 255)
             for k, f in enumerate((0, 3, 4, 29, 17))}
    got = frames_by_content(video, noisy)
    assert [got[1000 + k] for k in range(5)] == [0, 3, 4, 29, 17]
    ct = CrowdTruth(_doc())
    _, x1, y1, x2, y2, _ = ct.doc["identities"][1]["boxes"][17]
    assert assign_tracks(ct, {"t": [(1004, [x1, y1, x2, y2])], "u": [(5, [x1, y1, x2, y2])]}, got) == {
        "t": TrackTruth(1, 1.0, 1, 1), "u": TrackTruth(-1, 0.0, 1, 0)}


def test_tracks_get_their_majority_walker_and_purity():
    ct = CrowdTruth(_doc())
    t0 = 5_000_000_000

    def crop(w, f):
        _, x1, y1, x2, y2, _ = ct.doc["identities"][w]["boxes"][f]
        return (t0 + int(f * 1e8), [x1, y1, x2, y2])

    tracks = {("cam0", 1): [crop(0, f) for f in range(10)],
              ("cam0", 2): [crop(1, f) for f in range(6)] + [crop(0, f) for f in range(6, 8)],  # a switch
              ("cam0", 3): [(t0, [600, 0, 640, 20])]}  # matches nobody
    got = assign_tracks(ct, tracks, t0)
    assert got[("cam0", 1)] == TrackTruth(0, 1.0, 10, 10)
    assert got[("cam0", 2)].walker == 1 and got[("cam0", 2)].purity == pytest.approx(0.75)
    assert got[("cam0", 3)].walker == -1
    # downscaled source: boxes at half size match with scale 2
    half = {k: [(s, [v / 2 for v in b]) for s, b in c] for k, c in tracks.items() if k[1] == 1}
    assert assign_tracks(ct, half, t0, scale=2.0)[("cam0", 1)].walker == 0
    assert person_label([("cam0", 1), ("cam0", 2)], got) == 0  # 10 crops of walker 0 beat 8 of walker 1
    assert person_label([("cam0", 3)], got) == -1


def test_a_box_goes_to_the_walker_in_front():
    doc = {"args": {"fps": FPS, "size": [640, 360]}, "frames": 1,
           "identities": [{"id": 0, "boxes": [[0, 100, 100, 160, 260, 0.1]]},  # behind, nearly hidden
                          {"id": 1, "boxes": [[0, 104, 98, 166, 262, 1.0]]}]}
    ct = CrowdTruth(doc)
    assert ct.match(0, [100, 100, 160, 260])[0] == 1  # IoU with walker 0 is higher, but walker 1 is in front
    assert ct.match(0, [400, 100, 460, 260]) == (-1, 0.0)


def test_rank_scores():
    assert rank_scores([3, 1, 2], 3) == {"r1": 1.0, "r5": 1.0, "ap": 1.0, "rank": 1}
    r = rank_scores([1, 3, 2, 3], 3)
    assert (r["r1"], r["r5"], r["rank"]) == (0.0, 1.0, 2) and r["ap"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert rank_scores([1, 2, 4, 5, 6, 3], 3)["r5"] == 0.0
    assert rank_scores([], 3) == {"r1": 0.0, "r5": 0.0, "ap": 0.0, "rank": 0}


def test_loss_causes_in_pipeline_order():
    T = TrackTruth
    tracks = {"a": T(0, 1.0, 5, 5), "b": T(1, 1.0, 5, 5), "c": T(1, 1.0, 2, 2), "d": T(2, 1.0, 9, 9)}
    answers = [["a", "c"], ["b"], ["d"]]
    assert loss_cause(0, tracks, {"a", "b", "c"}, {"a", "b", "c"}, answers) is None  # first answer is walker 0
    assert loss_cause(3, tracks, {"a"}, {"a"}, answers) == CAUSES[0]  # never detected
    assert loss_cause(2, tracks, {"a", "b"}, {"a", "b"}, answers) == CAUSES[1]  # d never embedded
    assert loss_cause(2, tracks, {"d"}, {"a", "b"}, answers) == CAUSES[2]  # embedded, then evicted
    assert loss_cause(1, tracks, {"b", "c"}, {"b", "c"}, answers) == CAUSES[3]  # c went into walker 0's person
    assert loss_cause(2, tracks, {"d"}, {"d"}, answers) == CAUSES[4]
    # the first answer's shown crop decides when given: walker 0's person showing walker 1 (a track switch)
    assert loss_cause(0, tracks, {"a", "c"}, {"a", "c"}, answers, first_label=1) == CAUSES[3]
    assert loss_cause(1, tracks, {"b", "c"}, {"b", "c"}, answers, first_label=1) is None

"""Detection + tracking with real detectors: OpenCV HOG on real photos, a random-weight YOLO."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from person_search.core.config import DetectorConfig, VideoConfig
from person_search.core.detect import (
    PersonTracker,
    check_image,
    crop_box,
    crop_quality,
)
from person_search.core.errors import WeightsError
from person_search.core.types import Frame, FrameDetections
from person_search.core.video import open_source
from person_search.demo.sample import make_sample_video, sample_images

BUS_PEOPLE = [(48, 398, 245, 902), (222, 408, 344, 857), (670, 380, 810, 876)]  # rough, full res 810x1080


def _frame(image, i=0) -> Frame:
    return Frame(image=image, stamp_ns=1_000_000 + i, source_id="cam", index=i)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return cv2.imread(str(sample_images()[0]))


@pytest.fixture(scope="module")
def sample_mp4(tmp_path_factory) -> Path:
    return make_sample_video(tmp_path_factory.mktemp("sample") / "sample.mp4", seconds=2.0, fps=10)


def test_hog_finds_a_person_on_bus(bus):
    with PersonTracker(DetectorConfig(backend="hog", hog_max_width=800)) as tr:
        assert tr.backend_name == "hog"
        dets = tr.detect(bus)
        assert len(dets) >= 1
        best = max(max(_iou(d[:4], p) for p in BUS_PEOPLE) for d in dets)
        assert best > 0.3  # at least one box lies on a real person
        out = tr.update(_frame(bus))  # first frame: tracks start at once
    assert isinstance(out, FrameDetections) and out.frame_size == (810, 1080)
    assert len(out.people) >= 1
    for p in out.people:
        x1, y1, x2, y2 = p.box
        assert 0 <= x1 < x2 <= 810 and 0 <= y1 < y2 <= 1080
        assert (y2 - y1) > (x2 - x1)  # standing people are tall
        assert p.crop.dtype == np.uint8 and p.crop.ndim == 3 and 0 < p.quality <= 1 and 0 < p.score <= 1


def test_tracker_keeps_ids_over_sample_video(sample_mp4):
    frames_by_id = defaultdict(list)
    n = 0
    with open_source(VideoConfig(source=str(sample_mp4), realtime=False)) as src, \
            PersonTracker(DetectorConfig(backend="hog")) as tr:
        for f in src:
            for p in tr.update(f).people:
                frames_by_id[p.track_id].append(f.index)
            n += 1
    assert n == 20
    # the bus scene is the first 14 frames: its two people keep one id each
    stable = [tid for tid, idx in frames_by_id.items() if len(idx) >= 10]
    assert len(stable) >= 2, dict(frames_by_id)
    for tid in stable:  # consecutive frames, no id switch
        idx = frames_by_id[tid]
        assert idx == list(range(idx[0], idx[0] + len(idx)))


def test_min_box_filter(bus):
    frame = _frame(bus)
    with PersonTracker(DetectorConfig(backend="hog", hog_max_width=800)) as tr:
        heights = [p.box[3] - p.box[1] for p in tr.update(frame).people]
    assert heights
    limit = int(max(heights)) + 1
    with PersonTracker(DetectorConfig(backend="hog", hog_max_width=800, min_box_h=limit)) as tr:
        assert tr.update(frame).people == []
    with PersonTracker(DetectorConfig(backend="hog", hog_max_width=800, min_box_w=4000)) as tr:
        assert tr.update(frame).people == []


def test_crop_padding_and_clipping():
    img = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    crop, (x1, y1, x2, y2) = crop_box(img, (50, 20, 90, 60), 0.25)
    assert (x1, y1, x2, y2) == (40, 10, 100, 70) and crop.shape == (60, 60, 3)
    assert np.array_equal(crop, img[10:70, 40:100])
    crop, (x1, y1, x2, y2) = crop_box(img, (-10, 80, 30, 120), 0.5)  # over the corner
    assert (x1, y1, x2, y2) == (0, 60, 50, 100) and crop.shape == (40, 50, 3)


def test_tracked_crops_are_padded_boxes(bus):
    with PersonTracker(DetectorConfig(backend="hog", hog_max_width=800, crop_pad=0.1)) as tr:
        people = tr.update(_frame(bus)).people
    assert people
    for p in people:
        x1, y1, x2, y2 = p.box
        ex_h = min(1080, np.ceil(y2 + 0.1 * (y2 - y1))) - max(0, np.floor(y1 - 0.1 * (y2 - y1)))
        ex_w = min(810, np.ceil(x2 + 0.1 * (x2 - x1))) - max(0, np.floor(x1 - 0.1 * (x2 - x1)))
        assert p.crop.shape[:2] == (ex_h, ex_w)


def test_quality_prefers_sharp_crops(bus):
    crop = bus[398:902, 48:245].copy()
    blurred = cv2.GaussianBlur(crop, (0, 0), 4)
    q_sharp, q_blur = crop_quality(crop, 504, 0.8), crop_quality(blurred, 504, 0.8)
    assert q_sharp > 1.5 * q_blur > 0
    assert crop_quality(crop, 504, 0.8) > crop_quality(crop, 60, 0.8)  # bigger is better
    assert crop_quality(crop, 504, 0.9) > crop_quality(crop, 504, 0.3)  # surer is better


@pytest.mark.parametrize("bad", [
    np.zeros((40, 30), np.uint8),  # gray
    np.zeros((40, 30, 4), np.uint8),  # RGBA
    np.zeros((40, 30, 3), np.float32),  # float
    np.zeros((0, 30, 3), np.uint8),  # empty
    "not an array",
])
def test_bad_frames_refused(bad):
    with PersonTracker(DetectorConfig(backend="hog")) as tr:
        with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
            tr.update(_frame(bad))
    with pytest.raises(ValueError):
        check_image(bad)


def test_yolo_missing_weights_fails_fast(tmp_path):
    missing = tmp_path / "no_such_yolo.pt"
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match="no_such_yolo.pt.*models/README.md"):
        PersonTracker(DetectorConfig(backend="yolo", model=str(missing)))
    assert time.monotonic() - t0 < 2.0
    assert issubclass(WeightsError, RuntimeError)


def test_auto_falls_back_to_hog(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="person_search.core.detect"):
        tr = PersonTracker(DetectorConfig(backend="auto", model=str(tmp_path / "absent.pt")))
    assert tr.backend_name == "hog"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "absent.pt" in warnings[0].getMessage()
    tr.close()


@pytest.fixture(scope="module")
def random_yolo(tmp_path_factory) -> Path:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "yolo11n_random.pt"
    YOLO("yolo11n.yaml").save(str(path))  # built from yaml: random weights, no download
    return path


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_yolo_backend_call_path(random_yolo, bus, tracker):
    # random weights score ~2e-4: a tiny conf lets boxes reach the tracker, and without
    # score fusion the tracker can match them by IoU alone
    cfg = DetectorConfig(backend="yolo", model=str(random_yolo), imgsz=256, conf=0.0001, tracker=tracker)
    with PersonTracker(cfg, tracker_args={"fuse_score": False}) as tr:
        assert tr.backend_name == "yolo"
        dets = tr.detect(bus)
        assert dets.ndim == 2 and dets.shape[1] == 6 and np.all(dets[:, 5] == 0)  # person class only
        outs = [tr.update(_frame(bus, i)) for i in range(2)]
    for out in outs:
        assert isinstance(out, FrameDetections) and out.frame_size == (810, 1080)
    assert outs[1].people, "random-weight boxes should be tracked"
    ids = [p.track_id for p in outs[1].people]
    assert len(set(ids)) == len(ids) and min(ids) >= 1
    assert set(ids) & {p.track_id for p in outs[0].people}  # same image twice: same ids


def test_auto_uses_yolo_when_weights_exist(random_yolo):
    with PersonTracker(DetectorConfig(backend="auto", model=str(random_yolo), imgsz=128)) as tr:
        assert tr.backend_name == "yolo"


def test_reset_never_reuses_ids(bus):
    with PersonTracker(DetectorConfig(backend="hog", hog_max_width=800)) as tr:
        first = {p.track_id for p in tr.update(_frame(bus)).people}
        tr.reset()
        second = {p.track_id for p in tr.update(_frame(bus, 1)).people}
    assert first and second and not (first & second)

"""The crowded-scene generator: real people from the bundled photos on a drawn street."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from person_search.cli import main as cli_main
from person_search.core.config import DetectorConfig
from person_search.core.paths import shared_models_dir
from person_search.demo.crowd import make_crowd_video


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    return make_crowd_video(tmp_path_factory.mktemp("c") / "crowd.mp4", people=12, seconds=1.0, fps=5,
                            size=(1280, 720))


def test_crowd_video_size_length_motion_and_seed(crowd, tmp_path):
    frames = _frames(crowd)
    assert len(frames) == 5 and frames[0].shape == (720, 1280, 3)
    assert np.abs(frames[4].astype(int) - frames[0].astype(int)).mean() > 2  # people move
    again = _frames(make_crowd_video(tmp_path / "again.mp4", people=12, seconds=0.2, fps=5, size=(1280, 720)))
    assert np.array_equal(again[0], frames[0])  # seeded: the same scene


def test_the_pretrained_detector_sees_a_crowd(crowd):
    pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    model = shared_models_dir() / "yolo11n_int8_openvino_model"
    if not model.is_dir():
        pytest.skip(f"pretrained YOLO11n OpenVINO model not in {shared_models_dir()} (shared test data)")
    from person_search.core.detect import PersonTracker
    with PersonTracker(DetectorConfig(backend="yolo", model=str(model))) as tr:
        counts = [len(tr.detect(f)) for f in _frames(crowd)]
    assert max(counts) >= 10, counts


def test_sample_video_crowd_command(tmp_path, capsys):
    out = tmp_path / "c.mp4"
    assert cli_main(["sample-video", str(out), "--crowd", "3", "--seconds", "0.4", "--size", "640x360"]) == 0
    assert str(out) in capsys.readouterr().out and _frames(out)[0].shape == (360, 640, 3)
    assert cli_main(["sample-video", str(out), "--crowd", "3", "--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err

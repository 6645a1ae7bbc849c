"""OpenVINO YOLO on the CPU: the real pretrained int8 YOLO11n (shared test data) and our export path."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest

from person_search.cli import main as cli_main
from person_search.core.config import DetectorConfig, load_config
from person_search.core.detect import PersonTracker
from person_search.core.paths import shared_models_dir
from person_search.core.types import Frame
from person_search.demo.sample import sample_images
from person_search.graph import config_path

OV_NAME = "yolo11n_int8_openvino_model"
pytest.importorskip("openvino", reason="the openvino runtime is not installed (pip install -r requirements.txt)")


@pytest.fixture(scope="module")
def ov_model() -> Path:
    d = shared_models_dir() / OV_NAME
    if not (d / "yolo11n.xml").is_file():
        pytest.skip(f"pretrained {OV_NAME} not found in {shared_models_dir()} (shared test data; set "
                    f"PERSON_SEARCH_SHARED_MODELS, or export it: models/README.md)")
    return d


@pytest.fixture(scope="module")
def bus():
    return cv2.imread(str(sample_images()[0]))


def test_real_openvino_yolo_finds_all_four_people_on_bus(ov_model, bus):
    with PersonTracker(DetectorConfig(backend="yolo", model=str(ov_model))) as tr:
        assert tr.backend_name == "yolo" and "openvino" in tr.detector.description
        dets = tr.detect(bus)
        assert len(dets) == 4 and (dets[:, 5] == 0).all()
        assert (dets[:, 4] > 0.3).all()
        tracked = [tr.update(Frame(image=bus, stamp_ns=i + 1, source_id="cam", index=i)) for i in range(3)]
    ids = [{p.track_id for p in f.people} for f in tracked]
    assert len(ids[2]) == 4 and ids[1] == ids[2]  # the same four tracks on a still image


def test_openvino_runtime_path_matches_ultralytics(ov_model, bus):
    """detector.threads > 0 runs the folder through the OpenVINO runtime directly: the same boxes as ultralytics."""
    import numpy as np
    with PersonTracker(DetectorConfig(backend="yolo", model=str(ov_model))) as ref, \
            PersonTracker(DetectorConfig(backend="yolo", model=str(ov_model), threads=1)) as direct:
        assert "OpenVINO runtime" in direct.detector.description and "threads 1" in direct.detector.description
        a, b = ref.detect(bus), direct.detect(bus)
        tracked = direct.update(Frame(image=bus, stamp_ns=1, source_id="cam", index=0))
    assert len(a) == len(b) == 4
    a, b = a[np.argsort(-a[:, 4])], b[np.argsort(-b[:, 4])]
    assert np.abs(a[:, :4] - b[:, :4]).max() < 2.0 and np.abs(a[:, 4] - b[:, 4]).max() < 0.01
    assert (b[:, 5] == 0).all() and len(tracked.people) == 4


def test_ultralytics_track_api_on_the_openvino_folder(ov_model, bus):
    from ultralytics import YOLO
    model = YOLO(str(ov_model), task="detect")
    res = model.track(bus, classes=[0], persist=True, verbose=False)
    assert res[0].boxes.id is not None and len(res[0].boxes) >= 3 and (res[0].boxes.cls == 0).all()


def test_auto_finds_the_folder_by_name_in_the_model_dirs(ov_model, monkeypatch):
    monkeypatch.setenv("PERSON_SEARCH_SHARED_MODELS", str(ov_model.parent))
    monkeypatch.chdir(ov_model.parent.parent)  # not found relative to the CWD by accident
    with PersonTracker(DetectorConfig(backend="auto", model=OV_NAME)) as tr:
        assert tr.backend_name == "yolo" and Path(tr.detector.weights) == ov_model.resolve()


def test_cpu_config_names_the_openvino_yolo():
    assert load_config(config_path("cpu")).detector.model == OV_NAME


def test_fixed_input_size_wins_with_one_warning(ov_model, bus, caplog):
    with caplog.at_level(logging.WARNING, logger="person_search.core.detect"):
        tr = PersonTracker(DetectorConfig(backend="yolo", model=str(ov_model), imgsz=320))
    assert tr.detector.imgsz == 640 and len(tr.detect(bus)) == 4
    assert sum("fixed 640x640" in r.getMessage() for r in caplog.records) == 1
    tr.close()


def test_export_command_writes_a_folder_the_detector_loads(tmp_path, capsys):
    import torch
    from ultralytics import YOLO
    torch.manual_seed(0)
    pt = tmp_path / "yolo11n_random.pt"
    YOLO("yolo11n.yaml").save(str(pt))  # random weights: the export path, not accuracy
    assert cli_main(["export", "--detector", "--model", str(pt), "--imgsz", "256", "--out",
                     str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "yolo11n_random_openvino_model"
    assert (folder / "yolo11n_random.xml").is_file() and "[export] 3/3 wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "yolo11n_random.pt"]  # nothing beside the .pt
    with PersonTracker(DetectorConfig(backend="yolo", model=str(folder), imgsz=640)) as tr:
        assert tr.detector.imgsz == 256  # the exported size, from its metadata.yaml
        assert tr.detect(cv2.imread(str(sample_images()[0]))).shape[1] == 6


def test_export_without_the_pt_is_one_line(tmp_path, capsys):
    assert cli_main(["export", "--detector", "--model", str(tmp_path / "yolo11n.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "yolo11n.pt not found" in err and "models/README.md" in err

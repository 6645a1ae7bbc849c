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


# ---------------------------------------------------------------- captioned crowd (ground truth + captions)

def test_colour_pairs_split_disjoint_and_complete():
    from person_search.demo.crowd import PALETTE, colour_pair_split
    s = colour_pair_split(0)
    sets = {k: set(v) for k, v in s.items()}
    assert len(sets["test"]) == 18 and len(sets["val"]) == 6
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["val"]) and not (sets["val"] & sets["test"])
    assert len(sets["train"] | sets["val"] | sets["test"]) == len(PALETTE) ** 2
    assert colour_pair_split(0) == s and colour_pair_split(1) != s


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_painted_garments_wear_the_named_colours(cut):
    from person_search.demo.crowd import CUTOUTS, PALETTE, Outfit, _cutouts, _garment_masks, paint_outfit
    from person_search.lab.data.attributes import COLOURS
    crop = _cutouts()[cut][0]
    upper, lower = _garment_masks(cut, crop.shape[:2])
    for u, lo in zip(PALETTE, PALETTE[::-1]):
        img = paint_outfit(crop, Outfit(cut, u, lo)).astype(float)
        for mask, name in ((upper, u), (lower, lo)):
            med = np.median(img[mask > 0.95], axis=0)
            assert np.abs(med - COLOURS[name]).max() < 70, (CUTOUTS[cut][0], name, med)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    from person_search.demo.crowd import make_captioned_crowd
    return make_captioned_crowd(tmp_path_factory.mktemp("cc") / "crowd.mp4", people=5, seconds=1.0, fps=5,
                                size=(640, 360), seed=3)


def test_captioned_crowd_truth_matches_the_video_and_the_captions_name_the_colours(captioned, tmp_path):
    import json
    from person_search.demo.crowd import colour_pair_split, crowd_outfits, make_crowd_video
    video, truth_file = captioned
    assert truth_file.name == "crowd.mp4.truth.json"
    doc = json.loads(truth_file.read_text())
    assert doc["frames"] == len(_frames(video)) == 5 and "generated" in doc["note"]
    ids = doc["identities"]
    pairs = {(i["upper_colour"], i["lower_colour"]) for i in ids}
    assert len(pairs) == 5 and pairs <= set(colour_pair_split(0)["test"])  # distinct, held-out combinations
    for i in ids:
        assert len(i["captions"]) == 2 and i["boxes"]
        for c in i["captions"]:
            words = c.lower().replace("gray", "grey")
            assert i["upper_colour"] in words and i["lower_colour"] in words, c
        for f, x1, y1, x2, y2, vis in i["boxes"]:
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360 and 0.0 <= vis <= 1.0
    # the boxes are the generator's own (the same scene drawn again with the same outfits)
    truth = []
    make_crowd_video(tmp_path / "again.mp4", people=5, seconds=1.0, fps=5, size=(640, 360), seed=3, truth=truth,
                     outfits=crowd_outfits(5, colour_pair_split(0)["test"], 3))
    again = {(p, f): list(b) for f, seen in enumerate(truth) for (p, _c, *b) in seen}
    assert {(i["id"], r[0]): r[1:5] for i in ids for r in i["boxes"]} == again
    assert np.array_equal(_frames(tmp_path / "again.mp4")[0], _frames(video)[0])  # seeded


def test_captioned_crowd_is_deterministic(captioned, tmp_path):
    from person_search.demo.crowd import make_captioned_crowd
    _, t2 = make_captioned_crowd(tmp_path / "c.mp4", people=5, seconds=1.0, fps=5, size=(640, 360), seed=3)
    a, b = captioned[1].read_text(), t2.read_text()
    assert a.replace("crowd.mp4", "c.mp4") == b.replace("crowd.mp4", "c.mp4")


def test_occluded_boxes_have_a_lower_visible_share():
    from person_search.demo.crowd import _visible_shares
    seen = [(0, 0, 0, 0, 10, 10), (1, 0, 5, 0, 15, 10), (2, 0, 100, 100, 110, 110)]  # far first
    assert _visible_shares(seen) == [0.5, 1.0, 1.0]


def test_crowd_training_set_holds_out_the_test_pairs(tmp_path):
    import json
    from person_search.demo.crowd import colour_pair_split, write_crowd_pedes
    from person_search.lab.data.datasets import load_dataset
    ann = write_crowd_pedes(tmp_path / "d", images_per_id=1, captions_per_image=1)
    recs = json.loads(ann.read_text())
    split = colour_pair_split(0)
    by = {s: {tuple(r["outfit"].split("-")[1:]) for r in recs if r["split"] == s} for s in ("train", "val", "test")}
    assert by["test"] == set(split["test"]) and not by["test"] & by["train"]
    ds = load_dataset(tmp_path / "d", "cuhk-pedes")
    assert len(ds.split("test").eval_view().captions) == 3 * 18
    assert ds.split("train").eval_view().image_paths


def test_sample_video_captions_command(tmp_path, capsys):
    out = tmp_path / "c.mp4"
    assert cli_main(["sample-video", str(out), "--crowd", "3", "--seconds", "0.4", "--size", "640x360",
                     "--captions", "test", "--seed", "2"]) == 0
    assert str(out) + ".truth.json" in capsys.readouterr().out and (tmp_path / "c.mp4.truth.json").is_file()
    assert cli_main(["sample-video", str(out), "--captions", "test"]) == 2
    assert "--crowd" in capsys.readouterr().err
    assert cli_main(["sample-video", str(out), "--crowd", "40", "--captions", "test", "--size", "640x360"]) == 2
    assert "colour pairs" in capsys.readouterr().err


def test_data_crowd_command_refuses_to_overwrite(tmp_path, capsys):
    (tmp_path / "reid_raw.json").write_text("[]")
    assert cli_main(["data", "crowd", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err and (tmp_path / "reid_raw.json").read_text() == "[]"

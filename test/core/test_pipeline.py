"""The ROS-free pipeline and the `person-search run` / `gallery` commands on a real video."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from person_search.cli import main as cli_main
from person_search.core.config import load_config
from person_search.core.pipeline import OfflinePipeline
from person_search.graph import config_path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from person_search.demo.sample import make_sample_video
    return make_sample_video(tmp_path_factory.mktemp("v") / "sample.mp4", seconds=3.0)


@pytest.fixture(scope="module")
def pipeline(video):
    cfg = load_config(config_path("test"))
    pipe = OfflinePipeline(cfg)
    pipe.process_video(str(video))
    return pipe


def test_pipeline_fills_the_gallery_with_tracked_people(pipeline):
    s = pipeline.stats
    assert s.frames == 45
    assert s.detections > 0 and len(s.tracks) >= 2
    assert len(pipeline.gallery) > 0
    gallery_tracks = {(t.source_id, t.track_id) for t in pipeline.gallery.tracks()}
    assert gallery_tracks <= s.tracks


def test_query_ranks_tracks_by_text_similarity(pipeline):
    engine = pipeline.text_engine()
    matches = engine.query(pipeline.gallery, "a man in a dark suit", top_k=3)
    assert 1 <= len(matches) <= 3
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    q = engine.encode("a man in a dark suit")
    for m in matches:  # the reported score is the best of the track's embeddings, recomputed here
        assert m.crop_jpeg[:2] == b"\xff\xd8"
        assert -1.0 <= m.score <= 1.0
    assert abs(float(q @ q) - 1.0) < 1e-5


def test_run_command_prints_table_and_writes_contact_sheet(video, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    snap = tmp_path / "g.npz"
    code = cli_main(["run", str(video), "--config", "test", "--query", "a person in a dark coat",
                     "--query", "someone with a red bag", "--top-k", "3", "--sheet", str(sheet), "--save", str(snap)])
    out = capsys.readouterr().out
    assert code == 0
    assert "45 frames" in out and "rank" in out and out.count("query:") == 2
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] > 100
    assert snap.is_file()
    # the saved gallery answers the same query with the same table
    table_run = out.split("query: 'a person in a dark coat'")[1].split("query:")[0].strip()
    code = cli_main(["gallery", "query", str(snap), "a person in a dark coat", "--config", "test", "--top-k", "3"])
    out2 = capsys.readouterr().out
    assert code == 0
    assert table_run in out2


def test_run_command_refuses_bad_queries_before_the_video(video, capsys, monkeypatch):
    import person_search.core.pipeline as pipeline_module

    def never(*_a, **_k):
        raise AssertionError("the pipeline was built for a query that is refused")
    monkeypatch.setattr(pipeline_module, "OfflinePipeline", never)
    code = cli_main(["run", str(video), "--config", "test", "--max-frames", "5", "--query", "a man", "--query", "  "])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "whitespace" in err and "description 2 of 2" in err and len(err.splitlines()) == 1


def test_gallery_query_refuses_another_model(video, tmp_path, capsys):
    snap = tmp_path / "g.npz"
    assert cli_main(["run", str(video), "--config", "test", "--max-frames", "20", "--save", str(snap)]) == 0
    code = cli_main(["gallery", "query", str(snap), "a person", "--config", "test",
                     "--set", "encoder.arch=TinyCLIP-ViT-8M-16-Text-3M"])
    assert code == 2
    assert "snapshot holds" in capsys.readouterr().err


def test_gallery_save_load_query_commands(video, tmp_path, capsys):
    snap = tmp_path / "saved.npz"
    args = ["gallery", "save", str(snap), "--video", str(video), "--config", "test", "--max-frames", "25"]
    assert cli_main(args) == 0
    assert snap.is_file()
    capsys.readouterr()
    assert cli_main(["gallery", "load", str(snap), "--config", "test"]) == 0
    out = capsys.readouterr().out
    assert "embeddings" in out and "tracks" in out and "last box" in out
    assert "nan" not in out and "rank" not in out  # nothing was asked: no scores, no ranks
    assert cli_main(["gallery", "query", str(snap), "a person", "--config", "test", "--top-k", "2"]) == 0
    assert "rank" in capsys.readouterr().out
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a snapshot")
    assert cli_main(["gallery", "load", str(bad), "--config", "test"]) == 2
    assert "bad.npz" in capsys.readouterr().err
    assert cli_main(["gallery", "save", str(tmp_path / "x.npz"), "--config", "test"]) == 2


def test_run_fps_samples_on_the_video_clock(video, capsys):
    code = cli_main(["run", str(video), "--config", "test", "--fps", "5", "--random-weights"])
    out = capsys.readouterr().out
    assert code == 0 and "15 frames (3.0 s of video)" in out and "x real time" in out  # 3 s at 5 of 15 fps
    assert cli_main(["run", str(video), "--config", "test", "--fps", "0"]) == 2
    assert "argument --fps: must be > 0, got 0" in capsys.readouterr().err


def test_gallery_times_are_times_in_the_video(pipeline):
    tracks = list(pipeline.gallery.tracks())
    first = min(t.first_seen_ns for t in tracks)
    offsets = [(ns - first) * 15 / 1e9 for t in tracks for ns in (t.first_seen_ns, t.last_seen_ns)]
    assert max(offsets) <= 45  # a 3 s video at 15 fps, processed at any speed: frame times, not wall times
    assert all(abs(o - round(o)) < 1e-3 for o in offsets)


@pytest.mark.slow
def test_run_links_persons_across_two_cameras_like_the_graph(video, tmp_path, capsys):
    """One video as two cameras, offline: the re-id linker (the index node's) makes one person of both sightings."""
    import json

    from person_search.core.paths import shared_models_dir
    from person_search.core.reid.encoder import maybe_reid_encoder
    cfg = load_config(config_path("test"))
    if maybe_reid_encoder(cfg.reid, warn=lambda _: None) is None:
        pytest.skip(f"the shared OSNet re-id weights are absent (looked in {shared_models_dir()}); models/README.md")
    snap = tmp_path / "g.npz"
    code = cli_main(["run", str(video), str(video), "--config", "test", "--random-weights", "--json",
                     "--query", "a person", "--top-k", "10", "--save", str(snap)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["cameras"] == ["cam0", "cam1"] and doc["reid_model_id"]
    assert doc["person_links"] >= 1 and doc["persons"] < doc["tracks"]
    rows = doc["queries"][0]["matches"]
    assert len({r["person_id"] for r in rows}) == len(rows)  # one row per person
    both = [r for r in rows if {t.split("/")[0] for t in r["person_tracks"]} == {"cam0", "cam1"}]
    assert both, rows  # one person seen on both cameras
    assert f"{both[0]['camera']}/{both[0]['track_id']}" == both[0]["person_tracks"][0]  # best track first
    # per track on request; the saved persons answer by person again from the snapshot
    code = cli_main(["gallery", "query", str(snap), "a person", "--config", "test", "--random-weights",
                     "--top-k", "10", "--by-track"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("person ") >= 2
    code = cli_main(["gallery", "query", str(snap), "a person", "--config", "test", "--random-weights",
                     "--top-k", "10"])
    out = capsys.readouterr().out
    assert code == 0 and ("tracks cam0/" in out or "tracks cam1/" in out)

"""The node graph as separate processes over real DDS: fill the gallery, query, restart."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from person_search.graph import CameraSpec
from person_search.launcher import make_graph
from person_search.nodes.convert import image_to_bgr, time_to_ns

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def graph(sample_video, probe, tmp_path_factory):
    snap = tmp_path_factory.mktemp("snap") / "gallery.npz"
    logs = tmp_path_factory.mktemp("logs")
    g = make_graph("test", [CameraSpec("cam0", str(sample_video)), CameraSpec("cam1", str(sample_video))],
                   loop=True, extra_params={"gallery.snapshot_path": str(snap)}, log_dir=logs)
    t0 = time.time_ns()
    g.start()
    g.t0_ns = t0
    g.snapshot = snap
    g.logs = logs
    try:
        probe.wait_for(lambda: probe.last_size() >= 8, 180, "the gallery to fill", graph=g)
        yield g
    finally:
        codes = g.stop()
        print({n: c for n, c in codes.items()})
        for f in sorted(logs.glob("*.log")):
            print(f"--- {f.name}\n{f.read_text()[-3000:]}")


def test_query_returns_published_tracks(graph, probe):
    resp = probe.query("a person in a dark coat", top_k=3)
    assert resp.success, resp.message
    assert 1 <= len(resp.matches) <= 3
    published = probe.published_tracks()
    now = time.time_ns()
    scores = [m.score for m in resp.matches]
    assert scores == sorted(scores, reverse=True)
    for m in resp.matches:
        assert (m.camera_frame_id, m.track_id) in published, "returned a track the detector never published"
        assert graph.t0_ns <= time_to_ns(m.first_seen) <= time_to_ns(m.last_seen) <= now
        crop = image_to_bgr(m.crop)
        assert crop.ndim == 3 and crop.shape[0] > 8 and crop.shape[1] > 4
        x1, y1, x2, y2 = m.box
        assert x2 > x1 and y2 > y1
        assert m.frame.width == 0  # frames only when asked


def test_frames_and_camera_filter(graph, probe):
    resp = probe.query("someone walking", top_k=5, camera="cam1", return_frames=True)
    assert resp.success, resp.message
    assert resp.matches and all(m.camera_frame_id == "cam1" for m in resp.matches)
    frame = image_to_bgr(resp.matches[0].frame)
    assert frame.shape[0] > 32 and frame.shape[1] > 32
    # both cameras feed the one index
    both = probe.query("someone walking", top_k=50)
    assert {m.camera_frame_id for m in both.matches} == {"cam0", "cam1"}


@pytest.mark.parametrize("description,top_k,needle", [
    ("", 3, "empty"),
    ("   \t ", 3, "whitespace"),
    ("x" * 100_000, 3, "1000"),
    ("a person", 0, "top_k"),
    ("a person", -4, "top_k"),
    ("bad\x1bchar", 3, "control"),  # (a NUL would end the DDS string before it)
])
def test_bad_requests_get_an_error_and_service_survives(graph, probe, description, top_k, needle):
    resp = probe.query(description, top_k=top_k)
    assert not resp.success
    assert needle in resp.message.lower(), resp.message
    good = probe.query("a person", top_k=2)
    assert good.success and len(good.matches) >= 1, good.message


def test_index_restart_restores_snapshot(graph, probe):
    probe.wait_for(lambda: graph.snapshot.exists(), 30, "the first snapshot")
    before = probe.query("a person", top_k=50)
    assert before.success
    old = {(m.camera_frame_id, m.track_id) for m in before.matches}
    graph.stop("/index", sig=signal.SIGKILL)
    killed_at = time.monotonic()
    graph.start(only=["/index"])
    probe.wait_for(lambda: any(t > killed_at and s > 0 for t, s in list(probe.sizes)), 60,
                   "the restarted index to report its size", graph=graph)
    after = probe.query("a person", top_k=50)
    assert after.success, after.message
    restored = {(m.camera_frame_id, m.track_id) for m in after.matches}
    # everything but what arrived between the last snapshot and the kill comes back
    assert len(old & restored) >= max(1, len(old) // 2), (old, restored)


def test_diagnostics_report_every_stage(graph, probe):
    want = ["/cam0/camera: camera", "/cam1/camera: camera", "/cam0/detector: detector",
            "/embedder: embedder", "/index: index", "/query: query"]

    def reported() -> bool:
        with probe.lock:
            d = dict(probe.diagnostics)
        return (all(w in d for w in want) and float(d["/cam0/camera: camera"]["rate_hz"]) > 0
                and int(d["/cam0/detector: detector"]["count"]) > 0
                and int(d["/index: index"]["gallery_size"]) > 0
                and float(d["/index: index"]["age_p95_ms"]) > 0)  # frame -> searchable

    probe.wait_for(reported, 30, "diagnostics of every node with rates, counts and latency")
    assert probe.diagnostics["/embedder: embedder"]["model_id"].startswith("PS-Tiny-ViT@")


def test_overlay_highlights_the_last_query(graph, probe):
    probe.wait_for(lambda: len(probe.overlays) > 0, 20, "an overlay image")
    img = image_to_bgr(probe.overlays[-1])
    assert img.shape[:2] == (540, 960)

    def highlighted() -> bool:
        # the looping video starts new tracks every loop: ask again so that the people in
        # view are among the matches, then look for a box drawn in pure red (0, 0, 255)
        resp = probe.query("a person", top_k=100, camera="cam0")
        assert resp.success, resp.message
        time.sleep(0.5)
        with probe.lock:
            frames = list(probe.overlays)
        return any(np.all(image_to_bgr(f) == (0, 0, 255), axis=2).sum() > 100 for f in frames)

    probe.wait_for(highlighted, 40, "a highlighted match in the overlay")


def test_detector_restart_never_reuses_track_ids(graph, probe):
    before = {t for cam, t in probe.published_tracks() if cam == "cam1"}
    graph.stop("/cam1/detector", sig=signal.SIGKILL)
    time.sleep(1.1)  # ids are based on the start second
    n0 = len(probe.crops)
    graph.start(only=["/cam1/detector"])
    probe.wait_for(lambda: any(cam == "cam1" and ids for cam, _, ids in probe.crops[n0:]), 90,
                   "crops from the restarted detector", graph=graph)
    after = {t for cam, _, ids in probe.crops[n0:] if cam == "cam1" for t in ids}
    assert after and min(after) > max(before), (sorted(before)[-3:], sorted(after)[:3])

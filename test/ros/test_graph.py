"""The node graph as separate processes over real DDS: fill the gallery, query, restart."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from person_search.core.paths import shared_models_dir
from person_search.graph import CameraSpec, make_graph
from person_search.nodes.convert import compressed_to_bgr, image_to_bgr, time_to_ns

pytestmark = pytest.mark.ros
REID = (shared_models_dir() / "osnet_x0_25_msmt17" / "osnet_x0_25_msmt17.onnx").is_file()
needs_reid = pytest.mark.skipif(not REID, reason=f"pretrained OSNet not in {shared_models_dir()} (shared test data): "
                                "the graph runs without person identities")


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
    resp = probe.query("a person in a dark coat", top_k=3, return_crops=True)
    assert resp.success, resp.message
    assert 1 <= len(resp.matches) <= 3
    published = probe.published_tracks()
    now = time.time_ns()
    scores = [m.score for m in resp.matches]
    assert scores == sorted(scores, reverse=True)
    for m in resp.matches:
        assert (m.camera_frame_id, m.track_id) in published, "returned a track the detector never published"
        assert graph.t0_ns <= time_to_ns(m.first_seen) <= time_to_ns(m.last_seen) <= now
        assert m.crop.format == "jpeg"
        crop = compressed_to_bgr(m.crop)
        assert crop.ndim == 3 and crop.shape[0] > 8 and crop.shape[1] > 4
        x1, y1, x2, y2 = m.box
        assert x2 > x1 and y2 > y1
        assert len(m.frame.data) == 0  # frames only when asked


def test_frames_and_camera_filter(graph, probe):
    resp = probe.query("someone walking", top_k=5, camera="cam1", return_frames=True)
    assert resp.success, resp.message
    assert resp.matches and all(m.camera_frame_id == "cam1" for m in resp.matches)
    frame = compressed_to_bgr(resp.matches[0].frame)
    assert frame.shape[0] > 32 and frame.shape[1] > 32
    # both cameras feed the one index
    both = probe.query("someone walking", top_k=50, by_track=True)
    assert {m.camera_frame_id for m in both.matches} == {"cam0", "cam1"}


@pytest.mark.parametrize("description,top_k,needle", [
    ("", 3, "empty"),
    ("   \t ", 3, "whitespace"),
    ("x" * 100_000, 3, "1000"),
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
    before = probe.query("a person", top_k=50, by_track=True)
    pid_before = {(m.camera_frame_id, m.track_id): m.person_id for m in before.matches}
    assert before.success
    old = {(m.camera_frame_id, m.track_id) for m in before.matches}
    time.sleep(2.5)  # > gallery.snapshot_interval_s: the last snapshot holds what `before` saw
    graph.stop("/index", sig=signal.SIGKILL)
    killed_at = time.monotonic()
    saved = {}  # the persons the killed node last saved: what a restore must give back
    if REID:
        with np.load(f"{graph.snapshot}.persons.npz", allow_pickle=False) as z:
            saved = {(str(src), int(tid)): int(pid) for src, tid, pid, (decided, _) in
                     zip(z["sources"], z["track_ids"], z["person"], z["flags"]) if decided}
    graph.start(only=["/index"])
    probe.wait_for(lambda: any(t > killed_at and s > 0 for t, s in list(probe.sizes)), 60,
                   "the restarted index to report its size", graph=graph)
    after = probe.query("a person", top_k=50, by_track=True)
    assert after.success, after.message
    restored = {(m.camera_frame_id, m.track_id) for m in after.matches}
    # everything but what arrived between the last snapshot and the kill comes back
    assert len(old & restored) >= max(1, len(old) // 2), (old, restored)
    if REID:  # with their person ids (persons.npz beside the snapshot)
        pid_after = {(m.camera_frame_id, m.track_id): m.person_id for m in after.matches}
        assert any(pid >= 0 for pid in pid_before.values()), pid_before
        # the decided tracks of the last saved persons file come back with the same person ids (compared
        # with the file, not with `before`: a track can join a person between that query and the snapshot)
        kept = [k for k in restored if k in saved]
        same = [k for k in kept if pid_after[k] == saved[k]]
        assert kept and len(same) >= 0.9 * len(kept), (saved, pid_after)


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
    d = dict(probe.diagnostics)
    assert d["/embedder: embedder"]["model_id"].startswith("PS-Tiny-ViT@")
    # one clock: the camera plays the file live (late frames dropped and counted, stamps at capture), so
    # every age is capture -> output on the node clock; each stage reports queue wait, work and age
    cam = d["/cam0/camera: camera"]
    assert int(cam["late"]) >= 0 and int(cam["dropped"]) >= int(cam["late"])
    assert float(cam["age_p95_ms"]) < 1000  # stamped at capture, not on the video's clock
    for stage in ("/cam0/detector: detector", "/embedder: embedder", "/index: index"):
        for key in ("wait", "latency", "age"):
            assert all(f"{key}_{q}_ms" in d[stage] for q in ("p50", "p95", "p99")), (stage, key)
    assert float(d["/index: index"]["age_p99_ms"]) >= float(d["/index: index"]["age_p50_ms"])  # capture -> searchable
    assert float(d["/embedder: embedder"]["first_seen_to_searchable_p95_ms"]) > 0


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


def _message_to_yaml(msg) -> str:
    """rosidl_runtime_py's message_to_yaml (what `ros2 service call` / `topic echo` print), or its equivalent.

    rosidl_runtime_py is not among the PyPI wheels; the fallback mirrors its
    message_to_ordereddict: fields in order, arrays as lists of numbers, nested messages as
    mappings, dumped block style with unbounded width.
    """
    try:
        from rosidl_runtime_py import message_to_yaml
        return message_to_yaml(msg)
    except ImportError:
        pass
    import array
    import sys
    import yaml

    def conv(v):
        if hasattr(v, "get_fields_and_field_types"):
            return {f: conv(getattr(v, f)) for f in v.get_fields_and_field_types()}
        if isinstance(v, (list, tuple, array.array, np.ndarray)):
            return [conv(x) for x in v]
        if isinstance(v, bytes):
            return "".join(chr(c) for c in v)
        return v.item() if isinstance(v, np.generic) else v
    return yaml.dump(conv(msg), allow_unicode=True, width=sys.maxsize, default_flow_style=False, sort_keys=False)


def test_response_yaml_fits_a_screen(graph, probe):
    """`ros2 service call /query_person` prints the response: without crops it stays short.

    Bound: 4 kB for 5 matches (~80 bytes x 50 lines, one terminal screen of text). A JPEG crop
    is 3-15 kB, printed as one number per byte: it can never fit, so crops come on request
    (return_crops), like frames (return_frames).
    """
    resp = probe.query("a person", top_k=5, by_track=True)  # (per person: fewer than 5 people in the video)
    assert resp.success and len(resp.matches) == 5, resp.message
    text = _message_to_yaml(resp)
    assert len(text) < 4096, (len(text), text[:800])
    with_crops = _message_to_yaml(probe.query("a person", top_k=5, return_crops=True, by_track=True))
    assert len(with_crops) > 4 * len(text)  # what the bound protects against


def test_top_k_zero_is_the_default_and_last_s_filters(graph, probe):
    resp = probe.query("a person", top_k=0, by_track=True)
    assert resp.success and len(resp.matches) == 5, resp.message  # query.default_top_k of config/test.yaml
    t_call = time.time_ns()
    recent = probe.query("a person", top_k=50, last_s=2.0)
    assert recent.success, recent.message
    assert all(time_to_ns(m.last_seen) >= t_call - 2_000_000_000 - 200_000_000 for m in recent.matches)
    everything = probe.query("a person", top_k=50)
    assert len(recent.matches) < len(everything.matches)
    bad = probe.query("a person", top_k=3, last_s=-1.0)
    assert not bad.success and "last_s" in bad.message


def test_runtime_parameters_are_validated_and_applied(graph, probe):
    ok, = probe.set_params("/query", {"query.default_top_k": 2})
    assert ok.successful, ok.reason
    assert len(probe.query("a person", top_k=0).matches) == 2  # applied to the running node
    too_big, = probe.set_params("/query", {"query.default_top_k": 500})
    assert not too_big.successful and "default_top_k" in too_big.reason
    out_of_range, = probe.set_params("/cam0/detector", {"detector.conf": 1.5})
    assert not out_of_range.successful and "range" in out_of_range.reason.lower()
    wrong_type, = probe.set_params("/cam0/detector", {"detector.conf": "high"})
    assert not wrong_type.successful and "detector.conf must be a number" in wrong_type.reason
    read_only, = probe.set_params("/embedder", {"encoder.arch": "ViT-B-32"})
    assert not read_only.successful and "read-only" in read_only.reason.lower()
    conf, = probe.set_params("/cam0/detector", {"detector.conf": 0.4})
    assert conf.successful, conf.reason
    probe.set_params("/query", {"query.default_top_k": 5})


def test_lifecycle_transitions_and_enable(graph, probe):
    from lifecycle_msgs.msg import Transition
    from std_srvs.srv import SetBool
    assert probe.lifecycle("/query") == "active"
    assert probe.lifecycle("/query", Transition.TRANSITION_DEACTIVATE) == "inactive"
    resp = probe.query("a person", top_k=2)
    assert not resp.success and "not active" in resp.message
    assert probe.lifecycle("/query", Transition.TRANSITION_ACTIVATE) == "active"
    assert probe.query("a person", top_k=2).success

    def cam1_stops(pause, resume):
        pause()
        n0 = len(probe.crops)
        # cam0 keeps going: once it published 10 more frames, cam1 had time to publish too
        probe.wait_for(lambda: sum(cam == "cam0" for cam, _, _ in probe.crops[n0:]) >= 10, 60,
                       "cam0 to go on", graph=graph)
        assert not any(cam == "cam1" for cam, _, _ in probe.crops[n0 + 2:]), "cam1 still published"
        resume()
        n1 = len(probe.crops)
        probe.wait_for(lambda: any(cam == "cam1" for cam, _, _ in probe.crops[n1:]), 90, "cam1 to resume",
                       graph=graph)

    cam1_stops(lambda: probe.lifecycle("/cam1/detector", Transition.TRANSITION_DEACTIVATE),
               lambda: probe.lifecycle("/cam1/detector", Transition.TRANSITION_ACTIVATE))
    cam1_stops(lambda: probe.call(SetBool, "/cam1/enable", SetBool.Request(data=False)),
               lambda: probe.call(SetBool, "/cam1/enable", SetBool.Request(data=True)))
    # cleanup frees the model, configure loads it again
    assert probe.lifecycle("/cam1/detector", Transition.TRANSITION_DEACTIVATE) == "inactive"
    assert probe.lifecycle("/cam1/detector", Transition.TRANSITION_CLEANUP) == "unconfigured"
    assert probe.lifecycle("/cam1/detector", Transition.TRANSITION_CONFIGURE) == "inactive"
    assert probe.lifecycle("/cam1/detector", Transition.TRANSITION_ACTIVATE) == "active"
    n2 = len(probe.crops)
    probe.wait_for(lambda: any(cam == "cam1" for cam, _, _ in probe.crops[n2:]), 90, "cam1 after re-configure",
                   graph=graph)


def test_two_graphs_share_the_domain_under_namespaces(graph, probe, sample_video, tmp_path):
    """A second graph under /robot2 on the same DDS domain: neither sees the other's people."""
    g2 = make_graph("test", [CameraSpec("side", str(sample_video))], loop=True, namespace="robot2",
                    log_dir=tmp_path)
    with g2:
        def robot2_answers() -> bool:
            resp = probe.query("a person", top_k=50, service="/robot2/query_person", timeout=120)
            return resp.success and len(resp.matches) > 0
        try:
            probe.wait_for(robot2_answers, 180, "the /robot2 graph to answer", graph=g2)
        finally:
            if g2.dead():
                print({f.name: f.read_text()[-2000:] for f in tmp_path.glob("*.log")})
        two = probe.query("a person", top_k=50, service="/robot2/query_person")
        assert {m.camera_frame_id for m in two.matches} == {"side"}
        root = probe.query("a person", top_k=100)
        assert "side" not in {m.camera_frame_id for m in root.matches}
        assert not any(cam == "side" for cam, _, _ in probe.crops)  # /person_crops is the root graph's only
        assert probe.node.count_subscribers("/robot2/person_crops") == 1


@needs_reid
def test_one_person_seen_on_both_cameras(graph, probe):
    """One video on two cameras: re-id links each person's cam0 and cam1 tracks into one answer."""
    def linked():
        resp = probe.query("a person", top_k=50)
        return resp.success and any(set(m.cameras) == {"cam0", "cam1"} for m in resp.matches)

    probe.wait_for(linked, 90, "a person linked across cam0 and cam1", graph=graph)
    resp = probe.query("a person", top_k=50)
    by_track = probe.query("a person", top_k=50, by_track=True)
    assert sum(len(m.person_track_ids) for m in resp.matches) > len(resp.matches)  # persons fold tracks
    pids = [m.person_id for m in resp.matches]
    assert len(pids) == len(set(pids)) and all(p > 0 for p in pids)  # one match per person
    both = next(m for m in resp.matches if set(m.cameras) == {"cam0", "cam1"})
    assert both.person_track_ids[0] == both.track_id and len(both.person_track_ids) == len(both.cameras)
    published = probe.published_tracks()
    assert all((c, t) in published for c, t in zip(both.cameras, both.person_track_ids))
    # per track, those tracks carry the same person id
    ids = {(m.camera_frame_id, m.track_id): m.person_id for m in by_track.matches}
    assert {ids[k] for k in zip(both.cameras, both.person_track_ids) if k in ids} == {both.person_id}


@needs_reid
def test_find_similar_by_track_person_and_image(graph, probe):
    from sensor_msgs.msg import CompressedImage
    from person_search_interfaces.srv import FindSimilar
    resp = probe.query("a person", top_k=50)
    both = next((m for m in resp.matches if set(m.cameras) == {"cam0", "cam1"}), None)
    assert both is not None, [list(m.cameras) for m in resp.matches]
    cam, tid = both.camera_frame_id, both.track_id
    like = probe.call(FindSimilar, "/find_similar", FindSimilar.Request(track_id=tid, camera=cam, top_k=100))
    assert like.success, like.message
    scores = [m.score for m in like.matches]
    assert scores == sorted(scores, reverse=True) and (cam, tid) not in {(m.camera_frame_id, m.track_id)
                                                                         for m in like.matches}
    # the same person, seen by the other camera, is among the answers (not left out with the track itself);
    # other unlinked tracks of the same walker (the looping sample shows each walker as many) may outrank it
    assert like.matches[0].score > 0.8 and any(m.person_id == both.person_id for m in like.matches), \
        [(m.person_id, round(m.score, 3)) for m in like.matches[:10]]
    top3 = probe.call(FindSimilar, "/find_similar", FindSimilar.Request(track_id=tid, camera=cam, top_k=3))
    assert top3.success and len(top3.matches) == 3, top3.message  # top_k is honoured
    # a person's feature is the mean of its tracks: its own tracks score high, but other unlinked tracks of the
    # same walker (the looping sample) may outrank them, so ask for every track and check where they stand
    person = probe.call(FindSimilar, "/find_similar", FindSimilar.Request(person_id=both.person_id, top_k=100))
    assert person.success, person.message
    pscores = [m.score for m in person.matches]
    mine = [m.score for m in person.matches if m.person_id == both.person_id]
    assert pscores == sorted(pscores, reverse=True) and len(person.matches) > 5, person.message
    assert mine and max(mine) > 0.8, [(m.person_id, round(m.score, 3)) for m in person.matches[:10]]
    crop = probe.query("a person", top_k=1, return_crops=True, by_track=True).matches[0]
    image = probe.call(FindSimilar, "/find_similar",
                       FindSimilar.Request(image=CompressedImage(format="jpeg", data=crop.crop.data), top_k=5))
    assert image.success, image.message
    assert image.matches[0].score > 0.8 and [m.score for m in image.matches] == sorted(
        [m.score for m in image.matches], reverse=True)
    # the image finds what the crop's own track finds: the track itself, a track of its person, or one of
    # the track's own nearest tracks (the looping sample shows each walker as many unlinked tracks whose
    # short means can match one crop better than its own long track's mean does)
    own = probe.call(FindSimilar, "/find_similar",
                     FindSimilar.Request(track_id=crop.track_id, camera=crop.camera_frame_id, top_k=10))
    assert own.success, own.message
    near = {(crop.camera_frame_id, crop.track_id)} | {(m.camera_frame_id, m.track_id) for m in own.matches}
    assert any((m.camera_frame_id, m.track_id) in near or m.person_id == crop.person_id for m in image.matches), \
        ([(m.track_id, m.score) for m in image.matches], sorted(t for _, t in near))
    bad = probe.call(FindSimilar, "/find_similar", FindSimilar.Request(track_id=987654, camera="cam0"))
    assert not bad.success and "987654" in bad.message
    junk = probe.call(FindSimilar, "/find_similar",
                      FindSimilar.Request(image=CompressedImage(format="jpeg", data=b"not a jpeg")))
    assert not junk.success and "image" in junk.message


@needs_reid
def test_cli_query_like_and_image(graph, probe, tmp_path):
    import os
    import subprocess
    import sys
    resp = probe.query("a person", top_k=1, return_crops=True, by_track=True)
    m = resp.matches[0]
    env = dict(os.environ)
    run = lambda *args: subprocess.run([sys.executable, "-m", "person_search", "query", *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=90, env=env)
    out = run("--like", str(m.track_id), "--camera", m.camera_frame_id, "--top-k", "3")
    assert out.returncode == 0, out.stderr
    assert "similar track(s)" in out.stdout and "rank" in out.stdout
    img = tmp_path / "crop.jpg"
    img.write_bytes(bytes(m.crop.data))
    out = run("--image", str(img), "--json")
    assert out.returncode == 0, out.stderr
    assert '"person_id"' in out.stdout
    out = run("--image", str(tmp_path / "absent.jpg"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no such file" in out.stderr

"""The console's ROS-free parts: parameter checks, the image cache, track timelines, health, bind rules."""

from __future__ import annotations

import pytest

from person_search.web.params import MAX_QUERY_CHARS, RequestError, parse_search, parse_track_id
from person_search.web.security import BindError, check_bind, is_loopback, token_matches
from person_search.web.store import HealthBoard, ImageStore, TimelinePoint, Timelines


def test_search_parameters_are_parsed_and_typed():
    p = parse_search({"q": "  a red coat ", "top_k": "5", "min_score": "0.2", "camera": "cam1", "last_min": "10",
                      "since": "2026-12-03T08:00:00Z", "until": "1796290000", "frames": "0"})
    assert (p.q, p.top_k, p.min_score, p.camera, p.last_s, p.frames) == ("a red coat", 5, 0.2, "cam1", 600.0, False)
    assert p.since_ns == 1796284800 * 10**9 and p.until_ns == 1796290000 * 10**9
    assert parse_search({"q": "<script>alert(1)</script>"}).q == "<script>alert(1)</script>"  # text, kept as is


@pytest.mark.parametrize("args,needle", [
    ({}, "empty"),
    ({"q": "   "}, "empty"),
    ({"q": "x" * (MAX_QUERY_CHARS + 1)}, "limit"),
    ({"q": "a\x00b"}, "control"),
    ({"q": "a", "top_k": "0"}, "top_k"),
    ({"q": "a", "top_k": "101"}, "top_k"),
    ({"q": "a", "top_k": "2.5"}, "whole"),
    ({"q": "a", "min_score": "nan"}, "min_score"),
    ({"q": "a", "min_score": "2"}, "min_score"),
    ({"q": "a", "last_min": "-1"}, "last_min"),
    ({"q": "a", "camera": "../etc"}, "camera"),
    ({"q": "a", "camera": "c" * 65}, "camera"),
    ({"q": "a", "since": "yesterday"}, "since"),
    ({"q": "a", "since": "1e30"}, "since"),
    ({"q": "a", "since": "1796284000", "until": "1796283000"}, "after"),
    ({"q": "a", "frames": "maybe"}, "frames"),
    ({"q": "a", "by": "face"}, "by"),
])
def test_bad_search_parameters_name_the_problem(args, needle):
    with pytest.raises(RequestError, match=needle):
        parse_search(args)


@pytest.mark.parametrize("bad", ["", "-1", "1e3", "12a", "9" * 19, "../1"])
def test_track_ids_are_plain_integers(bad):
    with pytest.raises(RequestError):
        parse_track_id(bad)


def test_image_store_evicts_least_recent_within_budget():
    store = ImageStore(budget_bytes=100)
    a, b = store.put(b"a" * 40), store.put(b"b" * 40)
    assert len(a) == 16 and a != b and store.get(a) == b"a" * 40
    c = store.put(b"c" * 40)  # over budget: b (least recently used; a was just read) goes
    assert store.get(b) is None and store.get(a) is not None and store.get(c) is not None
    assert store.nbytes <= 100
    assert store.put(b"") == "" and store.put(b"x" * 101) == ""
    assert store.get("../../etc/passwd") is None


def test_timeline_keeps_points_spread_over_the_track():
    store = ImageStore(10**6)
    tl = Timelines(store, max_points=4, min_gap_s=1.0)
    for i in range(40):  # one crop every 0.5 s for 20 s
        t = int(i * 0.5e9)
        if tl.wants("cam0", 7, t):
            tl.add("cam0", 7, TimelinePoint(t, store.put(b"crop%d" % i), "", (0, 0, 1, 1), (10, 10)))
    pts = tl.points("cam0", 7)
    assert 2 <= len(pts) <= 4
    stamps = [p.stamp_ns for p in pts]
    assert stamps == sorted(stamps) and stamps[0] == 0 and stamps[-1] >= 10e9  # first sighting to late in life
    assert tl.points("cam0", 8) == [] and tl.points("cam1", 7) == []


def test_health_flags_a_stage_that_stops_reporting():
    board = HealthBoard(stale_s=5.0)
    board.update("/cam0/detector: detector", 0, "running", {"rate_hz": "5", "drops": "0"}, now=100.0)
    board.update("/index: index", 0, "running", {"gallery_size": "42", "drops": "0"}, now=100.0)
    snap = board.snapshot(now=101.0)
    assert snap["status"] == "ok" and snap["gallery_size"] == 42
    board.update("/index: index", 0, "running", {"gallery_size": "43", "drops": "0"}, now=107.0)
    snap = board.snapshot(now=107.0)
    st = {s["name"]: s["status"] for s in snap["stages"]}
    assert st == {"/cam0/detector: detector": "stalled", "/index: index": "ok"} and snap["status"] == "bad"
    board.update("/index: index", 0, "running", {"gallery_size": "43", "drops": "3"}, now=108.0)
    assert {s["name"]: s["status"] for s in board.snapshot(now=108.0)["stages"]}["/index: index"] == "warn"
    board.update("/index: index", 2, "snapshot failed", {}, now=109.0)
    assert {s["name"]: s["message"] for s in board.snapshot(now=109.0)["stages"]}["/index: index"] == "snapshot failed"


def test_health_of_a_namespace_ignores_other_graphs():
    board = HealthBoard(prefix="/robot1")
    board.update("/robot2/index: index", 0, "running", {}, now=1.0)
    board.update("/robot1/index: index", 0, "running", {}, now=1.0)
    assert [s["name"] for s in board.snapshot(now=1.0)["stages"]] == ["/robot1/index: index"]


def test_bind_rules():
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(host, "")
    for host in ("0.0.0.0", "::", "192.168.1.10", "robot.local"):
        assert not is_loopback(host)
        with pytest.raises(BindError, match="without a token"):
            check_bind(host, "")
        check_bind(host, "a-long-enough-token")
    with pytest.raises(BindError, match="at least"):
        check_bind("0.0.0.0", "short")
    try:
        check_bind("0.0.0.0", "a secret token")
    except BindError as exc:
        assert "secret" not in str(exc)  # the token is never echoed
    else:
        raise AssertionError("a token with spaces was accepted")


def test_token_comparison():
    assert token_matches("s3cret-token", "s3cret-token")
    assert not token_matches("s3cret-tokeN", "s3cret-token")
    assert not token_matches("", "s3cret-token") and not token_matches(None, "s3cret-token")
    assert not token_matches("x", "")


def test_page_ships_in_the_package_and_loads_nothing_from_elsewhere():
    import re

    from person_search.web.app import STATIC, load_assets
    assets = load_assets()
    html = assets["index.html"].decode()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.startswith("/static/") and r.split("/")[-1] in STATIC for r in refs), refs
    for name, body in assets.items():
        text = body.decode()
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), f"{name} names another host"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, name
    assert "<script>" not in html  # no inline script (the CSP allows none)


def _stamp(sec, nsec=0):
    from types import SimpleNamespace
    return SimpleNamespace(sec=sec, nanosec=nsec)


def _match(**extra):
    from types import SimpleNamespace
    img = SimpleNamespace
    return SimpleNamespace(track_id=12, camera_frame_id="cam1", score=0.31234, first_seen=_stamp(10, 5),
                           last_seen=_stamp(20), box=[1.04, 2, 3, 4], crop=img(data=b"\xff\xd8crop"),
                           frame=img(data=b""), **extra)


def test_match_rows_carry_image_urls_and_the_reid_fields_where_present():
    from person_search.web.store import match_row
    store = ImageStore(10**6)
    row = match_row(_match(), store)
    assert row["track_id"] == 12 and row["camera"] == "cam1" and row["score"] == 0.3123
    assert row["first_seen_ns"] == 10_000_000_005 and row["last_seen_ns"] == 20_000_000_000
    assert row["frame_url"] is None and store.get(row["crop_url"].rsplit("/", 1)[1]) == b"\xff\xd8crop"
    assert "person_id" not in row  # this graph has no re-identification
    reid = match_row(_match(person_id=7, person_track_ids=[12, 40], cameras=["cam1", "cam0"]), store)
    assert reid["person_id"] == 7 and reid["person_track_ids"] == [12, 40] and reid["cameras"] == ["cam1", "cam0"]
    assert match_row(_match(person_id=-1), store)["person_id"] is None


def test_match_row_reads_the_real_message():
    msg = pytest.importorskip("person_search_interfaces.msg", reason="interfaces not built (run through make test)")
    from person_search.web.store import match_row
    m = msg.PersonMatch(track_id=3, score=0.5, camera_frame_id="cam0")
    m.crop.data = b"jpeg"
    row = match_row(m, ImageStore(10**6))
    assert row["track_id"] == 3 and row["crop_url"].startswith("/api/images/")

"""The console in headless Chromium against a running graph (test config, two looping cameras).

One graph for the module (with the web node, as `person-search up --web` starts it). The
browser searches through ``/?q=...``, sees result elements with ``data-track-id`` and loaded
crops, opens a track, watches a live tile change, sees a description holding a script
shown as text, sees the health panel flag a stopped stage and the page report a dead
query node. With ``PERSON_SEARCH_SCREENSHOT_DIR=docs`` it writes the README's screenshots.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import free_port, get

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SEARCH = "a person in a dark coat"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = os.environ.get("PERSON_SEARCH_SCREENSHOT_DIR")
    return Path(d) if d else tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def graph(chrome, tmp_path_factory):  # chrome first: no browser, no graph started
    from person_search.demo.sample import make_sample_video
    from person_search.graph import CameraSpec, make_graph
    video = make_sample_video(tmp_path_factory.mktemp("video") / "sample.mp4", seconds=4.0)
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    g = make_graph("test", [CameraSpec("cam0", str(video)), CameraSpec("cam1", str(video))], loop=True,
                   log_dir=logs, web=True, web_params={"web.port": port, "web.stale_s": 4.0,
                                                       "web.query_timeout_s": 6.0})
    g.url = f"http://127.0.0.1:{port}"
    g.start()
    try:
        g.wait_until(lambda: _ready(g), 180, "the gallery to fill and both cameras to show in the console")
        yield g
    finally:
        codes = g.stop()
        print(codes)
        for f in sorted(logs.glob("*.log")):
            print(f"--- {f.name}\n{f.read_text()[-2000:]}")


def _api(g, path):
    status, _, body = get(g.url + path, timeout=10)
    return json.loads(body) if status == 200 else None


def _ready(g) -> bool:
    try:
        health, cams = _api(g, "/api/health"), _api(g, "/api/cameras")
    except OSError:
        return False
    return bool(health and cams and (health["gallery_size"] or 0) >= 6 and health["query_service_ready"]
                and len([c for c in cams["cameras"] if c["seq"] > 0]) == 2)


def wait_for(pred, timeout: float, what: str):
    """Wait for ``pred()`` in the browser (nodes are stopped on purpose here)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def js(driver, script):
    return driver.execute_script(script)


def search(driver, url, q, **filters):
    query = "&".join([f"q={quote(q)}"] + [f"{k}={quote(str(v))}" for k, v in filters.items()])
    driver.get(f"{url}/?{query}")
    wait_for(lambda: js(driver, "return document.body.dataset.searchState") in ("done", "error"), 40,
             f"the search for {q!r}")
    return js(driver, "return document.body.dataset.searchState")


def images_loaded(driver, selector: str) -> bool:
    return js(driver, f"const i = [...document.querySelectorAll({json.dumps(selector)})];"
                      "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0);")


def test_search_shows_people_with_their_crops(graph, chrome, shots):
    from selenium.webdriver.common.by import By
    assert search(chrome, graph.url, SEARCH) == "done", chrome.find_element(By.ID, "error").text
    cards = chrome.find_elements(By.CSS_SELECTOR, "[data-track-id]")
    assert 1 <= len(cards) <= 12
    wait_for(lambda: images_loaded(chrome, "[data-track-id] img"), 20, "every crop to load")
    scores = [float(c.get_attribute("data-score")) for c in cards]
    assert scores == sorted(scores, reverse=True)
    for c in cards:  # each card is a track of the answer, with its camera, times and crop
        assert c.get_attribute("data-camera") in ("cam0", "cam1")
        assert f"track {c.get_attribute('data-track-id')}" in c.text
        known = _api(graph, f"/api/tracks/{c.get_attribute('data-camera')}/{c.get_attribute('data-track-id')}")
        assert known and abs(known["track"]["score"] - float(c.get_attribute("data-score"))) < 1e-3
    assert SEARCH in chrome.find_element(By.ID, "status").text
    chrome.save_screenshot(str(shots / "web_search.png"))


def test_camera_filter(graph, chrome):
    from selenium.webdriver.common.by import By
    assert search(chrome, graph.url, "someone walking", camera="cam1", top_k=6) == "done"
    cams = [c.get_attribute("data-camera") for c in chrome.find_elements(By.CSS_SELECTOR, "[data-track-id]")]
    assert cams and set(cams) == {"cam1"} and len(cams) <= 6
    assert chrome.find_element(By.ID, "camera").get_attribute("value") == "cam1"  # the filter shows in the form


def test_time_and_score_filters_reach_the_graph(graph):
    base = "/api/search?q=" + quote("a person walking") + "&top_k=100&frames=0"
    everyone = _api(graph, base)["matches"]
    assert len(everyone) >= 2
    asked = time.time_ns()
    recent = _api(graph, base + "&last_min=0.1")["matches"]  # the last 6 s
    assert len(recent) < len(everyone) or min(m["last_seen_ns"] for m in everyone) >= asked - 12e9
    assert all(m["last_seen_ns"] >= asked - 12e9 for m in recent)
    cut = sorted(m["last_seen_ns"] for m in everyone)[len(everyone) // 2]
    later = _api(graph, base + f"&since={cut / 1e9:.3f}")["matches"]
    assert later and all(m["last_seen_ns"] >= cut - 1e6 for m in later)
    floor = sorted(m["score"] for m in everyone)[len(everyone) // 2]
    strong = _api(graph, base + f"&min_score={floor}")["matches"]
    assert strong and all(m["score"] >= floor - 1e-4 for m in strong) and len(strong) <= len(everyone)
    assert all(m["frame_url"] is None for m in everyone)  # frames=0: no frame thumbnails asked


def test_open_a_track(graph, chrome, shots):
    from selenium.webdriver.common.by import By
    assert search(chrome, graph.url, SEARCH) == "done"
    cards = chrome.find_elements(By.CSS_SELECTOR, "[data-track-id]")
    newest = max(cards, key=lambda c: int(c.get_attribute("data-last-seen")))  # seen since the console started
    track_id = newest.get_attribute("data-track-id")
    newest.click()
    wait_for(lambda: js(chrome, "return document.getElementById('track').dataset.state") in ("done", "error"), 20,
             "the track view")
    assert js(chrome, "return document.getElementById('track').dataset.state") == "done", \
        chrome.find_element(By.ID, "track-error").text
    assert chrome.find_element(By.ID, "track").is_displayed()
    assert track_id in chrome.find_element(By.ID, "track-title").text
    wait_for(lambda: images_loaded(chrome, "#track-crop"), 10, "the best crop")
    wait_for(lambda: images_loaded(chrome, "#timeline .moment img"), 10, "the track's crops over time")
    assert "#track=" in chrome.current_url  # a link to this view
    chrome.save_screenshot(str(shots / "web_track.png"))
    chrome.find_element(By.ID, "track-close").click()
    assert not chrome.find_element(By.ID, "track").is_displayed()


def test_live_tile_changes(graph, chrome, shots):
    from selenium.webdriver.common.by import By
    assert search(chrome, graph.url, SEARCH, top_k=6) == "done"
    tile = "#tiles .tile[data-camera=cam0]"
    wait_for(lambda: js(chrome, f"const t = document.querySelector('{tile}'); return !!t && +t.dataset.seq > 0"),
             20, "the first frame of cam0")
    wait_for(lambda: images_loaded(chrome, f"{tile} img"), 10, "the tile image")
    seq, src = js(chrome, f"const t = document.querySelector('{tile}'); "
                          "return [+t.dataset.seq, t.querySelector('img').src]")
    wait_for(lambda: js(chrome, f"return +document.querySelector('{tile}').dataset.seq") > seq, 10,
             "a newer frame in the tile")
    assert js(chrome, f"return document.querySelector('{tile} img').src") != src
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#tiles .tile")) == 2
    chrome.set_window_size(1400, 1400)  # the whole aside: both tiles and the health panel
    try:
        time.sleep(1.5)
        chrome.find_element(By.TAG_NAME, "aside").screenshot(str(shots / "web_live.png"))
    finally:
        chrome.set_window_size(1400, 900)


def test_find_similar_shows_the_backends_answer(graph, chrome, shots):
    """Open a person's track, click "Find similar": the cards shown are find_similar's answer, in its order."""
    from selenium.webdriver.common.by import By
    assert search(chrome, graph.url, SEARCH) == "done"
    cards = [c for c in chrome.find_elements(By.CSS_SELECTOR, "[data-track-id]")
             if int(c.get_attribute("data-person-id") or -1) >= 0]  # a track with re-id features
    assert cards, "no answer carries a person id: is re-id on (shared OSNet weights)?"
    card = cards[0]
    camera, track_id = card.get_attribute("data-camera"), card.get_attribute("data-track-id")
    # keep what the page receives from the console's /api/similar (the find_similar service's answer)
    js(chrome, "window.similarAnswers = []; const f = window.fetch; window.fetch = async (...a) => {"
               "  const r = await f(...a);"
               "  if (String(a[0]).startsWith('/api/similar')) window.similarAnswers.push(await r.clone().json());"
               "  return r; };")
    card.click()
    wait_for(lambda: js(chrome, "return document.getElementById('track').dataset.state") in ("done", "error"), 20,
             "the track view")
    button = chrome.find_element(By.ID, "find-similar")
    assert button.is_displayed()
    button.click()
    wait_for(lambda: js(chrome, "return window.similarAnswers.length") == 1
             and "similar to" in chrome.find_element(By.ID, "status").text
             and "Looking" not in chrome.find_element(By.ID, "status").text, 40, "the find-similar answer")
    answer = js(chrome, "return window.similarAnswers[0]")
    shown = [(c.get_attribute("data-camera"), c.get_attribute("data-track-id"), c.get_attribute("data-person-id"))
             for c in chrome.find_elements(By.CSS_SELECTOR, "#results [data-track-id]")]
    assert answer["count"] >= 1 and shown == [
        (m["camera"], str(m["track_id"]), None if m.get("person_id") is None else str(m["person_id"]))
        for m in answer["matches"]]
    assert (camera, track_id) not in [(c, t) for c, t, _ in shown]  # the other sightings, not the track itself
    assert f"{answer['count']} similar to {camera} · track {track_id}" in chrome.find_element(By.ID, "status").text
    # the backend, asked directly, knows every sighting shown, with the same re-id ranking
    direct = _api(graph, f"/api/similar?camera={quote(camera)}&track_id={track_id}&top_k=100")["matches"]
    known = {(m["camera"], str(m["track_id"])) for m in direct}
    assert {(c, t) for c, t, _ in shown} <= known
    scores = [m["score"] for m in answer["matches"]]
    assert scores == sorted(scores, reverse=True)
    chrome.save_screenshot(str(shots / "web_find_similar.png"))


@pytest.mark.parametrize("payload", ["<script>alert(1)</script>",
                                     "<img src=x onerror=\"document.title='pwned'\"> in a red coat"])
def test_markup_in_a_description_is_shown_as_text(graph, chrome, payload):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    search(chrome, graph.url, payload)
    assert payload in chrome.find_element(By.ID, "status").text
    with pytest.raises(NoAlertPresentException):
        chrome.switch_to.alert.text
    assert js(chrome, "return document.scripts.length") == 1  # app.js only
    assert js(chrome, "return document.querySelectorAll('img[onerror], #results-pane script').length") == 0
    assert chrome.title == "person_search console"
    # typed into the box and submitted, too
    box = chrome.find_element(By.ID, "q")
    box.clear()
    box.send_keys(payload)
    chrome.find_element(By.CSS_SELECTOR, "form#search button").click()
    wait_for(lambda: payload in chrome.find_element(By.ID, "status").text
             and js(chrome, "return document.body.dataset.searchState") in ("done", "error"), 30, "the typed search")
    with pytest.raises(NoAlertPresentException):
        chrome.switch_to.alert.text
    assert chrome.title == "person_search console"


def test_health_panel_flags_a_stopped_stage(graph, chrome):
    from selenium.webdriver.common.by import By
    chrome.get(graph.url + "/")
    row = "#stages tr[data-stage='/cam1/detector: detector']"
    wait_for(lambda: js(chrome, f"const r = document.querySelector(\"{row}\"); return !!r && r.dataset.status")
             == "ok", 20, "the cam1 detector reported as ok")
    assert "ok" in chrome.find_element(By.ID, "graph-status").get_attribute("class")
    graph.stop("/cam1/detector")
    wait_for(lambda: js(chrome, f"return document.querySelector(\"{row}\").dataset.status") == "stalled", 20,
             "the stopped detector flagged as stalled")
    assert "bad" in chrome.find_element(By.ID, "graph-status").get_attribute("class")
    assert "stalled" in chrome.find_element(By.CSS_SELECTOR, row).text


def test_dead_query_node_gives_an_error_in_the_page(graph, chrome):
    from selenium.webdriver.common.by import By
    graph.stop("/query")
    t0 = time.monotonic()
    assert search(chrome, graph.url, SEARCH) == "error"
    assert time.monotonic() - t0 < 30
    err = chrome.find_element(By.ID, "error")
    assert err.is_displayed()
    assert "query_person" in err.text or "did not answer" in err.text, err.text

"""The console as a real process without a graph, or with a slow one: bind rules, token, errors, limits.

A dead graph must give a clear JSON error at once (503), a slow one a 504 after the
console's timeout: never a hang. The slow graph is a real /query_person service in this
test process that takes longer than the console waits.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest

from conftest import ROOT, Console, get, get_json

pytestmark = pytest.mark.ros


def run_cli(*args, env=None, timeout=60):
    e = {k: v for k, v in os.environ.items() if k != "PERSON_SEARCH_WEB_TOKEN"}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "person_search", *args], env=e, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,env", [
    (["web", "--host", "0.0.0.0"], {}),
    (["web", "--host", "192.168.7.7", "--port", "8081"], {}),
    (["web", "--host", "0.0.0.0"], {"PERSON_SEARCH_WEB_TOKEN": "short"}),
    (["up", "--config", "test", "--source", "none.mp4", "--web", "--web-host", "0.0.0.0"], {}),
])
def test_public_host_without_token_is_refused(args, env):
    t0 = time.monotonic()
    r = run_cli(*args, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "token" in lines[0] and "Traceback" not in r.stderr
    assert "starting" not in r.stdout  # `up` started no node
    assert time.monotonic() - t0 < 30


def test_port_in_use_is_one_line_and_exit_2():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run_cli("web", "--port", str(s.getsockname()[1]))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip().startswith("error: cannot serve on 127.0.0.1:") and "in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # no traceback, no abort from a ROS thread


@pytest.fixture(scope="module")
def token():
    return "t-" + secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def dead(token):
    """A console with a token, in a namespace where no graph runs."""
    c = Console("--namespace", "nograph", "--token", token, "--timeout", "3").wait_ready()
    yield c
    code, out = c.stop()
    assert code == 0, out
    assert token not in out, "the token was printed or logged"


def test_every_request_needs_the_token(dead, token):
    for path in ("/", "/api/info", "/api/search?q=a", "/api/health", "/static/app.js", "/api/images/x"):
        status, body = get_json(dead.url + path)
        assert status == 401 and "token" in body["error"], path
        status, body = get_json(dead.url + path, headers={"Authorization": "Bearer " + token[:-1] + "x"})
        assert status == 401, path
    status, headers, _ = get(dead.url + "/api/info", headers={"Authorization": "Bearer " + token})
    assert status == 200


def test_token_in_the_address_becomes_a_cookie(dead, token):
    status, headers, _ = get(f"{dead.url}/?q=red+coat&token={quote(token)}")
    assert status == 302 and headers["Location"] == "/?q=red+coat"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";", 1)[0]
    status, headers, body = get(dead.url + "/", headers={"Cookie": jar})
    assert status == 200 and b'<script src="/static/app.js"' in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_dead_graph_gives_a_clear_error_at_once(dead, token):
    auth = {"Authorization": "Bearer " + token}
    t0 = time.monotonic()
    status, body = get_json(dead.url + "/api/search?q=a+person", headers=auth)
    assert status == 503 and "/nograph/query_person" in body["error"] and "not available" in body["error"]
    assert time.monotonic() - t0 < 10
    status, body = get_json(dead.url + "/api/health", headers=auth)
    assert status == 200 and body["query_service_ready"] is False
    status, body = get_json(dead.url + "/api/cameras", headers=auth)
    assert status == 200 and body["cameras"] == []


@pytest.mark.parametrize("path,code,needle", [
    ("/api/search?q=", 400, "empty"),
    ("/api/search?q=" + "x" * 1001, 400, "limit"),
    ("/api/search?q=a&top_k=0", 400, "top_k"),
    ("/api/search?q=a&top_k=10000", 400, "top_k"),
    ("/api/search?q=a&min_score=abc", 400, "min_score"),
    ("/api/search?q=a&camera=..%2F..%2Fetc", 400, "camera"),
    ("/api/search?q=a&since=tomorrow", 400, "since"),
    ("/api/images/..%2F..%2F..%2Fetc%2Fpasswd", 404, ""),
    ("/api/images/AAAAAAAAAAAAAAAA", 404, "no such image"),
    ("/api/timeline/AAAAAAAAAAAAAAAA", 404, "no such image"),
    ("/static/..%2Fapp.py", 404, ""),
    ("/static/index.html", 404, ""),
    ("/api/tracks/cam0/12", 404, "track"),
    ("/api/tracks/cam0/-1", 400, "track id"),
    ("/api/cameras/cam0/latest.jpg", 404, "camera"),
    ("/api/similar?camera=cam0&track_id=1", 503, "find_similar"),  # the graph is not there (re-id interfaces built)
    ("/api/nothing", 404, ""),
])
def test_bad_requests_get_json_errors(dead, token, path, code, needle):
    status, body = get_json(dead.url + path, headers={"Authorization": "Bearer " + token})
    assert status == code, body
    assert needle.lower() in body["error"].lower()


def test_wrong_method_is_405(dead, token):
    status, body = get_json(dead.url + "/api/search?q=a", method="POST", headers={"Authorization": "Bearer " + token})
    assert status == 405 and body["error"]


@pytest.fixture(scope="module")
def slow_graph():
    """A real /slow/query_person service that answers after 5 s (longer than the console waits)."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from person_search_interfaces.srv import QueryPerson
    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node(f"slow_graph_{os.getpid()}", namespace="/slow")
    calls = []

    def answer(req, resp):
        calls.append(req.description)
        time.sleep(5.0)
        resp.success, resp.message = True, "late"
        return resp
    from person_search.nodes.qos import SERVICE_QOS
    node.create_service(QueryPerson, "query_person", answer, qos_profile=SERVICE_QOS)
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    yield calls
    ex.shutdown(timeout_sec=10)
    node.destroy_node()
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def loopback(slow_graph):
    c = Console("--namespace", "slow", "--timeout", "2").wait_ready()
    yield c
    code, out = c.stop()
    assert code == 0, out


def test_slow_graph_gives_a_timeout_error(loopback, slow_graph):
    deadline = time.monotonic() + 30.0
    while True:  # DDS discovery of /slow/query_person by the console's process can take seconds on a loaded machine
        t0 = time.monotonic()
        status, body = get_json(loopback.url + "/api/search?q=someone")
        took = time.monotonic() - t0
        if status != 503 or time.monotonic() > deadline:
            break
        assert "not available" in body["error"] and not slow_graph, body  # a 503 never reached the graph
        time.sleep(0.5)
    assert status == 504 and "did not answer" in body["error"], body
    assert 1.5 < took < 7.0, took
    assert slow_graph and slow_graph[0] == "someone"  # the request did reach the graph


def test_loopback_console_answers_only_to_loopback_names(loopback):
    assert get(loopback.url + "/api/info")[0] == 200
    assert get(loopback.url + "/api/info", headers={"Host": f"localhost:{loopback.port}"})[0] == 200
    status, body = get_json(loopback.url + "/api/info", headers={"Host": "attacker.example"})
    assert status == 403 and "127.0.0.1" in body["error"]

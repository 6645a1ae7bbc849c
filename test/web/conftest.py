"""Fixtures of the console tests: the console as a real process, HTTP helpers, headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

# a DDS domain of this test session's own (the console and graph processes inherit it)
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
ROOT = Path(__file__).resolve().parents[2]

try:
    import aiohttp  # noqa: F401
    import rclpy  # noqa: F401
    from person_search_interfaces.srv import QueryPerson  # noqa: F401
    WHY_NOT = ""
except ImportError as exc:  # pragma: no cover - depends on the machine
    WHY_NOT = f"rclpy, person_search_interfaces or aiohttp not importable ({exc}); run through `make test`"


def pytest_collection_modifyitems(config, items):
    if WHY_NOT:
        for item in items:
            if "test_web_core" not in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=WHY_NOT))


def browser_missing() -> str:
    """Return why headless Chromium cannot be driven here ("" when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return (f"{exe} is not installed (Debian: apt-get install chromium chromium-driver; "
                    "`make setup` does it where apt-get can run)")
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """``person-search web`` as a child process."""

    def __init__(self, *args: str, env: Optional[Dict[str, str]] = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill and block the console
        self.proc = subprocess.Popen([sys.executable, "-m", "person_search", "-v", "web", "--port", str(self.port),
                                      *args], env=dict(os.environ, **(env or {})), cwd=ROOT,
                                     stdout=self.out, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def wait_ready(self, timeout: float = 60.0) -> "Console":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the console exited: {self.output()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the console did not start listening")

    def stop(self) -> Tuple[int, str]:
        """SIGTERM the console; return its exit code and everything it printed."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self.output()


def get(url: str, headers: Optional[Dict[str, str]] = None, method: str = "GET",
        timeout: float = 30.0) -> Tuple[int, Dict[str, str], bytes]:
    """Return (status, headers, body) of one request, without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, **kw):
    status, headers, body = get(url, **kw)
    assert headers.get("Content-Type", "").startswith("application/json"), (status, headers, body[:200])
    return status, json.loads(body)


@pytest.fixture(scope="module")
def chrome():
    """A headless Chromium driven by selenium (skip with the reason where there is none; fail under CI)."""
    why = browser_missing()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser tests: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()

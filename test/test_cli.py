"""The command line as users run it: help everywhere, exit codes, --json, no traceback on user errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from person_search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-m", "person_search", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_argument_has_help():
    missing = []
    for name, sp in _subparsers(build_parser()):
        for action in sp._actions:
            if not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{name} {action.dest}")
    assert not missing, missing


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("person-search "), proc


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "not_a_video.mp4").write_bytes(b"\x00garbage" * 10)
    (d / "broken.yaml").write_text("/**:\n  ros__parameters: [unclosed\n")
    (d / "wrong.yaml").write_text("detector:\n  conf: high\n")
    (d / "snap.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return d


@pytest.mark.parametrize("args,needle", [
    (["run", "/nonexistent/video.mp4", "--config", "test"], "video not found: /nonexistent/video.mp4"),
    (["run", "{d}/not_a_video.mp4", "--config", "test"], "not_a_video.mp4"),
    (["run", "{d}/not_a_video.mp4", "--config", "/nonexistent.yaml"], "config '/nonexistent.yaml' not found"),
    (["run", "{d}/not_a_video.mp4", "--config", "{d}/broken.yaml"], "error:"),
    (["run", "{d}/not_a_video.mp4", "--config", "{d}/wrong.yaml"], "detector.conf must be a number"),
    (["run", "{d}/not_a_video.mp4", "--config", "test", "--set", "conf=1"], "--set expects section.key=value"),
    (["run", "{d}/not_a_video.mp4", "--config", "test", "--set", "detector.conf=[1"], "not valid YAML"),
    (["run", "{d}/not_a_video.mp4", "--config", "test", "--set", "detector.nope=1"], "unknown detector key"),
    (["gallery", "load", "{d}/snap.npz", "--config", "test"], "snap.npz"),
    (["gallery", "load", "/nonexistent/snap.npz", "--config", "test"], "/nonexistent/snap.npz"),
    (["up", "--config", "test", "--set", "detector.conf=2"], "detector.conf must be in [0, 1]"),
    (["up", "--config", "test", "--namespace", "1bad"], "namespace '1bad'"),
    (["up", "--config", "test", "--image-topic", "/a b"], "not a valid ROS topic"),
    (["run"], "the following arguments are required: video"),
])
def test_user_errors_exit_2_in_one_line(bad_files, args, needle):
    proc = _cli(*[a.replace("{d}", str(bad_files)) for a in args])
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]


def test_query_without_a_graph_exits_3():
    pytest.importorskip("person_search_interfaces", reason="interfaces not built (tools/setup_env.sh)")
    env_domain = str(150 + os.getpid() % 50)  # an empty DDS domain
    env = dict(os.environ, ROS_DOMAIN_ID=env_domain, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "person_search", "query", "a person", "--timeout", "1",
                           "--namespace", "robot9"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "/robot9/query_person not available" in proc.stderr and "Traceback" not in proc.stderr


def test_run_json(tmp_path):
    from person_search.core.sample import make_sample_video
    video = make_sample_video(tmp_path / "v.mp4", seconds=1.0)
    proc = _cli("run", str(video), "--config", "test", "--max-frames", "8", "--query", "a person",
                "--query", "", "--top-k", "2", "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]  # the empty query fails, the other answers
    out = json.loads(proc.stdout)
    assert out["frames"] == 8 and out["model_id"].startswith("PS-Tiny-ViT@")
    good, bad = out["queries"]
    assert good["query"] == "a person" and len(good["matches"]) <= 2
    assert all({"track_id", "camera", "score", "box"} <= set(m) for m in good["matches"])
    assert "empty" in bad["error"]
    assert "Traceback" not in proc.stderr

"""The command line as users run it: help everywhere, exit codes, --json, no traceback on user errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from person_search.cli import build_parser, main

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


def test_person_search_is_on_the_path_of_env_sh(tmp_path):
    """``tools/env.sh person-search`` works from any folder, as every README command runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PERSON_SEARCH_ENV", "PYTHONPATH")}
    proc = subprocess.run([str(ROOT / "tools" / "env.sh"), "person-search", "--version"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("person-search "), proc.stderr[-2000:]


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("person-search "), proc


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    import numpy as np
    d = tmp_path_factory.mktemp("bad")
    (d / "not_a_video.mp4").write_bytes(b"\x00garbage" * 10)
    (d / "broken.yaml").write_text("/**:\n  ros__parameters: [unclosed\n")
    (d / "wrong.yaml").write_text("detector:\n  conf: high\n")
    (d / "snap.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(d / "pickled.npz", meta=np.array([{"format": "x"}], dtype=object))  # needs allow_pickle to load
    (d / "a_file").write_text("not a folder")
    from person_search.demo.sample import make_sample_video
    make_sample_video(d / "v.mp4", seconds=0.5)
    return d


class HeavyWork(AssertionError):
    """Raised where a refused command would have started real work."""


HEAVY = [  # (module, attribute): what loads models, starts nodes, reads videos, trains or writes data
    ("person_search.core.pipeline", "OfflinePipeline"), ("person_search.core.clip_encoder", "ClipEncoder"),
    ("person_search.core.models.factory", "build_clip"), ("person_search.graph.supervisor.Graph", "start"),
    ("person_search.lab.train.merge", "atomic_write"), ("person_search.lab.train", "train"),
    ("person_search.lab.eval.evaluate", "evaluate"), ("person_search.lab.eval.evaluate", "build_encoder"),
    ("person_search.lab.data.synth", "generate"), ("person_search.cli.ros", "query_service"),
    ("person_search.demo.crowd", "make_crowd_video"), ("person_search.demo.sample", "make_sample_video"),
]


@pytest.fixture
def no_heavy_work(monkeypatch):
    import importlib

    def refuse(*_a, **_k):
        raise HeavyWork("a refused command reached real work")
    for mod, attr in HEAVY:
        if "." in mod and mod.rsplit(".", 1)[1][0].isupper():  # a class: patch its method
            owner = getattr(importlib.import_module(mod.rsplit(".", 1)[0]), mod.rsplit(".", 1)[1])
        else:
            owner = importlib.import_module(mod)
        monkeypatch.setattr(owner, attr, refuse)


V, D = "{d}/v.mp4", "{d}"  # a readable 0.5 s video; the folder of the bad files
MISSING_W = ["--set", "encoder.weights=/nonexistent/w.safetensors"]


@pytest.mark.parametrize("args,needle", [
    # run: every check before the video is processed or a model loads
    (["run", "/nonexistent/video.mp4", "--config", "test"], "video not found: /nonexistent/video.mp4"),
    (["run", "{d}/not_a_video.mp4", "--config", "test"], "not_a_video.mp4: not a video file"),
    (["run", V, "--config", "/nonexistent.yaml"], "config '/nonexistent.yaml' not found"),
    (["run", V, "--config", "{d}/broken.yaml"], "broken.yaml"),
    (["run", V, "--config", "{d}/wrong.yaml"], "detector.conf must be a number"),
    (["run", V, "--config", "test", "--set", "conf=1"], "--set expects section.key=value"),
    (["run", V, "--config", "test", "--set", "detector.conf=[1"], "not valid YAML"),
    (["run", V, "--config", "test", "--set", "detector.nope=1"], "unknown detector key"),
    (["run", V, "--config", "test", "--query", ""], "description is empty"),
    (["run", V, "--config", "test", "--query", "a man", "--query", " "], "only whitespace (description 2 of 2)"),
    (["run", V, "--config", "test", "--top-k", "0"], "argument --top-k: must be >= 1, got 0"),
    (["run", V, "--config", "test", "--max-frames", "-1"], "argument --max-frames: must be >= 0, got -1"),
    (["run", V, "--config", "test", "--fps", "0"], "argument --fps: must be > 0"),
    (["run", V, "--config", "test", "--sheet", "/nonexistent/dir/s.png"], "the folder /nonexistent/dir does not exist"),
    (["run", V, "--config", "test", *MISSING_W], "or pass --random-weights"),
    (["run", V, "--bogus"], "unrecognized arguments: --bogus"),
    (["run"], "the following arguments are required: video"),
    # gallery
    (["gallery", "query", "{d}/snap.npz"], "gallery query needs at least one description"),
    (["gallery", "query", "{d}/snap.npz", ""], "description is empty"),
    (["gallery", "load", "{d}/snap.npz", "a man"], "gallery load takes no description"),
    (["gallery", "save", "{d}/x.npz", "--config", "test"], "gallery save needs --video"),
    (["gallery", "load", "{d}/snap.npz", "--config", "test"], "snap.npz"),
    (["gallery", "load", "/nonexistent/snap.npz", "--config", "test"], "/nonexistent/snap.npz"),
    (["gallery", "load", "{d}/pickled.npz", "--config", "test"], "pickled Python objects"),
    # ROS commands: checked before any node starts or DDS is touched
    (["up", "--config", "test", "--set", "detector.conf=2"], "detector.conf must be in [0, 1]"),
    (["up", "--config", "test", "--namespace", "1bad"], "namespace '1bad'"),
    (["up", "--config", "test", "--image-topic", "/a b"], "not a valid ROS topic"),
    (["up", "--config", "test", *MISSING_W], "or pass --random-weights"),
    (["up", "--max-restarts", "-1"], "argument --max-restarts: must be >= 0"),
    (["query", "a man", "--timeout", "-1"], "argument --timeout: must be > 0, got -1"),
    (["query", "a man", "--top-k", "-1"], "argument --top-k: must be >= 0"),
    (["query", "a man", "--last", "-5"], "argument --last: must be >= 0"),
    (["query", ""], "description is empty"),
    (["demo", "--query", " "], "description is only whitespace"),
    (["demo", "--top-k", "0"], "argument --top-k: must be >= 1"),
    # sizes: WIDTHxHEIGHT everywhere; the old HxW order of person images is refused with the fix
    (["sample-video", "{d}/c.mp4", "--crowd", "2", "--size", "1920"], "--size expects WIDTHxHEIGHT"),
    (["sample-video", "/nonexistent/dir/c.mp4"], "the folder /nonexistent/dir does not exist"),
    (["sample-video", "{d}/c.mp4", "--seconds", "0"], "argument --seconds: must be > 0"),
    (["data", "synth", "{d}/syn", "--ids", "10", "--size", "64x32"], "for 64 tall and 32 wide write 32x64"),
    (["train", "--data", D, "--out", "{d}/run", "--image-size", "384x128"], "write 128x384"),
    (["eval", "--data", D, "--random-weights", "--image-size", "64x32"], "write 32x64"),
    (["eval", "--data", D, "--random-weights", "--json", "/nonexistent/dir/m.json"], "/nonexistent/dir does not"),
    # lab
    (["lora", "merge", "/nonexistent/run", "--out", "{d}/m.safetensors"], "no such file or folder"),
    (["lora", "merge", D, "--out", "{d}/m.pt"], "must be a .safetensors file"),
    (["lora", "merge", D, "--out", "{d}/a_file/m.safetensors"], "cannot create the folder"),
    (["export", "--to", "onnx"], "--to onnx needs --out"),
])
def test_user_errors_exit_2_in_one_line_before_any_work(bad_files, no_heavy_work, capsys, args, needle):
    """Every user error: exit code 2, one line on stderr, no traceback, and no model, node or video touched."""
    code = main([a.replace("{d}", str(bad_files)) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, (code, err[-2000:])
    assert needle in err, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in out + err and "allow_pickle" not in err


def test_user_errors_in_a_real_process(bad_files):
    """The same contract through the interpreter: one line, exit 2, nothing on stdout."""
    for args in (["run", str(bad_files / "v.mp4"), "--config", "test", "--top-k", "0"],
                 ["gallery", "query", str(bad_files / "snap.npz")]):
        proc = _cli(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
        assert proc.stdout == "" and "Traceback" not in proc.stderr


def test_query_without_a_graph_exits_3():
    pytest.importorskip("person_search_interfaces", reason="interfaces not built (tools/setup_env.sh)")
    env_domain = str(150 + os.getpid() % 50)  # an empty DDS domain
    env = dict(os.environ, ROS_DOMAIN_ID=env_domain, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "person_search", "query", "a person", "--timeout", "1",
                           "--namespace", "robot9"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "/robot9/query_person not available" in proc.stderr and "Traceback" not in proc.stderr


def test_run_json_is_the_only_thing_on_stdout(tmp_path):
    """``run --json | jq`` parses: ultralytics, open_clip and faiss messages stay off stdout (and quiet without -v)."""
    from person_search.core.paths import resolve_model_path
    from person_search.demo.sample import make_sample_video
    video = make_sample_video(tmp_path / "v.mp4", seconds=1.0)
    # the OpenVINO YOLO prints "Loading ... for OpenVINO inference" on stdout by itself; use it where it exists
    yolo = resolve_model_path("yolo11n_int8_openvino_model")
    det = ["--set", "detector.backend=yolo", "--set", f"detector.model={yolo}"] if yolo else []
    proc = _cli("run", str(video), "--config", "test", *det, "--max-frames", "8", "--query", "a person",
                "--top-k", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert out["frames"] == 8 and out["model_id"].startswith("PS-Tiny-ViT@")
    assert out["detector"] == ("yolo" if yolo else "hog")
    (good,) = out["queries"]
    assert good["query"] == "a person" and len(good["matches"]) <= 2
    assert all({"track_id", "camera", "score", "box"} <= set(m) for m in good["matches"])
    for chatter in ("faiss.loader", "[root] INFO", "initialized randomly", "OpenVINO inference"):
        assert chatter not in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_up_names_the_error_line_of_a_node_that_cannot_start(tmp_path):
    from types import SimpleNamespace
    from person_search.cli.ros import _why_stopped
    (tmp_path / "embedder.log").write_text("[INFO] loading\n[person_search] cannot start: encoder weights file not "
                                           "found: /x.safetensors\n")
    graph = SimpleNamespace(log_dir=tmp_path)
    why = _why_stopped(graph, "node /embedder cannot start (exit code 2, see its log)")
    assert why == ("node /embedder cannot start: [person_search] cannot start: encoder weights file not found: "
                   "/x.safetensors")
    assert "error line is above" in _why_stopped(SimpleNamespace(log_dir=None), "node /query cannot start (exit 2)")
    assert _why_stopped(graph, "node /index died 11 times in a row") == "node /index died 11 times in a row"

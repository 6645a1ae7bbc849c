"""No node outlives the `person-search up` that started it; nodes stop promptly on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import alive, children

ROOT = Path(__file__).resolve().parents[2]


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _kill_all(up: subprocess.Popen) -> None:
    """Kill ``up`` and whatever children it still has (test clean-up)."""
    kids = children(up.pid)
    if up.poll() is None:
        up.kill()
    for p in kids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigkill_of_up_leaves_no_node(sample_video, tmp_path):
    up = subprocess.Popen([sys.executable, "-m", "person_search", "up", "--config", "test", "--source",
                           str(sample_video), "--loop", "--log-dir", str(tmp_path / "logs")],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: len(children(up.pid)) >= 5, 60), "up never started its 5 nodes"
        nodes = children(up.pid)
        time.sleep(2.0)  # let them get into model loading / spinning
        assert all(alive(p) for p in nodes), "a node died on its own"
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        assert _wait(lambda: not any(alive(p) for p in nodes), 15), \
            f"nodes outlived a killed `up`: {[p for p in nodes if alive(p)]}"
    finally:
        _kill_all(up)


def test_node_stops_on_sigterm_while_loading_its_model(tmp_path):
    # a full-size ViT-B-16 takes seconds to build on 2 cores: the signal arrives mid-load
    cmd = [sys.executable, "-m", "person_search.nodes.embedder_node", "--ros-args",
           "-p", "encoder.arch:=ViT-B-16", "-p", "encoder.weights:=''", "-p", "encoder.threads:=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3.0)
        assert proc.poll() is None, f"the embedder exited early: {proc.communicate()[0][-2000:]}"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        took = time.monotonic() - t0
        out = proc.stdout.read()
        assert code == 0, f"exit code {code} after SIGTERM: {out[-2000:]}"
        assert "Traceback" not in out, out[-2000:]
        assert took < 8.0, f"took {took:.1f} s to stop on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT-from-a-script", "SIGTERM"])
def test_up_stops_every_node_on_a_signal(sample_video, tmp_path, sig):
    # started as a script starts a background job: SIGINT ignored, which Python then keeps
    up = subprocess.Popen([sys.executable, "-m", "person_search", "up", "--config", "test", "--source",
                           str(sample_video), "--loop", "--log-dir", str(tmp_path / "logs")],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert _wait(lambda: len(children(up.pid)) >= 5, 60), "up never started its 5 nodes"
        nodes = children(up.pid)
        time.sleep(2.0)
        assert all(alive(p) for p in nodes), "a node died on its own"
        t0 = time.monotonic()
        up.send_signal(sig)
        code = up.wait(15)
        took = time.monotonic() - t0
        left = [p for p in nodes if alive(p)]
        out = up.stdout.read()
        assert code == 0 and took < 10.0, f"up exited with {code} after {took:.1f} s: {out[-2000:]}"
        assert not left, f"nodes still running when up had exited: {left}"
        assert "restarting" not in out and "Traceback" not in out, out[-2000:]
    finally:
        _kill_all(up)


@pytest.mark.parametrize("name", ["/query", "/index"])  # a lifecycle node and a plain one
def test_a_node_stopped_by_sigint_removes_its_shared_memory(sample_video, tmp_path, name):
    # started without the supervisor, whose clean-up would hide a node that leaves its segment
    from person_search.graph import CameraSpec, make_graph
    from procs import shm_segments
    graph = make_graph("test", [CameraSpec("cam0", str(sample_video))])
    spec = next(s for s in graph.specs if s.fqn == name)
    proc = subprocess.Popen(graph.command(spec), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert _wait(lambda: len(shm_segments(proc.pid)) >= 2, 60), "the node never mapped its segments"
        time.sleep(3.0)  # past start-up: spinning
        segs = shm_segments(proc.pid)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=15)[0]
        assert proc.returncode == 0, out[-2000:]
        left = [s for s in segs if os.path.exists(f"/dev/shm/{s}")]
        assert not left, f"{name} exited and left {len(left)} segment(s) in /dev/shm: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_nodes_shared_memory_is_given_back(sample_video, tmp_path):
    # Fast DDS maps a 32 MiB segment per process (config/fastdds_local.xml) that a SIGKILLed
    # process cannot remove; /dev/shm is RAM, so a crash-looping node would fill the machine
    from person_search.graph import CameraSpec, make_graph
    from procs import shm_segments
    graph = make_graph("test", [CameraSpec("cam0", str(sample_video))], log_dir=tmp_path / "logs")
    graph.start(only=["/index"])
    try:
        pid = graph.procs["/index"].pid

        def sizes():
            out = {}
            for seg in shm_segments(pid):
                try:
                    out[seg] = os.path.getsize(f"/dev/shm/{seg}")
                except OSError:
                    pass
            return out
        # a segment file is created empty and then sized: wait for the profile's 32 MiB one
        assert _wait(lambda: any(v >= 32 * 2**20 for v in sizes().values()), 60), \
            f"the index node never mapped the profile's big segment: {sizes()}"
        time.sleep(1.0)
        segs = set(sizes())
        time.sleep(3.0)  # older than the supervisor's 2 s guard against half-created files
        os.kill(pid, signal.SIGKILL)
        # reaped, as the respawner sees it (a multithreaded process's main thread shows as a
        # zombie while its other threads, which share the locked file, are still exiting)
        assert _wait(lambda: "/index" in graph.dead(), 10)
        assert all(os.path.exists(f"/dev/shm/{s}") for s in segs), "a killed process removed its segment?"
        ages = {s: time.time() - os.stat(f"/dev/shm/{s}_el").st_mtime for s in segs}
        graph.start(only=["/index"])  # a respawn cleans up after the dead one
        left = [s for s in segs if os.path.exists(f"/dev/shm/{s}")]
        assert not left, f"segments left after a respawn: {left} (ages {ages}, cleaned {graph.shm_freed})"
        assert graph.shm_freed.removed >= len(segs)
    finally:
        graph.stop()

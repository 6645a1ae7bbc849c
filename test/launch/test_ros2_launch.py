"""`ros2 launch person_search ...` as a user or a script runs it: signals, respawn, configuration errors, orin.

Each launch runs the real `ros2` command as a subprocess started the way a script starts a
background job (SIGINT ignored); its nodes are found through /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from launch_helpers import alive, ros2, wait_until
from procs import shm_segments

pytestmark = pytest.mark.slow  # each test starts a whole graph

STOP_S = 10.0  # every process gone within this after SIGINT / SIGTERM


def _wait_for_answer(timeout: float = 300.0) -> str:
    """Call /query_person with `ros2 service call` until it answers success=True; return the output."""
    run = None

    def answered():
        nonlocal run
        try:  # `ros2 service call` waits for the service without a limit: one try at most 60 s
            run = ros2("service", "call", "/query_person", "person_search_interfaces/srv/QueryPerson",
                       "{description: 'a man in a dark suit', top_k: 3}", timeout=60.0)
        except subprocess.TimeoutExpired:
            return False
        return "success=True" in run.stdout
    wait_until(answered, timeout, "an answer from /query_person", step=2.0)
    return run.stdout


def test_sigint_from_a_script_and_respawn_after_kill_9(ros2_launch, sample_video):
    run = ros2_launch("test.launch.py", f"source:={sample_video}", "loop:=true", "random_weights:=true")
    nodes = wait_until(lambda: len(run.nodes()) == 5 and run.nodes(), 60, "the 5 node processes")
    _wait_for_answer()
    detector = next(pid for pid, name in nodes.items() if name == "/cam0/detector")
    segments = shm_segments(detector)
    assert segments, "the detector has no Fast DDS shared-memory segment"
    os.kill(detector, signal.SIGKILL)
    wait_until(lambda: any(n == "/cam0/detector" and p != detector for p, n in run.nodes().items()), 30,
               "the killed detector to be respawned")
    # the killed process could not remove its 32 MiB segment: the launch did
    wait_until(lambda: not any(os.path.exists(f"/dev/shm/{s}") for s in segments), 10,
               f"the killed detector's shared-memory segments {sorted(segments)} to be removed")
    assert run.proc.poll() is None, run.text()[-3000:]
    took = run.stop(signal.SIGINT)
    assert took < STOP_S, f"{took:.1f} s to stop after SIGINT"
    assert run.proc.returncode == 0, run.text()[-3000:]
    assert not [p for p in run.seen if alive(p)]


def test_configuration_error_stops_the_launch_without_respawn(ros2_launch, sample_video, tmp_path):
    missing = tmp_path / "no_such_clip.safetensors"
    run = ros2_launch("test.launch.py", f"source:={sample_video}", f"weights:={missing}")
    wait_until(lambda: run.proc.poll() is not None, 180, "the launch to stop on its own")
    out = run.text()
    assert run.proc.returncode == 1, out[-3000:]
    assert "cannot start (exit code 2; its message is above): stopping the launch" in out, out[-3000:]
    assert str(missing) in out, out[-3000:]  # the node's own one-line reason
    assert out.count("process started") == 5, "a node was respawned after a configuration error"
    assert not [p for p in run.seen if alive(p)]


ORIN_ON_CPU = ("detector.backend=hog detector.device=cpu encoder.backend=torch encoder.device=cpu "
               "encoder.precision=fp32 encoder.arch=PS-Tiny-ViT encoder.image_height=64 encoder.image_width=64")


def test_orin_launch_on_cpu_backends_and_sigterm(ros2_launch, sample_video):
    args = ros2("launch", "person_search", "orin.launch.py", "--show-args")
    assert args.returncode == 0 and "'random_weights':" in args.stdout and "'set':" in args.stdout, args.stdout
    run = ros2_launch("orin.launch.py", f"source:={sample_video}", "loop:=true", "random_weights:=true",
                      f"set:={ORIN_ON_CPU}")
    wait_until(lambda: len(run.nodes()) == 5, 60, "the 5 node processes")
    _wait_for_answer()
    took = run.stop(signal.SIGTERM)
    assert took < STOP_S, f"{took:.1f} s to stop after SIGTERM"
    assert not [p for p in run.seen if alive(p)]

"""Absent ROS pieces skip only the folders that need them, with the reason, and fail the run in CI.

Each case runs pytest in a subprocess on one core test file and one file of test/ros and
test/launch, with rclpy (or vision_msgs) made unimportable by a module of that name
earlier on PYTHONPATH that raises ImportError.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE, ROS, LAUNCH = "test/test_graph_spec.py", "test/ros/test_params.py", "test/launch/test_launch_graph.py"


def _pytest(tmp_path: Path, hide: str, ci: bool, files) -> tuple:
    """Run pytest on ``files`` with module ``hide`` unimportable; return (exit code, {file: [outcomes]}, output)."""
    shim = tmp_path / "shim" / hide
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(f"raise ImportError('{hide} hidden by test_requirements_skip')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shim"), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = "true"
    xml = tmp_path / "junit.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          f"--junitxml={xml}", *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        path = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        outcomes.setdefault(path, []).append((kinds[0] if kinds else "passed", case))
    return run.returncode, outcomes, run.stdout + run.stderr


def _of(outcomes: dict, file: str) -> set:
    return {kind for path, cases in outcomes.items() if path.endswith(file) for kind, _ in cases}


@pytest.mark.parametrize("ci", [False, True], ids=["local", "CI=true"])
def test_missing_rclpy_skips_ros_folders_only(tmp_path, ci):
    code, outcomes, out = _pytest(tmp_path, "rclpy", ci, [CORE, ROS, LAUNCH])
    assert _of(outcomes, CORE) == {"passed"}, out[-3000:]  # the core file ran, whatever ROS lacks
    if ci:
        assert code == 1 and _of(outcomes, ROS) == _of(outcomes, LAUNCH) == {"failure"}, out[-3000:]
        assert "CI is set and rclpy or person_search_interfaces not importable" in out, out[-3000:]
    else:
        assert code == 0 and _of(outcomes, ROS) == _of(outcomes, LAUNCH) == {"skipped"}, out[-3000:]
        assert "rclpy hidden by test_requirements_skip" in out, out[-3000:]


def test_missing_vision_msgs_fails_the_launch_tests_in_ci(tmp_path):
    code, outcomes, out = _pytest(tmp_path, "vision_msgs", True, [CORE, LAUNCH])
    assert _of(outcomes, CORE) == {"passed"}, out[-3000:]
    assert code == 1 and _of(outcomes, LAUNCH) == {"failure"}, out[-3000:]
    assert "not installed: vision_msgs.msg (vision_msgs hidden" in out, out[-3000:]

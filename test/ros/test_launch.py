"""launch_pytest version of the main graph test: the real launch file, `ros2 launch` style.

Runs where a ROS 2 distribution provides launch, launch_ros and launch_pytest (Humble or
newer); skipped with the reason elsewhere (the PyPI wheels have none of the three).
"""

from __future__ import annotations

import os

import pytest

launch_pytest = pytest.importorskip(
    "launch_pytest", reason="launch_pytest is not installed (it ships with ROS 2 distributions, not PyPI)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 distribution package)")

from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from person_search.core.sample import make_sample_video
    return make_sample_video(tmp_path_factory.mktemp("v") / "sample.mp4", seconds=4.0)


@launch_pytest.fixture(scope="module")
def launch_description(video):
    return LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(ROOT, "launch", "test.launch.py")),
            launch_arguments={"source": str(video), "loop": "true",
                              "config": os.path.join(ROOT, "config", "test.yaml")}.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=launch_description)
def test_launch_file_graph_answers_a_query(probe):
    probe.wait_for(lambda: probe.last_size() > 0, 180, "the gallery to fill")
    resp = probe.query("a person in a dark coat", top_k=3)
    assert resp.success, resp.message
    published = probe.published_tracks()
    assert resp.matches and all((m.camera_frame_id, m.track_id) in published for m in resp.matches)
    bad = probe.query("", top_k=3)
    assert not bad.success and "empty" in bad.message.lower()

"""Launch descriptions built from the one node-set declaration (person_search.graph).

Only imported by the launch files: it needs the ``launch`` and ``launch_ros`` packages of a
ROS 2 distribution.
"""

from __future__ import annotations

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from person_search.core.video import source_kind
from person_search.graph import CameraSpec, node_set, parse_cameras


def _share() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory("person_search")
    except Exception:  # noqa: BLE001 - running from a source checkout
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _respawn(spec) -> bool:
    """Respawn a crashed node; not a camera playing a file, whose end is a normal exit."""
    if spec.executable != "camera_node":
        return True
    source = str(spec.parameters.get("video.source", ""))
    return bool(source) and source_kind(source) not in ("file", "folder")


def _nodes(context, *args, **kwargs):
    config = LaunchConfiguration("config").perform(context)
    source = LaunchConfiguration("source").perform(context)
    cameras = LaunchConfiguration("cameras").perform(context)
    loop = LaunchConfiguration("loop").perform(context).lower()
    cams = parse_cameras(cameras.split(",")) if cameras else [CameraSpec("cam0", source)]
    specs = node_set(cams, loop={"true": True, "false": False}.get(loop))
    actions = []
    for spec in specs:
        actions.append(Node(package="person_search", executable=spec.executable, name=spec.name,
                            namespace=spec.namespace or None, parameters=[config, dict(spec.parameters)],
                            remappings=list(spec.remappings), output="screen", emulate_tty=True,
                            respawn=_respawn(spec), respawn_delay=2.0))
    return actions


def generate(default_config: str) -> LaunchDescription:
    """Build the whole graph with ``config``, ``source``, ``cameras``, ``loop`` and ``rviz`` arguments."""
    share = _share()
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", default_config),
                              description="parameter YAML for every node"),
        DeclareLaunchArgument("source", default_value="",
                              description="camera cam0's source (file, device, URL, folder); empty = YAML"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="several cameras: name=source,name=source (overrides source)"),
        DeclareLaunchArgument("loop", default_value="", description="true/false: loop file sources"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with the overlay view"),
        OpaqueFunction(function=_nodes),
        Node(package="rviz2", executable="rviz2", name="rviz",
             arguments=["-d", os.path.join(share, "rviz", "person_search.rviz")],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])

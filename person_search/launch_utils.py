"""Launch descriptions built from the one node-set declaration (person_search.graph).

Only imported by the launch files: it needs the ``launch`` and ``launch_ros`` packages of a
ROS 2 distribution (Humble or newer). Arguments (``ros2 launch person_search cpu.launch.py -s``):
``config``, ``source``, ``cameras``, ``loop``, ``camera``, ``image_topic``, ``image_transport``,
``namespace``, ``autostart``, ``rviz``, ``web``.
"""

from __future__ import annotations

import os
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from person_search.core.paths import package_share
from person_search.core.video import source_kind
from person_search.graph import CameraSpec, node_set, parse_cameras, rviz_config

_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _share() -> str:
    share = package_share()  # None when running from a source checkout: the checkout's root
    return str(share) if share is not None else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _respawn(spec) -> bool:
    """Respawn a crashed node; not a camera playing a file, whose end is a normal exit."""
    if spec.executable != "camera_node":
        return True
    source = str(spec.parameters.get("video.source", ""))
    return bool(source) and source_kind(source) not in ("file", "folder")


def _flag(context, name: str):
    """Return a boolean launch argument, or None when it is empty."""
    text = LaunchConfiguration(name).perform(context).strip().lower()
    if not text:
        return None
    if text not in _BOOL:
        raise RuntimeError(f"launch argument {name}:={text!r} must be true or false")
    return _BOOL[text]


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context).strip()


def _cameras(context):
    image_topic = _arg(context, "image_topic")
    if _flag(context, "camera") is False:
        if not image_topic:
            raise RuntimeError("camera:=false needs image_topic:=TOPIC (the sensor_msgs/Image topic of your camera)")
        return [CameraSpec("cam0", image_topic=image_topic)]
    if _arg(context, "cameras"):
        return parse_cameras(_arg(context, "cameras").split(","))
    return [CameraSpec("cam0", _arg(context, "source"))]


def _nodes(context, *args, **kwargs):
    config = _arg(context, "config")
    namespace = _arg(context, "namespace")
    transport = _arg(context, "image_transport") or None
    cams = _cameras(context)
    specs = node_set(cams, loop=_flag(context, "loop"), namespace=namespace, image_transport=transport,
                     autostart=_flag(context, "autostart"), web=bool(_flag(context, "web")))
    actions = []
    for spec in specs:
        actions.append(Node(package="person_search", executable=spec.executable, name=spec.name,
                            namespace=spec.namespace or None, parameters=[config, dict(spec.parameters)],
                            remappings=list(spec.remappings), output="screen", emulate_tty=True,
                            respawn=_respawn(spec), respawn_delay=2.0))
    if _flag(context, "rviz"):
        actions += _rviz(specs, cams)
    return actions


def _rviz(specs, cams):
    """Start RViz on the first camera's overlay; static transforms make the fixed frame exist.

    rviz2 and tf2_ros are not dependencies of the package (Qt on a headless robot): install
    ros-$ROS_DISTRO-rviz2 where you want the view.
    """
    det = next(s for s in specs if s.name == "detector")
    first = cams[0]
    fixed = first.name if not first.image_topic else "person_search"
    with open(os.path.join(_share(), "rviz", "person_search.rviz")) as f:
        text = rviz_config(f.read(), overlay_topic=f"{det.namespace}/overlay", fixed_frame=fixed)
    path = os.path.join(tempfile.mkdtemp(prefix="person_search_rviz_"), "person_search.rviz")
    with open(path, "w") as f:
        f.write(text)
    actions = [Node(package="rviz2", executable="rviz2", name="rviz", arguments=["-d", path])]
    for cam in cams:
        if not cam.image_topic:  # an external camera's frame_id is its driver's (and TF's) business
            actions.append(Node(package="tf2_ros", executable="static_transform_publisher",
                                name=f"{cam.name}_frame",
                                arguments=["--frame-id", "person_search", "--child-frame-id", cam.name]))
    if first.image_topic:
        actions.append(Node(package="tf2_ros", executable="static_transform_publisher", name="person_search_frame",
                            arguments=["--frame-id", "person_search", "--child-frame-id", "person_search_view"]))
    return actions


ARGUMENTS = (  # name, default, description; "config" defaults to the launch file's YAML
    ("source", "", "camera cam0's source (file, device, URL, folder); empty = YAML"),
    ("cameras", "", "several cameras: name=source,name=source (overrides source)"),
    ("loop", "", "true/false: loop file sources"),
    ("camera", "true", "false: start no camera node, read image_topic instead"),
    ("image_topic", "", "with camera:=false, your camera's sensor_msgs/Image topic"),
    ("image_transport", "", "detector input: raw (image topic) or compressed (<topic>/compressed)"),
    ("namespace", "", "graph namespace: every topic and service under /NAMESPACE"),
    ("autostart", "", "false: lifecycle nodes wait for configure/activate (default true)"),
    ("rviz", "false", "start RViz on the overlay (needs rviz2 installed)"),
    ("web", "false", "start the operator console (web node; web.* parameters, token from PERSON_SEARCH_WEB_TOKEN)"),
)


def generate(default_config: str) -> LaunchDescription:
    """Build the whole graph with ``config`` and the :data:`ARGUMENTS`."""
    config = os.path.join(_share(), "config", default_config)
    return LaunchDescription(
        [DeclareLaunchArgument("config", default_value=config, description="parameter YAML for every node")]
        + [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=_nodes)])

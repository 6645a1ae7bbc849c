"""Launch descriptions built from the one node-set declaration (:mod:`person_search.graph.spec`).

Only imported by the launch files: it needs the ``launch`` and ``launch_ros`` packages of a
ROS 2 distribution (Humble or newer; ``make setup`` installs them where there is none).
Arguments (``ros2 launch person_search cpu.launch.py -s``): :data:`ARGUMENTS`.

What the launch does besides starting the nodes, as ``person-search up`` does:

- a node that exits with code 2 (bad parameters, missing weights: it printed why) is not
  respawned: the launch shuts down with that reason and exits 1; so does a node that died
  :data:`MAX_RESTARTS` times in a row within :data:`STABLE_S` seconds of its start;
- every node is tied to the launch process (``PERSON_SEARCH_PARENT_PID``, see
  :mod:`person_search.nodes`): a launch ended by SIGTERM or SIGKILL, which launch does not
  pass on to its processes, leaves no node behind;
- started from a script, a process inherits SIGINT ignored; the launch process takes it
  back, so ``kill -INT`` stops it as Ctrl-C does.

Only launch APIs that Humble has: DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
with OnProcessStart / OnProcessExit, Node(respawn, respawn_delay, additional_env); an
exception from an event handler shuts the launch down (LaunchService.run_async, Humble too).
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit, OnProcessStart
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from person_search.core.paths import package_share
from person_search.core.video import source_kind
from person_search.graph.shm import clean_stale_segments
from person_search.graph.spec import EXECUTABLES, CameraSpec, node_set, parse_cameras, rviz_config

_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
EXIT_CONFIG = 2  # a node's "cannot start" exit code (person_search.nodes.runner.run_node)
MAX_RESTARTS = 10  # crashes in a row before the launch gives up (person-search up --max-restarts)
STABLE_S = 60.0  # a node that ran this long has its crash count reset
RESPAWN_DELAY_S = 2.0


def _share() -> str:
    share = package_share()  # None when running from a source checkout: the checkout's root
    here = os.path.abspath(__file__)  # <root>/person_search/graph/launch.py
    return str(share) if share is not None else os.path.dirname(os.path.dirname(os.path.dirname(here)))


def _respawn(spec) -> bool:
    """Respawn a crashed node; not a camera playing a file, whose end is a normal exit."""
    if spec.executable != EXECUTABLES["camera"]:
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


def _overrides(context, config: str) -> dict:
    """Return the parameter overrides of ``set``, ``weights`` and ``random_weights``, checked with the YAML."""
    from person_search.cli.common import parse_sets, sets_to_overrides
    from person_search.core.config import SECTIONS, ConfigError, load_config
    try:
        sets = parse_sets(_arg(context, "set").split())
    except ConfigError as exc:
        raise RuntimeError(f"launch argument set: {exc}".replace("--set", "set:=")) from None
    weights, random_weights = _arg(context, "weights"), _flag(context, "random_weights")
    if weights and random_weights:
        raise RuntimeError("give weights:=PATH or random_weights:=true, not both")
    if weights:
        sets["encoder.weights"] = weights
    if random_weights:
        sets["encoder.weights"] = ""
    try:  # one clear line before any node starts, as `person-search up` does
        load_config(config, {k: v for k, v in sets_to_overrides(sets).items() if k in SECTIONS})
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise RuntimeError(f"{config}: {exc}") from None
    return sets


def _nodes(context, *args, **kwargs):
    config = _arg(context, "config")
    namespace = _arg(context, "namespace")
    transport = _arg(context, "image_transport") or None
    cams = _cameras(context)
    sets = _overrides(context, config)
    specs = node_set(cams, loop=_flag(context, "loop"), namespace=namespace, image_transport=transport,
                     autostart=_flag(context, "autostart"), web=bool(_flag(context, "web")))
    _clean_shm("before the nodes start")
    guard = _Guard()
    actions = []
    for spec in specs:
        params = dict(spec.parameters)
        params.update(sets)
        node = Node(package="person_search", executable=spec.executable, name=spec.name,
                    namespace=spec.namespace or None, parameters=[config, params],
                    remappings=list(spec.remappings), output="screen", emulate_tty=True,
                    respawn=_respawn(spec), respawn_delay=RESPAWN_DELAY_S,
                    additional_env={"PERSON_SEARCH_PARENT_PID": str(os.getpid())})
        actions += guard.watch(node, spec.fqn) + [node]
    if _flag(context, "rviz"):
        actions += _rviz(specs, cams)
    return actions


def _clean_shm(when: str) -> None:
    """Remove Fast DDS segments of dead processes (32 MiB of RAM each); one info line if any."""
    r = clean_stale_segments()
    if r.removed:
        import launch.logging
        launch.logging.get_logger("person_search").info(f"{r.line()} ({when})")


class _Guard:
    """Stop the launch on a configuration error (exit code 2) or a crash loop, as ``person-search up`` does.

    The reason is raised from the exit handler: launch logs it as one error line, shuts every
    process down (SIGINT, then SIGTERM) and ``ros2 launch`` exits with 1.
    """

    def __init__(self, max_restarts: int = MAX_RESTARTS, stable_s: float = STABLE_S):
        self.max_restarts, self.stable_s = max_restarts, stable_s
        self.names = {}  # Node action -> fully qualified node name
        self.started = {}
        self.crashes = {}

    def watch(self, node, name: str) -> list:
        """Return the event handlers that watch ``node`` (register them before the node)."""
        self.names[node] = name
        return [RegisterEventHandler(OnProcessStart(target_action=node, on_start=self.on_start)),
                RegisterEventHandler(OnProcessExit(target_action=node, on_exit=self.on_exit))]

    def on_start(self, event, context):
        self.started[event.action] = time.monotonic()

    def on_exit(self, event, context):
        code, name = event.returncode, self.names.get(event.action, event.process_name)
        if code < 0:  # killed by a signal: its shared-memory segment is left behind
            _clean_shm(f"after {name} was killed")
        if code == 0 or context.is_shutdown:
            return None
        if code == EXIT_CONFIG:
            raise RuntimeError(f"node {name} cannot start (exit code 2; its message is above): stopping the launch "
                               "(no pretrained CLIP weights here? random_weights:=true runs without them)")
        ran = time.monotonic() - self.started.get(event.action, time.monotonic())
        n = 1 if ran >= self.stable_s else self.crashes.get(event.action, 0) + 1
        self.crashes[event.action] = n
        if n > self.max_restarts:
            raise RuntimeError(f"node {name} died {n} times in a row (last exit code {code}): stopping the launch")
        return None


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
    ("random_weights", "false", "true: random CLIP weights, nothing downloaded (person-search up --random-weights)"),
    ("weights", "", "CLIP weights: an open_clip tag or a checkpoint path (overrides encoder.weights)"),
    ("set", "", "parameter overrides for every node: 'SECTION.KEY=VALUE ...' (person-search up --set)"),
    ("rviz", "false", "start RViz on the overlay (needs rviz2 installed)"),
    ("web", "false", "start the operator console (web node; web.* parameters, token from PERSON_SEARCH_WEB_TOKEN)"),
)


def _take_back_sigint() -> None:
    """Let SIGINT stop the launch also where it was inherited ignored (started by a script).

    A shell starts background jobs with SIGINT ignored, and Python then installs no handler:
    launch's own signal manager never hears of it. With Python's default handler back,
    ``kill -INT`` stops the launch as Ctrl-C in a terminal does.
    """
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def generate(default_config: str) -> LaunchDescription:
    """Build the whole graph with ``config`` and the :data:`ARGUMENTS`."""
    _take_back_sigint()
    config = os.path.join(_share(), "config", default_config)
    return LaunchDescription(
        [DeclareLaunchArgument("config", default_value=config, description="parameter YAML for every node")]
        + [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=_nodes)])

"""The one declaration of the node graph: which nodes run, under which names and remappings.

The launch files (:mod:`person_search.graph.launch`), ``person-search up``
(:mod:`person_search.graph.supervisor`) and the graph tests all build their processes from
:func:`node_set`, so what is tested is what is launched; ``setup.py`` installs the
executables of :data:`EXECUTABLES` (:func:`console_scripts`).

Naming scheme: node code uses only relative names (and ``~/`` for a node's internals).
With a graph namespace ``NS`` ("" by default), the shared nodes run in ``NS`` and each
camera's camera + detector in ``NS/<camera>``; the detector's two shared names are
remapped up to ``NS``. Everything below therefore moves with ``namespace``, so two graphs
can share a DDS domain; only ``/diagnostics`` stays global (the ROS convention; status
names carry the node's namespace)::

    NS/<camera>/image_raw              sensor_msgs/Image            camera -> detector (best effort, depth 1)
    NS/<camera>/image_raw/compressed   sensor_msgs/CompressedImage  image_transport name; ros.image_transport
    NS/<camera>/overlay                sensor_msgs/Image            detector -> RViz
    NS/<camera>/detections             vision_msgs/Detection2DArray detector (where vision_msgs is installed)
    NS/<camera>/camera_info            sensor_msgs/CameraInfo       passed through from an external camera
    NS/<camera>/enable                 srv std_srvs/SetBool         pause / resume the detector
    NS/person_crops                    PersonCrops                  detectors -> embedder
    NS/person_embeddings               PersonEmbeddings             embedder -> index
    NS/index/search_gallery            srv SearchGallery            query -> index
    NS/index/gallery_size              std_msgs/Int64               index
    NS/query_person                    srv QueryPerson              users -> query
    NS/query_matches                   QueryResult (latched)        query -> detectors (overlay)
    /diagnostics                       diagnostic_msgs/DiagnosticArray  every node
    (web node, optional)               reads query_person, /diagnostics, */overlay, person_crops; serves HTTP

An external camera (``CameraSpec.image_topic``) replaces the camera node: the detector's
``image_raw`` is remapped to that topic (``.../compressed`` is derived from it, as
image_transport does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

PACKAGE = "person_search"
# node name -> executable: the console script ``<executable>`` runs ``person_search.nodes.<executable>:main``.
# setup.py derives its entry points from this table (see :func:`console_scripts`); a new node is one line here.
EXECUTABLES: Dict[str, str] = {
    "camera": "camera_node",
    "detector": "detector_node",
    "embedder": "embedder_node",
    "index": "index_node",
    "query": "query_node",
    "web": "web_node",
}
GLOBAL_REMAPS: Tuple[Tuple[str, str], ...] = (("diagnostics", "/diagnostics"),)
DETECTOR_SHARED = ("person_crops", "query_matches")  # names a detector shares with the graph namespace


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    name: str  # node name
    executable: str  # console script == module person_search.nodes.<executable>
    namespace: str = ""  # "", "/NS", "/<camera>" or "/NS/<camera>"
    remappings: Tuple[Tuple[str, str], ...] = GLOBAL_REMAPS
    parameters: Dict[str, object] = field(default_factory=dict)  # overrides on top of the YAML

    @property
    def module(self) -> str:
        return f"{PACKAGE}.nodes.{self.executable}"

    @property
    def fqn(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"

    def ros_args(self, params_file: Optional[str]) -> List[str]:
        """Command-line ``--ros-args`` for running this node as a plain process."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        if params_file:
            args += ["--params-file", params_file]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_param_literal(value)}"]
        return args


_CAMERA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NAMESPACE_RE = re.compile(r"^(/[A-Za-z][A-Za-z0-9_]*)*$")
_TOPIC_RE = re.compile(r"^[~/]?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name (namespace and frame_id) and its source, or an external image topic."""

    name: str
    source: str = ""  # "" = the video.source of the YAML
    image_topic: str = ""  # an external camera's sensor_msgs/Image topic: no camera node is started

    def __post_init__(self):
        if not _CAMERA_RE.match(self.name):
            raise ValueError(f"camera name {self.name!r} must be a ROS name: letters, digits and _, "
                             "starting with a letter")
        if self.image_topic and not _TOPIC_RE.match(self.image_topic):
            raise ValueError(f"image topic {self.image_topic!r} is not a valid ROS topic name")


def normalize_namespace(namespace: str) -> str:
    """Return ``namespace`` as "" or "/a/b" (leading slash added, trailing removed); ValueError if invalid."""
    ns = "/" + (namespace or "").strip().strip("/") if (namespace or "").strip().strip("/") else ""
    if not _NAMESPACE_RE.match(ns):
        raise ValueError(f"namespace {namespace!r} must be ROS names joined by /: letters, digits and _, "
                         "each starting with a letter")
    return ns


def node_set(cameras: Sequence[CameraSpec] = (CameraSpec("cam0"),), *, loop: Optional[bool] = None,
             namespace: str = "", image_transport: Optional[str] = None,
             autostart: Optional[bool] = None, web: bool = False,
             web_params: Optional[Dict[str, object]] = None) -> List[NodeSpec]:
    """Return the processes of the graph: camera + detector per camera, one embedder, index, query.

    Args:
        cameras: the cameras; each gets ``NS/<name>/camera`` (unless it names an external
            ``image_topic``) and ``NS/<name>/detector``.
        loop: override ``video.loop`` of the YAML for every camera (None keeps the YAML).
        namespace: the graph namespace NS ("" = the root).
        image_transport: the detectors' input, "raw" or "compressed" (None keeps the YAML).
        autostart: override the lifecycle nodes' ``autostart`` (None keeps the default, true).
        web: add the operator console (``NS/web``, web_node) with ``web_params`` (``web.*``) overrides.
    """
    if not cameras:
        raise ValueError("at least one camera is needed")
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique: {names}")
    ns = normalize_namespace(namespace)
    life: Dict[str, object] = {} if autostart is None else {"autostart": bool(autostart)}
    specs: List[NodeSpec] = []
    for cam in cameras:
        cam_ns = f"{ns}/{cam.name}"
        det_params: Dict[str, object] = dict(life)
        if image_transport is not None:
            det_params["ros.image_transport"] = image_transport
        det_remaps = GLOBAL_REMAPS + tuple((n, f"{ns}/{n}") for n in DETECTOR_SHARED)
        if cam.image_topic:
            det_remaps += (("image_raw", cam.image_topic),)
        else:
            cam_params: Dict[str, object] = {"video.source_id": cam.name}
            if cam.source:
                cam_params["video.source"] = cam.source
            if loop is not None:
                cam_params["video.loop"] = bool(loop)
            specs.append(NodeSpec("camera", EXECUTABLES["camera"], cam_ns, parameters=cam_params))
        specs.append(NodeSpec("detector", EXECUTABLES["detector"], cam_ns, det_remaps, det_params))
    specs.append(NodeSpec("embedder", EXECUTABLES["embedder"], ns, parameters=dict(life)))
    specs.append(NodeSpec("index", EXECUTABLES["index"], ns))
    specs.append(NodeSpec("query", EXECUTABLES["query"], ns, parameters=dict(life)))
    if web:
        specs.append(NodeSpec("web", EXECUTABLES["web"], ns, parameters=dict(web_params or {})))
    return specs


def console_scripts() -> List[str]:
    """Return the console-script entry points of the nodes (``setup.py`` installs them for ``ros2 run``)."""
    return [f"{exe} = {PACKAGE}.nodes.{exe}:main" for exe in EXECUTABLES.values()]


def parse_cameras(items: Sequence[str]) -> List[CameraSpec]:
    """Parse ``name=source`` (or ``source`` alone, named cam0, cam1, ...) camera arguments."""
    cams = []
    for i, item in enumerate(items):
        if "=" in item and not item.split("=", 1)[0].startswith(("rtsp", "http", "/", ".")):
            name, src = item.split("=", 1)
        else:
            name, src = f"cam{i}", item
        cams.append(CameraSpec(name, src))
    return cams


def _param_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # YAML-quote so that "0" stays a string (a V4L2 index is given as a string)
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def rviz_config(text: str, *, overlay_topic: str, fixed_frame: str) -> str:
    """Return the RViz config ``text`` showing ``overlay_topic`` with ``fixed_frame`` as the fixed frame."""
    import yaml
    cfg = yaml.safe_load(text)
    manager = cfg["Visualization Manager"]
    manager["Global Options"]["Fixed Frame"] = fixed_frame
    for display in manager["Displays"]:
        if display.get("Class") == "rviz_default_plugins/Image":
            display["Topic"]["Value"] = overlay_topic
            display["Name"] = f"person_search overlay ({overlay_topic})"
    return yaml.safe_dump(cfg, sort_keys=False)

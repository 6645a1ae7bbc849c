"""The one declaration of the node graph.

The launch files, ``person-search up`` and the graph tests all build their processes from
:func:`node_set`, so what is tested is what is launched.

Topics (absolute names after remapping)::

    /<camera>/image_raw        sensor_msgs/Image            camera -> detector (sensor-data QoS)
    /<camera>/image_compressed sensor_msgs/CompressedImage  optional detector input
    /<camera>/overlay          sensor_msgs/Image            detector -> RViz
    /person_crops              person_search_interfaces/PersonCrops       detector -> embedder
    /person_embeddings         person_search_interfaces/PersonEmbeddings  embedder -> index
    /person_search/search_gallery  srv SearchGallery        query -> index
    /query_person              srv QueryPerson              users -> query
    /query_matches             person_search_interfaces/QueryResult      query -> detectors (overlay)
    /person_search/gallery_size std_msgs/Int64              index
    /diagnostics               diagnostic_msgs/DiagnosticArray            every node
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

PACKAGE = "person_search"

SHARED_REMAPS: Tuple[Tuple[str, str], ...] = (
    ("person_crops", "/person_crops"),
    ("person_embeddings", "/person_embeddings"),
    ("search_gallery", "/person_search/search_gallery"),
    ("query_person", "/query_person"),
    ("query_matches", "/query_matches"),
    ("gallery_size", "/person_search/gallery_size"),
    ("diagnostics", "/diagnostics"),
)


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    name: str  # node name
    executable: str  # console script == module person_search.nodes.<executable>
    namespace: str = ""  # "" or "/<camera>"
    remappings: Tuple[Tuple[str, str], ...] = SHARED_REMAPS
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


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name (namespace and frame_id) and its source."""

    name: str
    source: str = ""  # "" = the video.source of the YAML

    def __post_init__(self):
        if not _CAMERA_RE.match(self.name):
            raise ValueError(f"camera name {self.name!r} must be a ROS name: letters, digits and _, "
                             "starting with a letter")


def node_set(cameras: Sequence[CameraSpec] = (CameraSpec("cam0"),), *, loop: Optional[bool] = None) -> List[NodeSpec]:
    """Return the processes of the graph: camera + detector per camera, one embedder, index, query.

    Args:
        cameras: the cameras; each gets ``/<name>/camera`` and ``/<name>/detector``.
        loop: override ``video.loop`` of the YAML for every camera (None keeps the YAML).
    """
    if not cameras:
        raise ValueError("at least one camera is needed")
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique: {names}")
    specs: List[NodeSpec] = []
    for cam in cameras:
        ns = f"/{cam.name}"
        cam_params: Dict[str, object] = {"video.source_id": cam.name}
        if cam.source:
            cam_params["video.source"] = cam.source
        if loop is not None:
            cam_params["video.loop"] = bool(loop)
        specs.append(NodeSpec("camera", "camera_node", ns, parameters=cam_params))
        specs.append(NodeSpec("detector", "detector_node", ns))
    specs.append(NodeSpec("embedder", "embedder_node"))
    specs.append(NodeSpec("index", "index_node"))
    specs.append(NodeSpec("query", "query_node"))
    return specs


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

"""The node graph: its one declaration, the supervisor of ``person-search up``, the launch descriptions.

* :mod:`~person_search.graph.spec`: :func:`node_set` (which nodes, names, namespaces,
  remappings, parameter overrides), :class:`CameraSpec`, :data:`EXECUTABLES` (node ->
  console script; ``setup.py`` reads it);
* :mod:`~person_search.graph.supervisor`: :class:`Graph` (one process per node, tied to
  its parent), :class:`Respawner` (restart with backoff), :func:`config_path`;
* :mod:`~person_search.graph.launch`: the ``ros2 launch`` descriptions of ``launch/*.launch.py``
  (imported only by them: it needs the ROS ``launch`` packages, so it is not imported here).
"""

from person_search.graph.spec import (EXECUTABLES, CameraSpec, NodeSpec, console_scripts, node_set,
                                      normalize_namespace, parse_cameras, rviz_config)
from person_search.graph.supervisor import CONFIG_DIR, Graph, Respawner, config_path, make_graph

__all__ = ["CONFIG_DIR", "EXECUTABLES", "CameraSpec", "Graph", "NodeSpec", "Respawner", "config_path",
           "console_scripts", "make_graph", "node_set", "normalize_namespace", "parse_cameras", "rviz_config"]

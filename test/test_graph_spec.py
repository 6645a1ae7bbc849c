"""The node-set declaration (no ROS needed): names, namespaces, external cameras, the RViz view."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from person_search.graph import EXECUTABLES, CameraSpec, console_scripts, node_set, normalize_namespace, rviz_config

ROOT = Path(__file__).resolve().parents[1]


def _remaps(spec):
    return dict(spec.remappings)


def test_root_graph_names():
    specs = {s.fqn: s for s in node_set([CameraSpec("cam0", "v.mp4")])}
    assert list(specs) == ["/cam0/camera", "/cam0/detector", "/embedder", "/index", "/query"]
    assert _remaps(specs["/cam0/detector"])["person_crops"] == "/person_crops"
    assert "person_crops" not in _remaps(specs["/embedder"])  # shared nodes use their relative names
    assert all(_remaps(s)["diagnostics"] == "/diagnostics" for s in specs.values())


def test_namespace_moves_every_name():
    specs = {s.fqn: s for s in node_set([CameraSpec("front", "0"), CameraSpec("back", "1")], namespace="robot1/")}
    assert set(specs) == {"/robot1/front/camera", "/robot1/front/detector", "/robot1/back/camera",
                          "/robot1/back/detector", "/robot1/embedder", "/robot1/index", "/robot1/query"}
    assert _remaps(specs["/robot1/back/detector"])["query_matches"] == "/robot1/query_matches"


def test_external_camera_replaces_the_camera_node():
    specs = node_set([CameraSpec("cam0", image_topic="/vendor/image_raw")], image_transport="compressed",
                     autostart=False)
    assert [s.fqn for s in specs][:1] == ["/cam0/detector"]
    det = specs[0]
    assert _remaps(det)["image_raw"] == "/vendor/image_raw"
    assert det.parameters == {"autostart": False, "ros.image_transport": "compressed"}
    assert "-p" in det.ros_args(None) and "ros.image_transport:='compressed'" in det.ros_args(None)


@pytest.mark.parametrize("bad", ["1abc", "a b", "a//b/-"])
def test_bad_namespaces_are_refused(bad):
    with pytest.raises(ValueError, match="namespace"):
        normalize_namespace(bad)


def test_bad_image_topic_is_refused():
    with pytest.raises(ValueError, match="not a valid ROS topic"):
        CameraSpec("cam0", image_topic="/x/image raw")


def test_rviz_view_follows_the_camera():
    text = rviz_config((ROOT / "rviz" / "person_search.rviz").read_text(), overlay_topic="/r1/front/overlay",
                       fixed_frame="front")
    cfg = yaml.safe_load(text)["Visualization Manager"]
    assert cfg["Global Options"]["Fixed Frame"] == "front"
    assert [d["Topic"]["Value"] for d in cfg["Displays"] if d["Class"].endswith("/Image")] == ["/r1/front/overlay"]


def test_up_with_image_topic_starts_no_camera_node():
    from person_search.cli import build_parser
    from person_search.cli.ros import _graph_from_args
    a = build_parser().parse_args(["up", "--config", "test", "--image-topic", "/oak/rgb/image_raw",
                                   "--image-transport", "compressed", "--namespace", "robot1"])
    graph = _graph_from_args(a)
    assert [s.fqn for s in graph.specs] == ["/robot1/cam0/detector", "/robot1/embedder", "/robot1/index",
                                            "/robot1/query"]
    cmd = graph.command(graph.specs[0])
    assert "image_raw:=/oak/rgb/image_raw" in cmd and "ros.image_transport:='compressed'" in cmd


def test_up_with_web_adds_the_console_node():
    from person_search.cli import build_parser
    from person_search.cli.ros import _graph_from_args
    a = build_parser().parse_args(["up", "--config", "test", "--source", "v.mp4", "--namespace", "robot1",
                                   "--web", "--web-port", "8123"])
    graph = _graph_from_args(a)
    web = graph.specs[-1]
    assert web.fqn == "/robot1/web" and web.executable == "web_node"
    assert web.parameters == {"web.host": "127.0.0.1", "web.port": 8123}
    assert "web.port:=8123" in graph.command(web)
    assert "/robot1/web" not in [s.fqn for s in node_set([CameraSpec("cam0", "v.mp4")], namespace="robot1")]


def test_entry_points_come_from_the_declaration():
    """setup.py installs exactly the declared nodes' executables, each a module with a main()."""
    import ast
    import importlib.util
    tree = ast.parse((ROOT / "setup.py").read_text())
    assert "node_console_scripts" in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and str(n.value).endswith("_node")], \
        "setup.py lists a node by name: derive it from person_search.graph.spec.EXECUTABLES"
    specs = node_set([CameraSpec("cam0", "v.mp4")], web=True)
    assert {s.executable for s in specs} == set(EXECUTABLES.values())
    assert {s.name: s.executable for s in specs} == EXECUTABLES
    for line in console_scripts():
        exe, target = (x.strip() for x in line.split("="))
        module, func = target.split(":")
        assert func == "main" and module == f"person_search.nodes.{exe}"
        assert importlib.util.find_spec(module) is not None, module

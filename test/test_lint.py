"""Lint and packaging checks, in the spirit of the ament lint tests ROS packages ship.

flake8 and pep257 (pydocstyle) run with the project's settings (setup.cfg: 120 columns);
ament_flake8's own profile (99 columns, single quotes) is not adopted. package.xml is
checked for well-formedness, format 3 and the dependencies the code imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["person_search", "launch", "test", "benchmarks", "setup.py"]


def test_flake8():
    pytest.importorskip("flake8", reason="flake8 is not installed (requirements.txt)")
    proc = subprocess.run([sys.executable, "-m", "flake8", *SOURCES], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pep257():
    pytest.importorskip("pydocstyle", reason="pydocstyle is not installed (requirements.txt)")
    proc = subprocess.run([sys.executable, "-m", "pydocstyle", "--convention=pep257",
                           "--add-ignore=D100,D101,D102,D103,D104,D105,D106,D107,D404", "person_search", "launch"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("pkg", ["package.xml", "person_search_interfaces/package.xml"])
def test_package_xml_is_format_3(pkg):
    root = ET.parse(ROOT / pkg).getroot()
    assert root.tag == "package" and root.get("format") == "3"
    for tag in ("name", "version", "description", "maintainer", "license"):
        assert root.find(tag) is not None and root.find(tag).text.strip(), tag
    assert root.find("export/build_type").text in ("ament_python", "ament_cmake")


def test_package_xml_declares_what_the_nodes_import():
    root = ET.parse(ROOT / "package.xml").getroot()
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    imported = set()
    for f in (ROOT / "person_search").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
    ros_names = ("rclpy", "launch", "launch_ros", "cv_bridge")
    ros_pkgs = {m for m in imported if m.endswith(("_msgs", "_interfaces")) or m in ros_names}
    missing = ros_pkgs - deps - {"rcl_interfaces"}  # rcl_interfaces comes with rclpy
    assert not missing, f"package.xml lacks exec_depend for {sorted(missing)}"


def test_every_console_script_has_a_main():
    import importlib
    src = (ROOT / "setup.py").read_text()
    nodes = ast.literal_eval(src.split("NODES = ", 1)[1].split("\n", 1)[0])
    for n in nodes:
        assert (ROOT / "person_search" / "nodes" / f"{n}.py").is_file(), n
    assert callable(importlib.import_module("person_search.cli").main)


def test_launch_files_compile():
    for f in sorted((ROOT / "launch").glob("*.launch.py")):
        compile(f.read_text(), str(f), "exec")
        assert "generate_launch_description" in f.read_text()


def test_readme_documents_every_parameter():
    import dataclasses
    from person_search.core.config import PipelineConfig
    readme = (ROOT / "README.md").read_text()

    def names(prefix, obj):  # parameter names as the nodes declare them (nested: section.sub.field)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            yield from names(f"{prefix}.{f.name}", value) if dataclasses.is_dataclass(value) else [f"{prefix}.{f.name}"]

    missing = [n for sec in dataclasses.fields(PipelineConfig) for n in names(sec.name, sec.default_factory())
               if f"`{n}`" not in readme]
    assert not missing, f"README.md does not document {missing}"

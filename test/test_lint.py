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


PYTHON_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "tqdm": "python3-tqdm"}


def _imports(files):
    modules = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(a.name for a in node.names)
    return modules


def test_package_xml_declares_exactly_what_the_code_imports():
    root = ET.parse(ROOT / "package.xml").getroot()
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    modules = _imports((ROOT / "person_search").rglob("*.py"))
    tops = {m.split(".")[0] for m in modules}
    ros_names = ("rclpy", "launch", "launch_ros", "cv_bridge", "ament_index_python")
    needed = {m for m in tops if m.endswith(("_msgs", "_srvs", "_interfaces")) or m in ros_names}
    if "rclpy.lifecycle" in modules:
        needed.add("lifecycle_msgs")  # rclpy.lifecycle's services are lifecycle_msgs types
    needed |= {key for mod, key in PYTHON_KEYS.items() if mod in tops}
    missing = needed - deps
    assert not missing, f"package.xml lacks exec_depend for {sorted(missing)}"
    unused = {d for d in deps if d not in needed}
    assert not unused, f"package.xml declares {sorted(unused)}, which person_search/ does not import"
    tests = {e.text for e in root if e.tag == "test_depend"}
    assert tests == {"python3-pytest", "python3-pytest-timeout", "launch_pytest"}, tests


def test_every_console_script_has_a_main():
    import importlib
    from person_search.graph import EXECUTABLES
    for n in EXECUTABLES.values():  # setup.py's node entry points (person_search.graph.console_scripts)
        path = ROOT / "person_search" / "nodes" / f"{n}.py"
        assert path.is_file(), n
        assert "main" in {f.name for f in ast.parse(path.read_text()).body if isinstance(f, ast.FunctionDef)}, n
    assert callable(importlib.import_module("person_search.cli").main)


def test_launch_files_compile():
    for f in sorted((ROOT / "launch").glob("*.launch.py")):
        compile(f.read_text(), str(f), "exec")
        assert "generate_launch_description" in f.read_text()


PARAMETER_TABLE = ROOT / "docs" / "architecture.md"  # the README links it: "Parameters"


def test_readme_documents_every_parameter():
    import dataclasses
    from person_search.core.config import PipelineConfig
    readme = PARAMETER_TABLE.read_text()

    def names(prefix, obj):  # parameter names as the nodes declare them (nested: section.sub.field)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            yield from names(f"{prefix}.{f.name}", value) if dataclasses.is_dataclass(value) else [f"{prefix}.{f.name}"]

    missing = [n for sec in dataclasses.fields(PipelineConfig) for n in names(sec.name, sec.default_factory())
               if f"`{n}`" not in readme]
    assert not missing, f"{PARAMETER_TABLE.name} does not document {missing}"


def test_readme_marks_exactly_the_runtime_parameters():
    import dataclasses
    import re
    from person_search.core.config import PipelineConfig, runtime_fields
    readme = PARAMETER_TABLE.read_text()
    marked = set(re.findall(r"^\| `(\w+\.\w+)` \|[^\n]*\| \*runtime\*", readme, re.M))
    runtime = {f"{sec.name}.{name}" for sec in dataclasses.fields(PipelineConfig)
               for name in runtime_fields(sec.default_factory)}
    assert marked == runtime

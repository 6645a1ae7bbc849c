"""The core is ROS-free and lab-free: no module under person_search/core imports rclpy or the lab.

Parsed, not imported: every ``import`` / ``from ... import`` anywhere in a file counts
(function-level imports too), relative imports resolved against the file's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("rclpy", "person_search.lab", "person_search.nodes", "person_search.cli")


def imported_modules(path: Path, root: Path = ROOT) -> list:
    """Return the modules ``path`` imports (absolute names)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                out.append(".".join(base + ([node.module] if node.module else [])))
            else:
                out.append(node.module or "")
    return out


def core_violations(root: Path = ROOT):
    """Return "file: module" for every forbidden import under person_search/core."""
    bad = []
    for path in sorted((root / "person_search" / "core").rglob("*.py")):
        for mod in imported_modules(path, root):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{path.relative_to(root)}: {mod}")
    return bad


def test_core_imports_neither_ros_nor_lab():
    assert core_violations() == []


def test_the_scan_sees_function_level_and_relative_imports(tmp_path):
    """The check can fail: planted imports (inside a function, one relative) are found."""
    fake = tmp_path / "person_search" / "core" / "x"
    fake.mkdir(parents=True)
    (fake / "m.py").write_text("def f():\n    from ...lab.train import loop\n    import rclpy\n")
    assert core_violations(tmp_path) == ["person_search/core/x/m.py: person_search.lab.train",
                                         "person_search/core/x/m.py: rclpy"]

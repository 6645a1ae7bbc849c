"""benchmarks/ is a package: every module imports, every script answers ``python -m benchmarks.NAME --help``.

Also what keeps it one: no ``sys.path`` edits, no import cycle between its modules, no results files inside it.
A broken import or argument parser fails here, in seconds, not at the next benchmark run.
"""

from __future__ import annotations

import ast
import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "benchmarks"
MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
SCRIPTS = sorted(p.stem for p in PKG.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_the_package_holds_the_benchmarks():
    assert (PKG / "__init__.py").is_file() and (PKG / "README.md").is_file()
    assert {"common", "bench_gallery", "bench_embedder", "attention_study"} <= set(MODULES)
    assert len(SCRIPTS) >= 14, SCRIPTS


@pytest.fixture
def same_environment():
    """Restore os.environ afterwards (bench_gallery sets OMP_NUM_THREADS=1 when it loads)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name, same_environment):
    assert importlib.import_module(f"benchmarks.{name}").__doc__, f"benchmarks/{name}.py has no docstring"


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_answers_help(name, same_environment, capsys, monkeypatch):
    """``--help`` run the way ``python -m benchmarks.NAME`` runs it (runpy, as ``__main__``): exit 0 with a usage."""
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "usage:" in out, (exc.value.code, out[-400:])


@pytest.mark.parametrize("name", ["bench_gallery", "attention_study"])
def test_python_dash_m_from_the_repository_root(name):
    """A real ``python -m benchmarks.NAME --help`` from the repository root: no PYTHONPATH, no sys.path edits."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "usage:" in p.stdout, p.stderr[-400:]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "benchmarks":
                yield from (a.name for a in node.names)
            elif node.module.startswith("benchmarks."):
                yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".")[1] for a in node.names if a.name.startswith("benchmarks."))


def test_no_import_cycle_and_no_path_edits():
    graph = {name: set(_imports(PKG / f"{name}.py")) & set(MODULES) for name in MODULES}
    for name in MODULES:
        src = (PKG / f"{name}.py").read_text()
        assert "sys.path" not in src, f"benchmarks/{name}.py edits sys.path"
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        state[node] = "done"

    for name in MODULES:
        visit(name, [])


def test_cycle_check_can_fail(monkeypatch):
    """The cycle check above finds a cycle when there is one (two modules importing each other)."""
    def fake(path):
        return {"a": ["b"], "b": ["a"]}.get(path.stem, [])
    monkeypatch.setattr(sys.modules[__name__], "_imports", fake)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", ["a", "b"])
    monkeypatch.setattr(Path, "read_text", lambda self: "")
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        test_no_import_cycle_and_no_path_edits()


def test_no_results_inside_the_package():
    """Outputs live next to the document they feed (docs/), never in benchmarks/."""
    stray = [p.name for p in PKG.iterdir() if p.is_file() and p.suffix not in (".py", ".md")]
    assert not stray, stray

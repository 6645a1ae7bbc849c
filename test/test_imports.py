"""No import cycles inside person_search: module-level and function-level imports alike.

Every .py under person_search/ is parsed (not imported); ``import x.y``, ``from x import y``
and relative imports are resolved to the package's own modules (importing ``a.b.c`` also
runs ``a`` and ``a.b``), and the graph's strongly connected components are the cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Set

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, package: str = "person_search", *, packages: Sequence[str] = (),
                 walk: Callable[[ast.AST], Iterable[ast.AST]] = ast.walk) -> Dict[str, Set[str]]:
    """Return module -> the modules of ``package`` (and ``packages``) it imports (``walk``: anywhere in the file).

    In a folder of scripts (no ``__init__.py``, run with the folder on ``sys.path``) a bare
    ``import x`` of a sibling ``x.py`` counts as an import of that sibling.
    """
    files = {module_name(p, root): p for pkg in (package, *packages) for p in (root / pkg).rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        scripts = not (path.parent / "__init__.py").is_file()
        targets: List[str] = []
        for node in walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[:len(here.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = [f"{mod}.{a.name}" for a in node.names]
                # `from pkg import submodule` runs the submodule; `from pkg import name` needs pkg itself
                targets += subs if all(t in files for t in subs) else [mod] + subs
        if scripts:
            targets = [f"{here}.{t}" if f"{here}.{t.split('.')[0]}" in files else t for t in targets]
        deps: Set[str] = set()
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the module and the packages it runs on the way
                prefix = ".".join(parts[:i])
                # a package this module lives in is already being imported when the module runs:
                # passing through it is no cycle; importing a name *from* it is
                if prefix in ancestors and i < len(parts) and ".".join(parts[:i + 1]) in files:
                    continue
                if prefix in files and prefix != name:
                    deps.add(prefix)
        graph[name] = deps
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Return one cycle (a -> b -> ... -> a) per strongly connected component with more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    comps: List[Set[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:
        start = min(comp)
        path, seen = [start], {start}
        while True:  # walk inside the component until it closes
            nxt = sorted(w for w in graph[path[-1]] if w in comp)
            back = [w for w in nxt if w == start]
            if back or not nxt:
                break
            step = next((w for w in nxt if w not in seen), nxt[0])
            if step in seen:
                path = path[path.index(step):]
                break
            path.append(step)
            seen.add(step)
        out.append(path + [path[0]])
    return out


def test_cycle_finder_sees_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from ..b import g\n    return g\n")
    (pkg / "b.py").write_text("from pkg.sub import a\n")
    (pkg / "c.py").write_text("from . import b\n")
    graph = import_graph(tmp_path, "pkg")
    # pkg.sub.a lives in pkg: passing through pkg on the way to pkg.b is no dependency
    assert graph["pkg.sub.a"] == {"pkg.b"} and "pkg.sub.a" in graph["pkg.b"]
    assert [set(c) for c in cycles(graph)] == [{"pkg.b", "pkg.sub.a"}]


def test_no_import_cycles():
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)

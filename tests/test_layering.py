"""The layering is enforced, not only drawn: runtime_py < edge < targets <
tools/CLIs, demo a client of runtime_py alone, and no import cycle between
modules.

Every module's imports are read with `ast`, including imports inside
functions (a lazy import is still a dependency: it runs when the function
does). examples/ and tests/ may import anything and are not scanned.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> its layer; a module may import its own layer and the ones below.
LAYERS = {"runtime_py": 0, "edge": 1, "targets": 2}
# packages above the layers, with what each may import (demo is a client of the torch-free runtime)
CLIENTS = {"demo": {"runtime_py", "demo"}}
PACKAGES = {**{p: None for p in LAYERS}, **{p: None for p in CLIENTS}}



def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement anywhere in the file."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = []

    def add(target: str, line: int) -> None:
        # the deepest project module the name refers to ("a.b.c" -> "a.b" when c is a function)
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in known:
                found.append((candidate, line))
                return

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import mod` imports the submodule pkg.mod
                if f"{module}.{alias.name}" in known:
                    add(f"{module}.{alias.name}", node.lineno)
                else:
                    add(module, node.lineno)
    return found


def import_graph() -> dict[str, list[tuple[str, int]]]:
    known = project_modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def _allowed(src_pkg: str, dst_pkg: str) -> bool:
    if src_pkg in CLIENTS:
        return dst_pkg in CLIENTS[src_pkg]
    if dst_pkg in CLIENTS:
        return False  # nothing in the layers imports a client
    return LAYERS[dst_pkg] <= LAYERS[src_pkg]


def upward_imports() -> list[tuple[str, str, int]]:
    """(module file, imported module, line) for every import against the layering."""
    known = project_modules()
    bad = []
    for name, edges in import_graph().items():
        rel = known[name].relative_to(ROOT).as_posix()
        for dst, line in edges:
            if not _allowed(name.split(".")[0], dst.split(".")[0]):
                bad.append((rel, dst, line))
    return bad


def test_no_import_runs_upward():
    bad = upward_imports()
    assert not bad, "imports against runtime_py < edge < targets < CLIs (demo: runtime_py only):\n" + "\n".join(
        f"  {f}:{line} imports {dst}" for f, dst, line in bad)


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:  # recursive: the project's import depth is far below Python's limit
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or any(w == v for w, _ in graph.get(v, ())):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles (including imports inside functions):\n" + "\n".join(
        "  " + " <-> ".join(c) + ": " + "; ".join(f"{a} imports {b} (line {line})" for a in c
                                                for b, line in graph[a] if b in c)
        for c in found)


# -- the checker itself: it must see what it claims to see ----------------------------------------

def test_checker_sees_imports_inside_functions_and_relative_ones():
    path = ROOT / "targets" / "build" / "source.py"
    got = {dst for dst, _ in imports_of("targets.build.source", path, project_modules())}
    assert "edge.export" in got  # `from edge.export import ...` inside a classmethod
    assert "targets.ort" in got and "targets.thirdparty" in got  # `from .. import ort, thirdparty`


def test_checker_finds_a_cycle_and_an_upward_import():
    graph = {"a": [("b", 1)], "b": [("c", 2)], "c": [("a", 3)], "d": [("a", 4)]}
    assert cycles(graph) == [["a", "b", "c"]]
    assert not _allowed("runtime_py", "edge") and not _allowed("edge", "targets")
    assert not _allowed("demo", "edge") and _allowed("demo", "runtime_py") and _allowed("targets", "edge")


# -- dependencies named in strings ("package.module:function", loaded later or in a child process) ---------

_DOTTED = __import__("re").compile(r"^((?:runtime_py|edge|targets|demo)(?:\.\w+)*):(\w+)$")


def dotted_names() -> list[tuple[str, str, str, int]]:
    """(module, named module, function, line) for every string constant that names a project function."""
    found = []
    for name, path in project_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
                target, fn = _DOTTED.match(node.value).groups()
                found.append((name, target, fn, node.lineno))
    return found


def test_no_string_hides_an_upward_dependency():
    """A "module:function" string is an import the checks above cannot see: it must name a function that
    exists, in a layer the module may import (edge-build's converters were named so, from runtime_py). The
    strings left name what a child process runs (targets/isolated.py)."""
    known = project_modules()
    seen, bad = 0, []
    for src, target, fn, line in dotted_names():
        seen += 1
        where = f"{known[src].relative_to(ROOT).as_posix()}:{line} names {target}:{fn}"
        if target not in known:
            bad.append(f"{where}, which is not a module of the project")
        elif not _allowed(src.split(".")[0], target.split(".")[0]):
            bad.append(f"{where}, against runtime_py < edge < targets < CLIs")
        elif f"def {fn}(" not in known[target].read_text(encoding="utf-8"):
            bad.append(f"{where}, which defines no such function")
    assert seen >= 2, "the checker missed the known ones (targets.ort's quantise job, targets.onnx_prepare's probe)"
    assert not bad, "\n".join(bad)

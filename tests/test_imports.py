"""The package's import graph: no cycle, no upward import, no application reaching into a backend's folder.

Every import statement of every module is read with ``ast`` (module level, function
level and ``TYPE_CHECKING`` blocks alike); an implicit import of a parent package is
not an edge. The layers, lowest first, are :data:`LAYERS`: a module may import its
own layer and those below it, never one above.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vggedge"
#: lowest first; the key is a module's first name below ``vggedge`` ("" is the package root)
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "env", "atomic", "checks", "signals", "version", "machine", "image_meta", "onnx_inputs",
     "redact", "image_header"),
    ("spec", "spec_check"),
    ("preprocess", "preprocessing_args", "catalogue", "decode_pool"),
    ("model", "data"),
    ("precision",),
    ("engine",),
    ("runtime",),
    ("video",),
    ("apps", "batch"),
    ("cli",),
    ("",),
]
#: backends' own folders: applications and the CLI go through runtime/select.py or runtime/cpu_path.py
BACKEND_FOLDERS = ("vggedge.runtime.cpu", "vggedge.runtime.gpu")
FRONT_ENDS = ("apps", "batch", "cli")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


MODULES = _modules()


def _targets(module: str, package: bool, node: ast.AST) -> list[str]:
    """The vggedge modules one import statement imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "vggedge"]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if prefix.split(".")[0] != "vggedge":
        return []
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, (path, package) in MODULES.items():
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in _targets(module, package, node) if t != module)
    return graph


GRAPH = _graph()


def _key(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _layer(module: str) -> int:
    key = _key(module)
    for index, names in enumerate(LAYERS):
        if key in names:
            return index
    raise AssertionError(f"{module}: its layer is not listed in tests/test_imports.py LAYERS; add it")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_package() -> None:
    assert len(MODULES) > 80 and "vggedge.runtime.select" in GRAPH["vggedge.apps.classify"]
    assert "vggedge.runtime.cpu.tune" in GRAPH["vggedge.runtime.cpu.planner"]  # function-level ones too:
    assert "vggedge.video.server" in GRAPH["vggedge.video.sinks"]  # open_sink imports the server lazily


def test_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_no_upward_import() -> None:
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets if _layer(t) > _layer(m))
    assert upward == [], "a lower layer imports a higher one (LAYERS, lowest first):\n" + "\n".join(upward)


def test_front_ends_do_not_reach_into_a_backend() -> None:
    reaching = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if _key(m) in FRONT_ENDS
                      for t in targets if any(t == f or t.startswith(f + ".") for f in BACKEND_FOLDERS))
    assert reaching == [], ("applications go through runtime/select.py or runtime/cpu_path.py:\n"
                            + "\n".join(reaching))


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_no_package_binds_the_name_of_its_own_submodule() -> None:
    """Importing ``pkg.name`` sets ``pkg.name`` to the submodule, replacing a function ``pkg`` imported as ``name``.

    The package root's ``preprocess`` is the one known case, kept by an eager import (see vggedge/__init__.py).
    """
    clashes = []
    for module, (path, package) in MODULES.items():
        if not package or module == "vggedge":
            continue
        bound = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
        clashes += [f"{module}.{name}" for name in sorted(bound) if f"{module}.{name}" in MODULES
                    and not _imports_own_submodule(module, name, path)]
    assert clashes == []


def _imports_own_submodule(package: str, name: str, path: Path) -> bool:
    """True when the package binds ``name`` by importing that very submodule (``from . import name``)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None \
                and any((a.asname or a.name) == name and a.name == name for a in node.names):
            return True
    return False

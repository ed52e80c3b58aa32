"""The package graph of src/ttpscope, read from the AST of every module (function-local imports included):
arrows point down the layers, no two packages import each other (directly or round a cycle), and no module
imports ttpscope code by name at run time (importlib / __import__), which would hide an arrow."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ttpscope"

# Low to high. A package may import its own layer (sideways, when no cycle results) or any lower one.
LAYERS: dict[str, int] = {
    "__init__": 0, "model": 0, "errors": 0, "paths": 0, "procs": 0,
    "kb": 1, "ingest": 1,
    "detect": 2, "extract": 2, "feeds": 2, "store": 2,
    "analyze": 3,
    "export": 4,
    "investigate": 5,
    "api": 6,
    "cli": 7,  # `ttpscope serve` starts the API: the command line sits on top of everything
    "__main__": 8,
}
# Modules that look up third-party modules by name (pySigma backends and pipelines chosen by the user's
# target, a pySigma pipeline restored from its defining module): never ttpscope's own.
DYNAMIC_THIRD_PARTY = {"detect/convert.py", "detect/variants.py"}
DYNAMIC_CALLS = {"import_module", "__import__", "reload", "find_spec"}


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> where, for every import of another ttpscope package."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in _modules():
        here = _package(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "ttpscope":  # `from ttpscope import x`: x may be a package
                    names = [f"ttpscope.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "ttpscope":
                    continue
                target = parts[1] if len(parts) > 1 else "__init__"
                if not (SRC / target).is_dir() and not (SRC / f"{target}.py").is_file():
                    target = "__init__"  # a name defined in ttpscope/__init__.py (__version__)
                if target != here:
                    edges[(here, target)].append(f"{path.relative_to(SRC)}:{node.lineno}")
    return edges


def test_every_package_has_a_layer():
    packages = {_package(p) for p in _modules()}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_no_upward_import():
    upward = [f"{a} -> {b} ({', '.join(where[:3])})" for (a, b), where in sorted(_edges().items())
              if LAYERS[b] > LAYERS[a]]
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in _edges():
        graph[a].add(b)
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "package import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _dynamic_imports(path: Path) -> list[tuple[int, str, ast.expr | None]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in DYNAMIC_CALLS:
            out.append((node.lineno, name, node.args[0] if node.args else None))
    return out


def test_no_dynamic_import_of_ttpscope_modules():
    found = []
    for path in _modules():
        rel = str(path.relative_to(SRC))
        for lineno, name, arg in _dynamic_imports(path):
            literal = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
            if literal is not None and literal.split(".")[0] == "ttpscope":
                found.append(f"{rel}:{lineno} {name}({literal!r})")
            elif literal is None and rel not in DYNAMIC_THIRD_PARTY:
                found.append(f"{rel}:{lineno} {name}(<computed name>)")
    assert not found, "run-time imports by name:\n" + "\n".join(found)


@pytest.mark.parametrize("source, bad", [
    ("import importlib\nimportlib.import_module('ttpscope.store')\n", True),
    ("__import__('ttpscope.api.deps')\n", True),
    ("import importlib\nimportlib.import_module('sigma.backends.splunk')\n", False),
])
def test_the_dynamic_import_check_sees_them(tmp_path, source, bad):
    """The check above must recognise the shapes the removed optional-part loaders had."""
    module = tmp_path / "m.py"
    module.write_text(source)
    calls = _dynamic_imports(module)
    assert calls
    literal = calls[0][2].value
    assert (literal.split(".")[0] == "ttpscope") is bad

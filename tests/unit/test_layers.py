"""The house's layers: the data modules (cells, claims and verdicts, cited facts) import nothing above them, and
no module of the package imports another that imports it back at load time."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "whisperx_matrix"

# Each data module and the modules of the package it may import: nothing that runs tools, renders or parses a
# command line.
DATA_MODULES = {
    "errors": set(),
    "tomlfile": {"errors"},
    "cudafacts": set(),
    "matrix": {"errors", "tomlfile", "cudafacts"},
    "verdict": {"errors", "tomlfile", "matrix", "cudafacts"},
}


def _imports(path: Path) -> set[str]:
    """The package modules that ``path`` imports, lazy imports inside functions included."""
    pkg = path.relative_to(PKG).parent.parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(pkg[: len(pkg) - node.level + 1]) + ([node.module] if node.module else [])
            for alias in node.names:
                full = [*base, alias.name]
                as_module = PKG.joinpath(*full)
                out.add(
                    ".".join(full) if as_module.with_suffix(".py").exists() or as_module.is_dir() else ".".join(base)
                )
    # Importing pkg.sub runs pkg/__init__.py first: its parent packages are imports too (not the module's own).
    parents = {".".join(m.split(".")[:i]) for m in out for i in range(1, m.count(".") + 1)}
    return {m for m in out | parents if m and m != ".".join(pkg)}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = _imports(path)
    return graph


def test_data_modules_import_nothing_above_them() -> None:
    graph = _graph()
    for module, allowed in DATA_MODULES.items():
        assert graph[module] <= allowed, f"{module} imports {sorted(graph[module] - allowed)}"


def test_no_import_circle() -> None:
    graph = _graph()
    seen: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for dep in graph.get(node, ()):
            assert dep not in path, "import circle: " + " -> ".join([*path[path.index(dep) :], dep])
            if dep not in seen:
                visit(dep, [*path, dep])
        seen.add(node)

    for module in sorted(graph):
        visit(module, [module])


def test_the_matrix_run_is_short_stage_functions() -> None:
    """A cell's run is one short function per stage and a short orchestrator: none over 80 lines."""
    tree = ast.parse((PKG / "matrix_run.py").read_text(encoding="utf-8"))
    long = {
        n.name: n.end_lineno - n.lineno + 1
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.end_lineno and n.end_lineno - n.lineno + 1 > 80
    }
    assert not long, long
    stages = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("stage_")}
    assert stages == {"stage_lock", "stage_build", "stage_audit", "stage_suite", "stage_ld_compare"}

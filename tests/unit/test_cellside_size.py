"""cellside/ stays livable: no script over 600 lines (bench_pipeline.py included, now that it is split), and the
shared helpers (benchkit.py) import nothing but the standard library at module level, as every script that runs
in a cell's own python must (torch and the rest are imported inside functions, from the cell)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CELLSIDE = Path(__file__).resolve().parents[2] / "src" / "whisperx_matrix" / "cellside"
MAX_LINES = 600


def test_no_cellside_file_is_over_600_lines() -> None:
    files = sorted(CELLSIDE.glob("*.py"))
    assert {"benchkit.py", "bench_transcribe.py", "transcribe_modes.py"} <= {p.name for p in files}
    long = {p.name: n for p in files if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def _module_level_imports(tree: ast.Module) -> set[str]:
    """Top-level package names imported outside any function or class (under ``if``/``try`` too)."""
    names: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.add("." if node.level else (node.module or "").split(".")[0])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def test_benchkit_imports_only_the_standard_library_at_module_level() -> None:
    tree = ast.parse((CELLSIDE / "benchkit.py").read_text(encoding="utf-8"))
    imported = _module_level_imports(tree)
    assert imported, "found no imports: the walk is broken"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, sorted(
        imported - set(sys.stdlib_module_names) - {"__future__"}
    )


def test_every_cellside_script_imports_only_the_standard_library_and_its_neighbours_at_module_level() -> None:
    """The scripts import each other by name (each puts its folder on sys.path), and nothing else of ours."""
    allowed = set(sys.stdlib_module_names) | {"__future__"} | {p.stem for p in CELLSIDE.glob("*.py")}
    wrong = {
        p.name: sorted(extra)
        for p in sorted(CELLSIDE.glob("*.py"))
        if (extra := _module_level_imports(ast.parse(p.read_text(encoding="utf-8"))) - allowed)
    }
    assert not wrong, wrong


def test_the_walk_sees_a_third_party_import_at_module_level_and_not_one_inside_a_function() -> None:
    tree = ast.parse("import os\ntry:\n    import torch\nexcept ImportError:\n    pass\ndef f():\n    import numpy\n")
    assert _module_level_imports(tree) == {"os", "torch"}


def _defined(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_name_a_cellside_script_takes_from_a_neighbour_is_defined_there() -> None:
    """The cellside scripts run in a cell's python, where a missing name surfaces only when that script runs (the
    split of bench_pipeline.py moved load_patched_alignment, and bench_trellis.py kept importing it from there)."""
    modules = {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in CELLSIDE.glob("*.py")}
    missing = []
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                defined = _defined(modules[node.module])
                missing += [f"{name}: {a.name} from {node.module}" for a in node.names if a.name not in defined]
    assert not missing, missing

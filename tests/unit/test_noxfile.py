"""noxfile.py, read as source (no nox import): the GPU tests have a session, since pytest's testpaths leave them out."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def _sessions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            func = call.func if call else deco
            if isinstance(func, ast.Attribute) and func.attr == "session":
                out[node.name] = node
    return out


def _keywords(fn: ast.FunctionDef) -> dict[str, object]:
    call = next(d for d in fn.decorator_list if isinstance(d, ast.Call))
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}


def _runs(fn: ast.FunctionDef) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(fn)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "run"
    ]


def test_gpu_session_runs_tests_gpu_with_posargs() -> None:
    gpu = _sessions().get("gpu")
    assert gpu is not None, "noxfile.py has no `gpu` session"
    assert _keywords(gpu).get("default") is False  # a plain `nox` runs `tests` only
    doc = ast.get_docstring(gpu) or ""
    assert doc and "\n" not in doc.strip() and "tests/gpu" in doc
    calls = _runs(gpu)
    pytest_runs = [c for c in calls if c.args and isinstance(c.args[0], ast.Constant) and c.args[0].value == "pytest"]
    assert pytest_runs, "the gpu session never runs pytest"
    args = pytest_runs[0].args
    assert any(isinstance(a, ast.Constant) and a.value == "tests/gpu" for a in args)
    assert any(isinstance(a, ast.Starred) and ast.unparse(a.value) == "session.posargs" for a in args)


def test_tests_gpu_is_left_to_the_gpu_session() -> None:
    """pytest's testpaths leave tests/gpu out (they need a GPU and a built cell); the gpu session is what runs it."""
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"][
        "testpaths"
    ]
    assert "tests/gpu" not in testpaths
    assert (ROOT / "tests" / "gpu").is_dir() and any((ROOT / "tests" / "gpu").glob("test_*.py"))


def test_a_malformed_matrix_gives_one_line_from_nox_not_a_traceback(tmp_path: Path) -> None:
    """`nox -l` (and so every session) over a broken matrix.toml: the cause and a way out, exit code 2."""
    import shutil
    import subprocess
    import sys

    for name in ("noxfile.py", "claims.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "src", tmp_path / "src")
    (tmp_path / "matrix.toml").write_text(
        (ROOT / "matrix.toml").read_text().replace('id = "stable-cu128"', 'id = "Stable CU128"', 1)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: matrix.toml:" in proc.stderr and "must be lowercase letters" in proc.stderr
    assert "hint: edit matrix.toml" in proc.stderr


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    """README.md's two commands are PEP 668-safe (a venv, never pip into the system Python), and .ci/run runs the
    second one as written, so a green CI means a newcomer's set-up works."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [ln.split("#")[0].strip() for ln in readme.splitlines() if ln.startswith("python3 -m venv .venv")]
    assert len(commands) == 2 and commands[0].endswith("nox -s env-cu128") and commands[1].endswith("nox -s tests")
    assert all(
        re.match(r"python3 -m venv \.venv && \.venv/bin/pip install -q nox uv && \.venv/bin/nox -s ", c)
        for c in commands
    )
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _script_dependencies() -> list[str]:
    """The PEP 723 block nox reads: it installs these into .nox/_nox_script_mode and re-runs itself there."""
    lines = (ROOT / "noxfile.py").read_text(encoding="utf-8").splitlines()
    start, end = lines.index("# /// script"), lines.index("# ///")
    return tomllib.loads("\n".join(line.removeprefix("# ").removeprefix("#") for line in lines[start + 1 : end]))[
        "dependencies"
    ]


def test_the_python_that_runs_the_venv_less_sessions_has_pip_for_the_wheelhouse() -> None:
    """`nox -s wheelhouse` runs the CLI in nox's own Python (venv_backend none), which is the script-mode venv that
    uv builds without pip; `wheelhouse` downloads with pip (uv has no download), so it failed there until pip was
    listed. The session's Python is whatever the script block gives it."""
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in _script_dependencies()}
    assert {"nox", "rich", "pip"} <= names
    assert _keywords(_sessions()["wheelhouse"]).get("venv_backend") == "none"

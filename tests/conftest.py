"""Fixtures shared by the suites: a tiny real project (matrix.toml, requirements, a real hashed lock)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TINY_MATRIX = """\
schema = 1
[defaults]
python = "{python}"
requirements = ["requirements.txt"]

[indexes.nightly]
url = "http://127.0.0.1:9/unreachable-nightly"
env = "WXM_TEST_NIGHTLY_INDEX"

[[cells]]
id = "tiny"
channel = "stable"
cuda = "cu128"
pins = {{ whisperx = "3.8.6" }}
patches = false

[[cells]]
id = "tiny-nightly"
channel = "nightly"
cuda = "cu130"
index = "nightly"
pins = {{ whisperx = "3.8.6" }}
patches = false
"""

# A real, small lock body: uv installs it for real, with hashes (six 1.16.0 from the package index).
SIX_LOCK_BODY = """\
six==1.16.0 \\
    --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926 \\
    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
"""


def _python_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def tiny_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with its own matrix.toml and envs/, isolated from the real one."""
    (tmp_path / "matrix.toml").write_text(TINY_MATRIX.format(python=_python_minor()))
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "constraints").mkdir()
    (tmp_path / "patches").mkdir()
    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "envs"))
    monkeypatch.delenv("WXM_MATRIX", raising=False)
    return tmp_path


def write_lock(project: Path, cell_id: str = "tiny", body: str = SIX_LOCK_BODY) -> Path:
    """Write a lock whose header matches the cell's current inputs, with a body we choose."""
    import json

    from whisperx_matrix import lock, matrix

    m = matrix.load(project / "matrix.toml")
    cell = m.get(cell_id)
    inputs = lock.lock_inputs(m, cell)
    path = lock.lock_path(m, cell)
    path.write_text(
        f"# cell: {cell.lock_id}\n# input-hash: {lock.input_hash(inputs)}\n"
        f"# inputs: {json.dumps(inputs, sort_keys=True, separators=(',', ':'))}\n" + body
    )
    return path


def uv_available() -> bool:
    return shutil.which("uv") is not None or subprocess.run(
        [sys.executable, "-c", "import uv"], capture_output=True
    ).returncode == 0

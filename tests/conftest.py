"""Fixtures shared by the suites: a tiny real project (matrix.toml, requirements, a real hashed lock)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_RESULTS_KEY = pytest.StashKey[str]()  # the session's results-cache folder, removed at the end


def pytest_configure(config: pytest.Config) -> None:
    """The test session starts from an empty results cache (issue #24), so a green run built and ran every cell it
    needed once, whatever earlier runs left; within the session one result per key serves every test. Set on the
    controller only: xdist's workers start after this and inherit the variable (and share the cache)."""
    if hasattr(config, "workerinput"):
        return
    folder = tempfile.mkdtemp(prefix="wxm-test-results-")
    os.environ["WXM_RESULTS_CACHE"] = folder
    config.stash[_RESULTS_KEY] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_RESULTS_KEY, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


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

# six plus hf-xet 1.8.0, copied from constraints/stable-cu128.txt: hf-xet's only Linux x86_64 wheel is
# cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64, which a wheelhouse for "x86_64-manylinux_2_28" must
# accept (older manylinux, abi3); its sdist needs Rust and a crate download.
HF_XET_LOCK_BODY = (
    SIX_LOCK_BODY
    + """\
hf-xet==1.8.0 \\
    --hash=sha256:07a06d7481702616726c2d8578cfb00052a5b3f21beed6a674592bc837a10330 \\
    --hash=sha256:10ed23b51dacf7917d64f335c25048deb470efa755e9989b218fc0531386138e \\
    --hash=sha256:1ebaf248c9bef8bb0c9d1d8d71db1fdf0cac14f922cc7a936a81adbf12eb5f01 \\
    --hash=sha256:23c262e9f5e137b18dadbce60becfeea84156b0d43119c320bffe260d32cd2fa \\
    --hash=sha256:29dab7c904cd1914a0439c6e1306c12c7497c8bd32290fbe563ebf51ca4b6d6d \\
    --hash=sha256:3e8934784425781f0f779b91044df441f3a7af4dab47375d7e3aeaecbb8eecb4 \\
    --hash=sha256:3ecfe2934448cca55a4c42732b60f985266aecb241905945219b3d388aceb7ba \\
    --hash=sha256:42b66fdc688eaa4ff3eb77dc9275e5a0f1258ecc9fdd083ddaf43bb49bec925b \\
    --hash=sha256:56735c2d4f416d7473fc986586b26a8756e067832ca4b7fdaad32a0d6f2ce740 \\
    --hash=sha256:62b056aedb89ac809f78940baf465fe553b70c8b25ee56890fbab3039fffec1b \\
    --hash=sha256:7edeb21c5d381903ee5f4857fc746fa7b52a4b374035e8811ecfb67ee27add0c \\
    --hash=sha256:8800e3444770f2c630b361bc6d5c6ebb770b7830646cf632fbb79d0e5bbc9e7f \\
    --hash=sha256:92188598dedc1e1f5609bd718d4db8687a6c89915553912571e2f587892eecec \\
    --hash=sha256:a584a7b3268da62f23c3187cc7201ca01f7b610985a36b1b6119c66bccb0383c \\
    --hash=sha256:c74e3751cbcdae9222c5170e8d788e83201a03dc5e5f4308a20f17a5b6023b56 \\
    --hash=sha256:e00d8f60170cd3dd55d98306e41dbaf28b27ff1bcfefbfa84279d197221be83e \\
    --hash=sha256:f42940869572dc2b05dfe06f4cc398c6291503e086ddc4eddfb7a6ab9409ad01
"""
)


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
    return (
        shutil.which("uv") is not None
        or subprocess.run([sys.executable, "-c", "import uv"], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="module")
def working_cell_python() -> Path:
    """The working cell's python, built (or reused: a no-op when current) from its committed lock."""
    from whisperx_matrix import build, matrix

    m = matrix.load(Path(__file__).resolve().parents[1] / "matrix.toml")
    python = build.build(m, m.get("stable-cu128")).env / "bin" / "python"
    assert python.exists()
    return python

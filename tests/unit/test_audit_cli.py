"""``python -m whisperx_matrix audit``: targets (cell id, venv, site-packages), errors, JSON, table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_elves import build_so

from whisperx_matrix import cli
from whisperx_matrix.audit import AuditReport, audit_site, resolve_target
from whisperx_matrix.errors import NotBuiltError, UnknownCellError

MATRIX = """\
schema = 1
[defaults]
python = "3.11"
requirements = []
[[cells]]
id = "tiny"
channel = "stable"
cuda = "cu128"
pins = { whisperx = "3.8.6" }
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "matrix.toml").write_text(MATRIX, encoding="utf-8")
    monkeypatch.setenv("WXM_MATRIX", str(tmp_path / "matrix.toml"))
    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "envs"))
    return tmp_path


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv-shaped folder whose site-packages holds a tiny library and a dist-info RECORD for it."""
    env = tmp_path / "venv"
    site = env / "lib" / "python3.11" / "site-packages"
    build_so(site / "tinypkg" / "libtiny.so.1", soname="libtiny.so.1", strings=["libcuda.so.1"])
    info = site / "tinypkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n", encoding="utf-8")
    (info / "RECORD").write_text("tinypkg/libtiny.so.1,,\ntinypkg-1.0.dist-info/RECORD,,\n", encoding="utf-8")
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    return env


def test_unbuilt_cell_says_how_to_build_it(project: Path) -> None:
    with pytest.raises(NotBuiltError) as err:
        resolve_target("tiny")
    assert err.value.hint == "build it: nox -s env-tiny"
    assert cli.main(["audit", "tiny", "--no-progress"]) == NotBuiltError.exit_code


def test_unknown_cell(project: Path) -> None:
    with pytest.raises(UnknownCellError):
        resolve_target("tinny")


def test_cell_resolves_through_the_envs_link(project: Path, venv: Path) -> None:
    (project / "envs").mkdir()
    (project / "envs" / "tiny").symlink_to(venv)
    found = resolve_target("tiny")
    assert found.cell == "tiny" and found.site.name == "site-packages" and found.python is None


def test_venv_and_site_packages_paths(venv: Path) -> None:
    site = venv / "lib" / "python3.11" / "site-packages"
    assert resolve_target(venv).site == site
    assert resolve_target(site).site == site


def test_report_json_shape(venv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert cli.main(["audit", str(venv), "--sm", "sm_120", "--json", str(out), "--no-progress", "--no-torch"]) == 0
    text = capsys.readouterr().out
    assert (
        "Arch audit for sm_120" in text
        and "Closure audit" in text
        and "venv on sm_120: runnable" in text.replace(str(venv), "venv")
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) == {"target", "site", "sm", "runnable", "reason", "reasons", "arch", "closure"}
    assert data["runnable"] is True and data["reason"] is None and data["sm"] == "sm_120"
    (lib,) = data["arch"]["libraries"]
    assert lib["path"] == "tinypkg/libtiny.so.1" and lib["package"] == "tinypkg 1.0" and lib["status"] == "no-gpu-code"
    assert data["closure"]["process"]["entries"] == []


def test_kinds_and_bad_sm(venv: Path) -> None:
    site = venv / "lib" / "python3.11" / "site-packages"
    arch_only = audit_site(site, 90, kind="arch", progress=False)
    assert isinstance(arch_only, AuditReport) and arch_only.closure is None and arch_only.arch is not None
    assert audit_site(site, "8.9", kind="closure", progress=False).arch is None
    assert cli.main(["audit", str(site), "--sm", "banana", "--no-progress"]) == 2

"""The `latest` channel: a cell that floats on the default index to the newest release its constraints allow,
resolved at run time, its lock kept in the result (with its sha256) and rebuildable with --lock-from.

No network: the default index is a PEP 503 index on disk (a ``file://`` URL, through UV_DEFAULT_INDEX) serving
small wheels this test builds, one of them in three releases and a pre-release."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import uv_available
from pep503 import build_index, make_wheel

from whisperx_matrix import lock, matrix, matrix_run
from whisperx_matrix.errors import LockError

pytestmark = pytest.mark.skipif(not uv_available(), reason="uv is not installed")

PROJECT_MATRIX = """\
schema = 1
[defaults]
python = "{python}"
requirements = ["requirements.txt"]

[[cells]]
id = "today"
channel = "latest"
cuda = "cu128"
patches = false

[[cells]]
id = "today-capped"
channel = "latest"
cuda = "cu128"
requires = ["wxm-demo<2"]
patches = false
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> matrix.Matrix:
    """A project whose default index is a folder on disk: wxm-demo 1.0, 2.0 (needs wxm-dep), 3.0rc1."""
    made = tmp_path / "wheels"
    wheels = [
        make_wheel(made, "wxm-demo", "1.0"),
        make_wheel(made, "wxm-demo", "2.0", ("wxm-dep>=1",)),
        make_wheel(made, "wxm-demo", "3.0rc1"),
        make_wheel(made, "wxm-dep", "1.5"),
    ]
    index = build_index(tmp_path / "index", wheels)
    monkeypatch.setenv("UV_DEFAULT_INDEX", index.as_uri() + "/")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.delenv("UV_INDEX_URL", raising=False)
    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "envs"))
    monkeypatch.delenv("WXM_MATRIX", raising=False)
    root = tmp_path / "project"
    (root / "constraints").mkdir(parents=True)
    (root / "requirements.txt").write_text("wxm-demo\n")
    (root / "matrix.toml").write_text(
        PROJECT_MATRIX.format(python=f"{sys.version_info.major}.{sys.version_info.minor}")
    )
    return matrix.load(root / "matrix.toml")


def _pins(text: str) -> dict[str, str]:
    return {p.name: p.version for p in lock.read_pins(text)}


def test_a_latest_cell_floats_and_is_never_committed(project: matrix.Matrix) -> None:
    cell = project.get("today")
    assert cell.floating and cell.index is None and cell.whisperx_version is None
    [status] = lock.check(project, [cell])
    assert status.state == "floating" and not status.problem
    assert status.detail == "resolved at run time from the default package index (overridden by UV_DEFAULT_INDEX)"
    with pytest.raises(LockError, match="floats"):
        lock.ensure_fresh(project, cell)
    assert lock.compile_lock(project, cell).state == "floating"  # `nox -s lock` writes nothing for it
    assert not lock.lock_path(project, cell).exists()


def test_it_resolves_the_newest_release_its_constraints_allow(project: matrix.Matrix, tmp_path: Path) -> None:
    """Newest release, not the pre-release; a cell's own constraint caps it; the lock says no index was named."""
    got = {}
    for cid in ("today", "today-capped"):
        dest = tmp_path / f"{cid}.txt"
        status = lock.resolve_floating(project, project.get(cid), dest)
        assert status.state == "written", status.detail
        got[cid] = _pins(dest.read_text())
        header = lock.read_header(dest)
        assert header is not None and header.cell == cid and header.inputs["index"] is None
    assert got["today"] == {"wxm-demo": "2.0", "wxm-dep": "1.5"}
    assert got["today-capped"] == {"wxm-demo": "1.0"}
    assert "--hash=sha256:" in (tmp_path / "today.txt").read_text()
    assert not lock.lock_path(project, project.get("today")).exists()


def test_the_run_keeps_the_resolved_lock_and_it_rebuilds_the_same(project: matrix.Matrix, tmp_path: Path) -> None:
    """stage_lock's floating branch: the record says it floated on the default index (by role, never by host or
    path), with the lock's text and sha256; --lock-from takes that lock back out of a saved result."""
    work = tmp_path / "work"
    work.mkdir()
    cell = project.get("today")
    stage, lock_file = matrix_run.stage_lock(project, cell, work)
    assert stage.status == "pass" and lock_file is not None, stage.detail
    rec = stage.record["lock"]
    assert rec["floating"] is True and rec["channel"] == "latest" and rec["index"] is None
    assert rec["index_note"] == "the default package index (overridden by UV_DEFAULT_INDEX)"
    assert stage.detail == "resolved now from " + rec["index_note"]
    assert rec["sha256"] == lock.sha256_bytes(rec["text"].encode()) == lock.sha256_bytes(lock_file.read_bytes())
    assert str(tmp_path) not in json.dumps({k: v for k, v in rec.items() if k != "text"})
    assert _pins(rec["text"])["wxm-demo"] == "2.0"

    result = tmp_path / "matrix.json"
    result.write_text(json.dumps({"schema": 1, "cells": [{"id": "today", "lock": rec}]}))
    again = lock.lock_from(project, cell, result, tmp_path / "locks")
    assert again.read_text() == rec["text"]


def test_an_unresolvable_latest_cell_fails_as_the_stack_not_the_machine(project: matrix.Matrix, tmp_path: Path) -> None:
    """A constraint nothing on the index satisfies is the stack's failure (resolve-failed), with uv's reason."""
    toml = project.path
    toml.write_text(toml.read_text().replace('requires = ["wxm-demo<2"]', 'requires = ["wxm-demo>=4"]'))
    m = matrix.load(toml)
    work = tmp_path / "work"
    work.mkdir()
    stage, lock_file = matrix_run.stage_lock(m, m.get("today-capped"), work)
    assert stage.status == "fail" and lock_file is None
    assert stage.reasons == ["resolve-failed:today-capped"] and "uv could not resolve" in stage.detail


def test_the_default_index_named_without_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in matrix.DEFAULT_INDEX_ENVS:
        monkeypatch.delenv(var, raising=False)
    assert matrix.describe_default_index() == "the default package index"
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    assert matrix.describe_default_index() == "the default package index (overridden by UV_INDEX_URL)"

"""Offline wheelhouse on the tiny project (a real hashed lock of six 1.16.0): the folder is filled from the
index, then the build runs with the index unreachable and an empty uv cache, and a folder that lacks a
locked wheel is refused by name before uv runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SIX_LOCK_BODY, write_lock

from whisperx_matrix import build, cli, matrix, wheelhouse
from whisperx_matrix.errors import BuildError

SIX_WHEEL_SHA = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"


def test_read_lock_joins_continuations_and_evaluates_markers_for_the_target(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text(SIX_LOCK_BODY + "pywin32==306 ; sys_platform == 'win32' \\\n    --hash=sha256:aa\n"
                    "tomli==2.0.1 ; python_version < '3.11' \\\n    --hash=sha256:bb\n")
    pins, target = wheelhouse.read_lock(lock, wheelhouse.Target("3.11", "x86_64-manylinux_2_28"))
    assert [p.spec() for p in pins] == ["six==1.16.0"]
    assert SIX_WHEEL_SHA in pins[0].hashes and len(pins[0].hashes) == 2
    assert target.pip_platform == "manylinux_2_28_x86_64" and target.abi == "cp311"
    pins310, _ = wheelhouse.read_lock(lock, wheelhouse.Target("3.10", "x86_64-manylinux_2_28"))
    assert "tomli==2.0.1" in [p.spec() for p in pins310]


def test_verify_names_the_missing_distribution(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text(SIX_LOCK_BODY)
    empty = tmp_path / "wh"
    empty.mkdir()
    with pytest.raises(BuildError, match=r"lacks six==1\.16\.0 \(no file for it") as err:
        wheelhouse.verify(lock, empty)
    assert "wheelhouse" in (err.value.hint or "")
    (empty / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"not the real wheel")
    wheelhouse.verify(lock, empty)  # names only: passes
    with pytest.raises(BuildError, match="sha256 the lock does not allow"):
        wheelhouse.verify(lock, empty, check_hashes=True)


@pytest.mark.network
def test_wheelhouse_then_offline_build(tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    lock = write_lock(tiny_project)
    dest = tmp_path / "wheelhouse"
    monkeypatch.chdir(tiny_project)
    assert cli.main(["wheelhouse", "tiny", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "1 locked distributions" in out and "--offline --wheelhouse" in out
    wheel = dest / "six-1.16.0-py2.py3-none-any.whl"
    assert wheel.is_file() and wheelhouse.sha256_file(wheel) == SIX_WHEEL_SHA
    wheelhouse.verify(lock, dest, check_hashes=True)
    assert cli.main(["wheelhouse", "tiny", "--dest", str(dest), "--verify"]) == 0

    # No index, no cache: only the wheelhouse can serve six.
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-uv-cache"))
    m = matrix.load(tiny_project / "matrix.toml")
    result = build.build(m, m.get("tiny"), selftest=False, offline=True, wheelhouse=dest)
    assert result.state == "built" and (tiny_project / "envs" / "tiny" / build.STAMP).is_file()

    # The same build from a folder that lacks the wheel: refused by name before uv runs...
    shutil.rmtree(dest)
    dest.mkdir()
    with pytest.raises(BuildError, match=r"wheelhouse .* lacks six==1\.16\.0"):
        wheelhouse.verify(lock, dest)
    # ...and the build checks the folder the same way before uv (which would only say "No solution found").
    with pytest.raises(BuildError, match=r"wheelhouse .* lacks six==1\.16\.0"):
        build.build(m, m.get("tiny"), selftest=False, offline=True, wheelhouse=dest, force=True)
    assert (tiny_project / "envs" / "tiny" / build.STAMP).is_file()  # the env built before is still in force

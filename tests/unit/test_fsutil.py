"""The one atomic writer: a temp file beside the target, fsynced, renamed into place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whisperx_matrix import fsutil


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "x" / "lock.txt"
    fsutil.atomic_write_text(target, "one\n")
    fsutil.atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["lock.txt"]


def test_a_new_file_gets_the_umask_mode_and_an_old_one_keeps_its_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        fsutil.atomic_write_bytes(fresh, b"x")
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.sh"
        kept.write_text("old")
        kept.chmod(0o755)
        fsutil.atomic_write_bytes(kept, b"new")
        assert kept.stat().st_mode & 0o777 == 0o755 and kept.read_bytes() == b"new"
    finally:
        os.umask(umask)


def test_a_failure_before_the_renames_changes_nothing(tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    first.write_text("old")

    with pytest.raises(TypeError):
        fsutil.atomic_write_many({first: b"new", tmp_path / "b.txt": "not bytes"})  # type: ignore[dict-item]
    assert first.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]

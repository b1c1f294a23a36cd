"""The disk measurement counts a hardlinked file once, in the first place that holds it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from whisperx_matrix import diskuse
from whisperx_matrix.errors import ConfigError


def _blob(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_a_hardlinked_env_adds_only_its_own_files(tmp_path: Path) -> None:
    cache = _blob(tmp_path / "uv" / "archive" / "torch.so", 1 << 20)
    env = tmp_path / "envs" / "cell" / "torch.so"
    env.parent.mkdir(parents=True)
    os.link(cache, env)
    _blob(tmp_path / "envs" / "cell" / "stamp.json", 4096)
    uv, envs, missing = diskuse.measure(
        [("uv", tmp_path / "uv"), ("envs", tmp_path / "envs"), ("gone", tmp_path / "nowhere")]
    )
    assert uv.own_bytes == uv.apparent_bytes >= 1 << 20
    assert envs.apparent_bytes >= (1 << 20) + 4096  # du of envs/ alone counts the link
    assert envs.own_bytes < 64 * 1024  # ... but it adds only the stamp
    assert (missing.apparent_bytes, missing.own_bytes, missing.files) == (0, 0, 0)
    assert "total" in diskuse.table([uv, envs, missing])


def test_grown_since_a_saved_measurement(tmp_path: Path) -> None:
    _blob(tmp_path / "c" / "a", 8192)
    before = diskuse.measure([("cache", tmp_path / "c")])
    saved = tmp_path / "before.json"
    saved.write_text(json.dumps({"places": [vars(p) for p in before]}))
    _blob(tmp_path / "c" / "b", 1 << 20)
    (delta,) = diskuse.grown(diskuse.load(saved), diskuse.measure([("cache", tmp_path / "c")]))
    assert delta.files == 1 and delta.own_bytes >= 1 << 20


def test_a_file_that_is_not_a_measurement_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a disk measurement"):
        diskuse.load(bad)


def test_a_folder_only_an_older_version_filled_is_named_with_its_size(tmp_path: Path) -> None:
    _blob(tmp_path / "extracted" / "torch" / "lib" / "libtorch_cuda.so", 1 << 20)
    (note,) = diskuse.legacy_notes(tmp_path)
    assert str(tmp_path / "extracted") in note and "rm -rf" in note
    assert diskuse.legacy_notes(tmp_path / "nothing-here") == []

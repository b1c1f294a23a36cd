"""Locks: header round trip, staleness naming what changed, unreachable indexes, real uv compiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_lock

from whisperx_matrix import lock, matrix
from whisperx_matrix.errors import LockError


def test_diff_inputs_names_each_change() -> None:
    old = {"pins": {"torch": "2.8.0", "whisperx": "3.8.6"}, "requirements": {"a.txt": "sha256:1"}, "python": "3.11"}
    new = {
        "pins": {"torch": "2.8.1", "whisperx": "3.8.6"},
        "requirements": {"a.txt": "sha256:2", "b.txt": "x"},
        "python": "3.12",
    }
    assert lock.diff_inputs(old, new) == [
        "pins.torch: 2.8.0 -> 2.8.1",
        "python: '3.11' -> '3.12'",
        "a.txt changed",
        "b.txt added",
    ]


def test_fresh_lock_passes_check(tiny_project: Path) -> None:
    write_lock(tiny_project)
    m = matrix.load(tiny_project / "matrix.toml")
    assert [s.state for s in lock.check(m, [m.get("tiny")])] == ["fresh"]
    assert lock.ensure_fresh(m, m.get("tiny")).name == "tiny.txt"


def test_edited_requirements_make_the_lock_stale_and_say_so(tiny_project: Path) -> None:
    write_lock(tiny_project)
    (tiny_project / "requirements.txt").write_text("six\nattrs\n")
    m = matrix.load(tiny_project / "matrix.toml")
    [status] = lock.check(m, [m.get("tiny")])
    assert status.state == "stale" and status.detail == "requirements.txt changed"
    with pytest.raises(LockError, match="lock for tiny is stale: requirements.txt changed") as err:
        lock.ensure_fresh(m, m.get("tiny"))
    assert "nox -s lock" in (err.value.hint or "")


def test_changed_pin_is_named_with_old_and_new_value(tiny_project: Path) -> None:
    write_lock(tiny_project)
    toml = tiny_project / "matrix.toml"
    toml.write_text(toml.read_text().replace('whisperx = "3.8.6" }\npatches', 'whisperx = "3.8.5" }\npatches', 1))
    m = matrix.load(toml)
    [status] = lock.check(m, [m.get("tiny")])
    assert status.detail == "pins.whisperx: 3.8.6 -> 3.8.5"


def test_hand_edited_lock_without_header_is_stale(tiny_project: Path) -> None:
    (tiny_project / "constraints" / "tiny.txt").write_text("six==1.16.0\n")
    m = matrix.load(tiny_project / "matrix.toml")
    assert lock.check(m, [m.get("tiny")])[0].state == "stale"


def test_missing_lock_is_reported(tiny_project: Path) -> None:
    m = matrix.load(tiny_project / "matrix.toml")
    [status] = lock.check(m, [m.get("tiny")])
    assert status.state == "missing" and status.problem


def test_nightly_cell_floats_and_its_unreachable_index_is_infrastructure(tiny_project: Path) -> None:
    """A nightly cell has no committed lock: `check` says floating (not missing, not stale); resolving it against a
    real unreachable index (a closed local port, not a mock) is an infrastructure failure, never evidence."""
    m = matrix.load(tiny_project / "matrix.toml")
    cell = m.get("tiny-nightly")
    [status] = lock.check(m, [cell])
    assert status.state == "floating" and not status.problem
    assert "resolved at run time from PyTorch index 'nightly'" in status.detail
    with pytest.raises(LockError, match="floats"):
        lock.ensure_fresh(m, cell)
    resolved = lock.resolve_floating(m, cell, tiny_project / "resolved.txt")
    assert resolved.state == "unreachable" and resolved.infra == "index unreachable"
    assert "PyTorch index 'nightly' (set WXM_TEST_NIGHTLY_INDEX to use a mirror) unreachable" in resolved.detail
    assert "127.0.0.1" not in resolved.detail  # reports name the index, never its host
    assert not (tiny_project / "resolved.txt").exists()
    # `nox -s lock` never writes a floating cell's lock into constraints/.
    assert lock.compile_lock(m, cell).state == "floating"
    assert not lock.lock_path(m, cell).exists()


def test_lock_from_a_result_or_a_file(tiny_project: Path) -> None:
    """--lock-from takes the lock a result kept for the cell, or a lock file; a lock of another cell is refused."""

    m = matrix.load(tiny_project / "matrix.toml")
    text = write_lock(tiny_project, "tiny").read_text()
    result = tiny_project / "result.json"
    result.write_text(json.dumps({"schema": 1, "cells": [{"id": "tiny", "lock": {"text": text}}]}))
    got = lock.lock_from(m, m.get("tiny"), result, tiny_project / "locks")
    assert got.read_text() == text and got.parent.name == "locks"
    assert (
        lock.lock_from(m, m.get("tiny"), lock.lock_path(m, m.get("tiny")), tiny_project / "locks").read_text() == text
    )
    with pytest.raises(LockError, match="not a lock of tiny-nightly"):
        lock.lock_from(m, m.get("tiny-nightly"), lock.lock_path(m, m.get("tiny")), tiny_project / "locks")
    with pytest.raises(LockError, match="holds no resolved lock for tiny-nightly"):
        lock.lock_from(m, m.get("tiny-nightly"), result, tiny_project / "locks")


@pytest.mark.network
def test_real_compile_writes_hashed_lock_and_skips_unreachable(tiny_project: Path) -> None:
    """uv really resolves whisperx 3.8.6 + six for Linux x86_64; the nightly cell's index is a closed port."""
    m = matrix.load(tiny_project / "matrix.toml")
    results = {r.lock_id: r for r in lock.lock_all(m, m.cells)}
    assert results["tiny"].state == "written", results["tiny"].detail
    assert results["tiny-nightly"].state == "floating"  # never locked into constraints/
    text = (tiny_project / "constraints" / "tiny.txt").read_text()
    assert "\nwhisperx==3.8.6 \\\n    --hash=sha256:" in text
    assert "\ntorch==2.8.0 \\\n" in text  # whisperx 3.8.6 pins torch~=2.8.0
    assert "# via -r requirements.txt" in text and str(tiny_project) not in text  # no machine paths
    assert lock.check(m, [m.get("tiny")])[0].state == "fresh"
    # A second run with unchanged inputs does not re-resolve.
    assert lock.compile_lock(m, m.get("tiny")).state == "fresh"


@pytest.mark.network
def test_unresolvable_pins_fail_that_cell_only(tiny_project: Path) -> None:
    toml = tiny_project / "matrix.toml"
    toml.write_text(
        toml.read_text().replace(
            'pins = { whisperx = "3.8.6" }\npatches', 'pins = { whisperx = "3.8.6", torch = "2.5.1" }\npatches', 1
        )
    )
    m = matrix.load(toml)
    [status] = lock.lock_all(m, [m.get("tiny")])
    assert status.state == "failed" and "uv could not resolve" in status.detail
    assert not (tiny_project / "constraints" / "tiny.txt").exists()


def test_default_index_down_is_named_as_such(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package index made unreachable for real (a closed local port and an empty uv cache)."""
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_CACHE_DIR", str(tiny_project / "uv-cache"))
    m = matrix.load(tiny_project / "matrix.toml")
    [status] = lock.lock_all(m, [m.get("tiny")])
    assert status.state == "failed" and status.infra == "network"
    assert status.detail.startswith("package index unreachable"), status.detail


@pytest.mark.network
def test_pins_without_a_wheel_for_the_platform_are_recorded_as_the_lock(tiny_project: Path) -> None:
    """uv's real answer for a pin that has no wheel for the cell's platform (torchcodec 0.7.0 on linux-aarch64) is
    the cell's lock: written with its header, fresh until the inputs change, read by the matrix as the cell's
    failure with a reason token, and refused by the build in one line."""
    toml = tiny_project / "matrix.toml"
    toml.write_text(
        toml.read_text().replace(
            'pins = { whisperx = "3.8.6" }\npatches',
            'pins = { whisperx = "3.8.6" }\nrequires = ["torchcodec==0.7.0"]\n'
            'platform = ["x86_64-manylinux_2_28", "aarch64-manylinux_2_28"]\npatches',
            1,
        )
    )
    m = matrix.load(toml)
    cell = m.get("tiny-aarch64")
    [status] = lock.lock_all(m, [cell])
    assert (status.state, status.detail) == ("unresolvable", "no-wheel-for-platform:torchcodec==0.7.0")
    text = (tiny_project / "constraints" / "tiny-aarch64.txt").read_text()
    why = lock.unresolvable(text)
    assert why is not None and why.startswith("Because torchcodec==0.7.0 has no wheels with a matching platform tag")
    assert not lock.read_pins(text) and lock.check(m, [cell])[0].state == "fresh"
    with pytest.raises(LockError, match=r"does not resolve for aarch64-manylinux_2_28: Because torchcodec"):
        lock.ensure_fresh(m, cell)

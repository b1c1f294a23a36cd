"""The results cache: its key covers every input a cell's outcome depends on, a hit is the stored record exactly,
and anything that changes one input runs the cell again (issue #24)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_lock

from whisperx_matrix import cache_cli, matrix, matrix_run, report, resultcache
from whisperx_matrix.errors import FatalError

ROOT = Path(__file__).resolve().parents[2]
MATRIX = matrix.load(ROOT / "matrix.toml")
MACHINE = {
    "platform": "Linux x86_64",
    "libc": "glibc 2.36",
    "gpus": [],
    "driver": None,
    "cuda": None,
    "ffmpeg": "ffmpeg version 5.1",
    "hf_token_present": False,
}


def _args() -> dict[str, Any]:
    return {
        "lock_sha256": "a" * 64,
        "sm": 120,
        "suite": True,
        "ld_compare": False,
        "machine": MACHINE,
        "code": "c" * 64,
        "patches": "p" * 64,
    }


def _inputs(cell: matrix.Cell, **over: Any) -> dict[str, Any]:
    return resultcache.key_inputs(MATRIX, cell, **(_args() | over))


def _key(cell: matrix.Cell, **over: Any) -> str:
    return resultcache.key_of(_inputs(cell, **over))


@pytest.fixture
def fixed_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter lookup is real elsewhere; here the key is compared with itself, so one answer is enough."""
    monkeypatch.setattr(resultcache, "python_version", lambda want: f"Python {want}.1")


def test_each_key_input_changes_the_key(fixed_python: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cell = MATRIX.get("stable-cu128")
    assert cell.patches, "stable-cu128 applies the series: the patches input must count for it"
    base = _key(cell)
    assert _key(cell) == base  # the same inputs, the same key
    changed = {
        "lock": _key(cell, lock_sha256="b" * 64),
        "sm": _key(cell, sm=90),
        "suite": _key(cell, suite=False),
        "ld_compare": _key(cell, ld_compare=True),
        "code": _key(cell, code="d" * 64),
        "patches": _key(cell, patches="q" * 64),
        "gpu": _key(cell, machine=MACHINE | {"gpus": ["NVIDIA H200 sm_90"]}),
        "driver": _key(cell, machine=MACHINE | {"driver": "580.159.04"}),
        "cuda": _key(cell, machine=MACHINE | {"cuda": "13.0"}),
        "ffmpeg": _key(cell, machine=MACHINE | {"ffmpeg": "ffmpeg version 6.0"}),
        "hf_token": _key(cell, machine=MACHINE | {"hf_token_present": True}),
        "cell entry (a pin)": resultcache.key_of(
            resultcache.key_inputs(
                MATRIX,
                dataclasses.replace(cell, pins={**cell.pins, "whisperx": "3.8.5"}),
                **_args(),
            )
        ),
        "cell entry (expectation)": resultcache.key_of(
            resultcache.key_inputs(
                MATRIX, dataclasses.replace(cell, expect=matrix.Expectation("fail", "x:y")), **_args()
            )
        ),
    }
    monkeypatch.setattr(resultcache, "python_version", lambda want: f"Python {want}.2")
    changed["python"] = _key(cell)
    same = [name for name, key in changed.items() if key == base]
    assert not same, f"these inputs do not change the key: {same}"
    assert len(set(changed.values())) == len(changed)


def test_a_patch_change_touches_exactly_the_cells_that_apply_patches(fixed_python: None) -> None:
    cells = MATRIX.select([])
    touched = {c.id for c in cells if _key(c) != _key(c, patches="q" * 64)}
    applying = {c.id for c in cells if c.patches or c.opt_in_patches}
    assert touched == applying
    assert applying and set(c.id for c in cells) - applying, "the matrix has cells on both sides"


def _fake_project(root: Path) -> Path:
    for rel, text in (
        ("src/whisperx_matrix/verdict.py", "X = 1\n"),
        ("tests/cell/test_cell.py", "def test_x(): pass\n"),
        ("docs/notes.md", "notes\n"),
        ("patches/series.toml", "schema = 1\n"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_code_hash_covers_the_package_and_the_cell_suite_but_not_the_docs(tmp_path: Path) -> None:
    root = _fake_project(tmp_path)
    package = root / "src" / "whisperx_matrix"
    base = resultcache.code_hash(root, package)
    (root / "docs/notes.md").write_text("other notes\n")
    assert resultcache.code_hash(root, package) == base
    (root / "tests/cell/test_cell.py").write_text("def test_x(): assert True\n")
    after_suite = resultcache.code_hash(root, package)
    assert after_suite != base
    (package / "verdict.py").write_text("X = 2\n")
    assert resultcache.code_hash(root, package) not in (base, after_suite)
    assert resultcache.code_hash(root) != resultcache.code_hash(root, package)  # the running package by default
    assert resultcache.patches_hash(tmp_path / "nowhere") == resultcache.patches_hash(tmp_path / "elsewhere")
    before = resultcache.patches_hash(root)
    (root / "patches/0001-x.patch").write_text("--- a\n+++ b\n")
    assert resultcache.patches_hash(root) != before


def _record(status: str = "fail") -> dict[str, Any]:
    return {
        "id": "stable-cu128",
        "checks": {"lock": {"status": "pass"}, "build": {"status": "pass"}, "selftest": {"status": status}},
        "observed": {"status": status, "reasons": ["x:y"] if status == "fail" else []},
        "verdict": "failed-as-expected",
        "seconds": {"total": 12.0},
    }


def test_a_hit_is_the_stored_record_with_a_cached_mark_in_its_key_order(tmp_path: Path) -> None:
    cache = resultcache.ResultCache(tmp_path)
    assert cache.get("k" * 64) is None
    rec = _record()
    assert cache.put("k" * 64, {"schema": 1}, rec)
    hit = cache.get("k" * 64)
    assert hit is not None
    assert hit.pop("cached")["key"] == "k" * 64
    assert hit == rec and list(hit) == list(rec) and list(hit["checks"]) == list(rec["checks"])


def test_a_not_testable_result_is_never_stored(tmp_path: Path) -> None:
    cache = resultcache.ResultCache(tmp_path)
    assert not cache.put("n" * 64, {}, _record("not-testable"))
    assert cache.get("n" * 64) is None and not list(tmp_path.iterdir())


def test_an_unreadable_entry_is_a_miss_and_prune_and_clear_touch_only_their_own_files(tmp_path: Path) -> None:
    cache = resultcache.ResultCache(tmp_path)
    cache.put("a" * 64, {}, _record())
    cache.put("b" * 64, {}, _record())
    cache.path("c" * 64).write_text("{not json")
    (tmp_path / "notes.json").write_text("{}")  # a user's file in the same folder
    assert cache.get("c" * 64) is None
    old = time.time() - 40 * 86400
    os.utime(cache.path("a" * 64), (old, old))
    assert sorted(cache.prune(older_than_s=cache_cli.parse_age("30d"))) == ["a" * 64, "c" * 64]
    assert [r["key"] for r in cache.entries()] == ["b" * 64]
    with cache.claim("b" * 64):
        pass
    assert cache.clear() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]


def test_ages_take_days_hours_minutes_or_seconds_and_refuse_anything_else() -> None:
    assert cache_cli.parse_age("2d") == 172800 and cache_cli.parse_age("90m") == 5400
    assert cache_cli.parse_age("3600") == 3600
    with pytest.raises(FatalError, match="not an age"):
        cache_cli.parse_age("soon")


# ------------------------------------------------------------------------------------------ real cells


def test_a_repeat_is_answered_from_the_cache_and_each_key_input_runs_the_cell_again(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real cell (six, built by uv from a hashed lock, its self-test run for real): the second run with nothing
    changed is the first's record, marked cached; a new lock, sm, code, machine, Python or cell entry runs it."""
    monkeypatch.setenv("WXM_RESULTS_CACHE", str(tiny_project / "results"))
    lock = write_lock(tiny_project)
    m = matrix.load(tiny_project / "matrix.toml")
    ctx = matrix_run.CacheContext.for_run(m)

    def run(mm: matrix.Matrix = m, sm: int = 120, c: matrix_run.CacheContext = ctx) -> dict[str, Any]:
        return matrix_run.run_cell(mm, mm.get("tiny"), sm=sm, work=tiny_project / "work", suite=False, cache=c)

    first = run()
    assert "cached" not in first and first["checks"]["build"]["status"] == "pass"
    again = run()
    assert again["cached"]["from"]
    strip = report.without_volatile
    assert json.dumps(strip(again)) == json.dumps(strip(first))  # the same bytes, key order included
    assert "cached" not in run(sm=90)
    assert "cached" not in run(c=dataclasses.replace(ctx, code="0" * 64))
    assert "cached" not in run(c=dataclasses.replace(ctx, machine=ctx.machine | {"driver": "580.159.04"}))
    assert "cached" not in run(c=dataclasses.replace(ctx, read=False))  # --no-cache
    lock.write_text(lock.read_text() + "# a new line in the lock\n")
    assert "cached" not in run()
    assert "cached" in run()
    monkeypatch.setattr(resultcache, "python_version", lambda want: "Python 3.99.0")
    assert "cached" not in run()
    toml = tiny_project / "matrix.toml"
    toml.write_text(toml.read_text().replace("patches = false\n", 'patches = false\nsummary = "changed"\n', 1))
    assert "cached" not in run(mm=matrix.load(toml))

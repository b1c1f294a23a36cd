"""The same inputs give the same report: two real matrix runs over the same cells (builds reused, suites run
again) write byte-identical matrix.json and matrix.md once times are set aside (report.VOLATILE_KEYS: when,
how long, and whether a build was made or reused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisperx_matrix import matrix, matrix_run, report

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
CELLS = ["stable-cu128", "stable-cu130"]
CACHED_LINE = "cells answered from the results cache"  # the Markdown line a cached run adds


def _run(out: Path, *, use_cache: bool = False) -> tuple[str, str]:
    m = matrix.load(ROOT / "matrix.toml")
    result = matrix_run.run_matrix(m, m.select(CELLS), sm=120, jobs=2, use_cache=use_cache)
    report.write_report(result, out)
    data = json.loads((out / "matrix.json").read_text())
    md = (out / "matrix.md").read_text().replace(data["generated_at"], "<time>")
    return json.dumps(report.without_volatile(data), indent=2, sort_keys=True), md


def _without_cache_line(md: str) -> str:
    """The Markdown less the line that says how many cells came from the results cache (and the blank after it)."""
    lines = md.split("\n")
    at = next((i for i, ln in enumerate(lines) if CACHED_LINE in ln), None)
    if at is not None:
        del lines[at : at + 2]
    return "\n".join(lines)


def test_two_runs_write_identical_reports_apart_from_times(tmp_path: Path) -> None:
    """Two real runs of the same cells: the first is whatever real run of them this test session made first (the
    session starts from an empty results cache, so it is either a run made here or the full-matrix test's, stored
    under the same key), the second runs them again without reading the cache. Their reports must agree byte for
    byte apart from times and the cached line; then a cached answer must render as the run that made it."""
    first = _run(tmp_path / "a", use_cache=True)  # a real run of this session: made now, or earlier and stored
    second = _run(tmp_path / "b")  # real: the results cache is not read
    assert first[0] == second[0]
    assert _without_cache_line(first[1]) == second[1]
    data = json.loads(first[0])
    assert [c["id"] for c in data["cells"]] == CELLS and data["claims"]  # the comparison is over real content
    # the second real run stored its cells (--no-cache still writes): a cached run renders as that run did, the
    # line that says the cells came from the cache aside
    cached = _run(tmp_path / "c", use_cache=True)
    assert cached[0] == second[0]
    line = f"{len(CELLS)} of {len(CELLS)} {CACHED_LINE}"
    assert line in cached[1] and CACHED_LINE not in second[1]
    assert _without_cache_line(cached[1]) == second[1]

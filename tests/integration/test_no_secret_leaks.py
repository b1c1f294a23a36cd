"""Secrets never reach an output: the matrix and a benchmark run with a fake HF_TOKEN (and another *_TOKEN)
set, then every file they wrote is searched for the values. Reports say a token was present, never its value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
FAKE = {
    "HF_TOKEN": "hf_FAKEtokenDoNotLeak0123456789",
    "WXM_CI_TOKEN": "ci-FAKE-secret-42-abcdef",
    "AWS_SECRET_ACCESS_KEY": "aws-FAKE-key-0987654321",
}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | FAKE | {"PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "whisperx_matrix", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_no_token_in_any_output(tmp_path: Path) -> None:
    reports, bench = tmp_path / "reports", tmp_path / "bench"
    matrix = _run("matrix", "stable-cu128", "--out", str(reports), cwd=ROOT)
    assert matrix.returncode == 0, matrix.stderr[-2000:]
    audit = _run("bench", "audit", "--cell", "stable-cu128", "--results", str(bench), cwd=ROOT)
    assert audit.returncode == 0, audit.stderr[-2000:]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in written} >= {".json", ".md", ".html", ".png"}
    for path in written:
        data = path.read_bytes()
        for value in FAKE.values():
            assert value.encode() not in data, f"{value[:6]}... leaked into {path.name}"
    for stream in (matrix.stdout, matrix.stderr, audit.stdout, audit.stderr):
        assert not any(v in stream for v in FAKE.values())
    result = json.loads((reports / "matrix.json").read_text())
    assert result["machine"]["hf_token_present"] is True
    # The cell's own processes never saw the tokens: the cell suite records the names of its environment.
    [cell] = result["cells"]
    assert "PATH" in cell["env_names"] and "HF_HUB_OFFLINE" in cell["env_names"]
    assert not set(FAKE) & set(cell["env_names"]), set(FAKE) & set(cell["env_names"])

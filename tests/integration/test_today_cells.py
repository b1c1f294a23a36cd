"""What users install today (#23), end to end from the real default index: the two `latest` cells are resolved at
run time, built, audited, run their suite and are judged; each result keeps the lock it was built from, and that
lock rebuilds the same env (--lock-from). What they resolve to is today's index: the assertions name the facts
measured on 2026-12-01 (FACTS.md), so a new release on the index shows here first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisperx_matrix import build, lock, matrix, matrix_run

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    m = matrix.load(ROOT / "matrix.toml")
    out = matrix_run.run_matrix(m, m.select(["fresh-install", "pins-newest-torch"]), sm=120, jobs=2)
    saved = tmp_path_factory.mktemp("result") / "matrix.json"
    saved.write_text(json.dumps(out))
    again = build.resolve_and_build(m, m.get("fresh-install"), lock_from=saved)
    out["_rebuilt_state"] = again.state
    return out


def _cell(result: dict, cid: str) -> dict:
    return next(c for c in result["cells"] if c["id"] == cid)


def _locked(cell: dict) -> dict[str, str]:
    return {p.name: p.version for p in lock.read_pins(cell["lock"]["text"])}


def test_latest_cells_float_on_the_default_index_and_keep_their_lock(result: dict) -> None:
    for cid in ("fresh-install", "pins-newest-torch"):
        cell = _cell(result, cid)
        assert cell["verdict"] != "not-testable", cell["observed"]
        rec = cell["lock"]
        assert rec["floating"] is True and rec["channel"] == "latest" and rec["index"] is None
        assert rec["index_note"].startswith("the default package index")
        assert rec["sha256"] == lock.sha256_bytes(rec["text"].encode())
        header = lock.read_header_text(rec["text"])
        assert header is not None and header.cell == cid and header.inputs["index"] is None
        assert not (ROOT / "constraints" / f"{cid}.txt").exists()


def test_pip_install_whisperx_gives_the_working_stack(result: dict) -> None:
    cell = _cell(result, "fresh-install")
    assert cell["verdict"] == "as-expected", cell["observed"]
    assert {k: _locked(cell)[k] for k in ("whisperx", "torch", "pyannote-audio")} == {
        "whisperx": "3.8.6",
        "torch": "2.8.0",
        "pyannote-audio": "4.0.7",
    }


def test_pinning_the_newest_torch_quietly_trades_whisperx_down(result: dict) -> None:
    cell = _cell(result, "pins-newest-torch")
    assert cell["verdict"] == "failed-as-expected", cell["observed"]
    locked = _locked(cell)
    assert locked["torch"] == "2.15.0" and locked["whisperx"] == "3.7.2" and locked["pyannote-audio"] == "3.4.0"
    assert "AttributeError:torchaudio.AudioMetaData" in cell["observed"]["reasons"]
    assert any("has no attribute 'AudioMetaData'" in e for e in cell["evidence"])


def test_the_kept_lock_rebuilds_the_same_env(result: dict) -> None:
    assert result["_rebuilt_state"] in ("up-to-date", "relinked")

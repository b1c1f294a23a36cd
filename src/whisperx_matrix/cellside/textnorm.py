"""The one text normaliser behind every WER here: lower case, anything but letters, digits and apostrophes out.

Stdlib only: the scripts that import it (selftest.py, bench_transcribe.py, the cell suite) run in a cell's own
python, which has no whisperx_matrix; they find this file beside them on sys.path."""

from __future__ import annotations

import re

_NOT_A_WORD = re.compile(r"[^a-z0-9' ]+")


def words(text: str) -> list[str]:
    return _NOT_A_WORD.sub(" ", text.lower()).split()


def normalise(text: str) -> str:
    """``"Hello, World!"`` -> ``"hello world"``."""
    return " ".join(words(text))

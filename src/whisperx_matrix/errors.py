"""One error hierarchy for every user-facing failure.

Each class has its own exit code. Messages are one line of cause plus a way out (``hint``);
``cli.main`` is the only place that catches them, so a user mistake never shows a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FatalError(Exception):
    """A failure the user can act on. ``str()`` is the cause; ``hint`` says what to do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(FatalError):
    """matrix.toml (or a claims/patch manifest) is malformed."""

    exit_code = 2


class UnknownCellError(FatalError):
    """A selector matched no cell."""

    exit_code = 3


class LockError(FatalError):
    """A lock is missing, stale, or could not be generated."""

    exit_code = 4


class BuildError(FatalError):
    """A cell venv could not be built (the previous good env is kept). ``infra`` names a cause that is the
    machine's (network, disk), not the stack's: the matrix then records the cell as not testable."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None, infra: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.infra = infra


class NetworkError(FatalError):
    """A package index could not be reached."""

    exit_code = 6


class PatchError(FatalError):
    """A patch series is malformed or does not apply."""

    exit_code = 7


class ToolMissingError(FatalError):
    """A required external program (uv, ffmpeg, espeak-ng, patch) is absent."""

    exit_code = 8


class SelfTestError(FatalError):
    """A built cell failed its own self-test (imports or transcription). ``record`` holds its data."""

    exit_code = 9

    def __init__(self, message: str, *, hint: str | None = None, record: dict | None = None) -> None:
        super().__init__(message, hint=hint)
        self.record = record or {}


class UnexpectedOutcomeError(FatalError):
    """The matrix observed an outcome its expectations do not allow (the report is still written)."""

    exit_code = 11


class FiguresError(FatalError):
    """A results file lacks a field a README figure needs, or a README's figure blocks are missing or out of date."""

    exit_code = 12


class NotBuiltError(FatalError):
    """A command needs a cell venv that has not been built."""

    exit_code = 10


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A short suggestion suffix for a typo, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""

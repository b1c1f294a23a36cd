"""The project's TOML files (matrix.toml, patches/series.toml, claims.toml): read them, check the ids of their
``[[table]]`` entries, and name the file line of a field so that errors point at it."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, FatalError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ID_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def read_toml(path: Path, *, error: type[FatalError] = ConfigError, missing_hint: str) -> tuple[dict[str, Any], str]:
    """A TOML file's data and text (the text lets errors name lines), or ``error`` with a one-line cause."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}", hint=missing_hint) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path.name}: not valid TOML: {exc}", hint="fix the syntax at that line") from None


class TomlLocator:
    """Finds the line of a field inside one entry of an array of tables (``[[cells]]``, ``[[patch]]``), found by
    its ``id``. Best effort: the text is scanned, not parsed; a field it cannot find gives the entry's first line."""

    def __init__(self, text: str, table: str) -> None:
        self.lines = text.splitlines()
        self.header = f"[[{table}]]"

    def line(self, entry_id: object | None, key: str | None = None) -> int:
        """1-based line of ``key`` in the entry whose id is ``entry_id`` (None: a top-level key)."""
        start = 0
        if entry_id is not None:
            id_re = re.compile(rf"^\s*id\s*=\s*([\"']?){re.escape(str(entry_id))}\1\s*(#.*)?$")
            for i, line in enumerate(self.lines):
                if id_re.match(line):
                    start = i
                    break
            # An entry begins at the nearest table header above its id line.
            for i in range(start, -1, -1):
                if self.lines[i].strip() == self.header:
                    start = i
                    break
        if key is not None:
            key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
            for i in range(start, len(self.lines)):
                if i > start and self.lines[i].strip().startswith("[") and entry_id is not None:
                    break  # the next table: the key is not in this entry
                if key_re.match(self.lines[i]):
                    return i + 1
        return start + 1


Fail = Callable[..., FatalError]  # fail(message, entry_id, key) -> the error to raise


def entry_id(raw: Mapping[str, Any], *, what: str, fields: Collection[str], seen: Collection[str], fail: Fail) -> str:
    """The id of one ``[[table]]`` entry, checked: well formed, not used before, and no unknown field beside it."""
    found = raw.get("id")
    if not isinstance(found, str) or not ID_RE.match(found):
        raise fail(f"{what} id {found!r} must be lowercase letters, digits, '.' and '-'", found, "id")
    if found in seen:
        raise fail(f"duplicate {what} id {found!r}", found, "id")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise fail(
            f"unknown field {unknown[0]!r} in {what} {found!r}{did_you_mean(unknown[0], fields)}", found, unknown[0]
        )
    return found

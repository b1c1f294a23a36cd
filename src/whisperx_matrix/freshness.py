"""How fresh a matrix run is: per key package, the newest release the run judged beside the newest on the index
when the run was made, and which packages the matrix is behind on.

Read once per run (the index is an input of the report, like the locks), through the watch's reader (pip's own
index client: the default index or PIP_INDEX_URL; no host here). pip gives no upload dates, so the record says
when the index was read instead. An unreachable index is recorded as such, never a failure of the run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import releases
from .errors import FatalError
from .lock import read_pins

# The packages whose freshness the report states: the torch family and the engines under WhisperX.
KEY_PACKAGES = releases.WATCHED


def _v(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def judged_versions(cell: Mapping[str, Any], root: Path | None) -> dict[str, str]:
    """Every version a cell was judged with: what its self-test recorded, and its lock's pins (a floating cell
    keeps its resolved lock's text; a stable cell names its committed lock file under ``root``)."""
    lock = cell.get("lock") or {}
    text = lock.get("text") or ""
    if not text and lock.get("file") and root is not None:
        try:
            text = (root / str(lock["file"])).read_text(encoding="utf-8")
        except OSError:
            text = ""
    pins = {str(pin.name): pin.version for pin in read_pins(text)} if text else {}
    return pins | {canonicalize_name(k): str(v) for k, v in (cell.get("versions") or {}).items() if v}


def newest_judged(held: Mapping[str, Mapping[str, str]], name: str) -> tuple[str, str] | None:
    """(version, cell) of the newest ``name`` any judged cell held (``held``: cell id -> judged_versions)."""
    best: tuple[Version, str, str] | None = None
    for cell, versions in held.items():
        text = versions.get(canonicalize_name(name))
        v = _v(text) if text else None
        if v is not None and text and (best is None or (v, cell) > best[:2]):
            best = (v, cell, text)
    return (best[2], best[1]) if best else None


def newest_release(versions: Sequence[str]) -> str | None:
    """The newest final release among ``versions`` (no pre-release, no local build such as ``2.13.0+cpu``)."""
    finals = [v for t in versions if (v := _v(t)) is not None and not v.is_prerelease and not v.local]
    return str(max(finals)) if finals else None


def collect(names: Sequence[str] = KEY_PACKAGES, *, run: releases.Runner | None = None) -> dict[str, Any]:
    """What the index has now: the newest final release of each key package, and the day it was read.
    ``{"error": ...}`` where the index could not be read (never a failure of the run)."""
    checked = time.strftime("%Y-%m-%d")
    try:
        index = {name: newest_release(releases.pip_versions(name, run=run) or []) for name in names}
    except FatalError as exc:  # a network or tool failure: the report says freshness is unknown, and why
        return {"checked": checked, "error": str(exc).splitlines()[0], "dates": releases.DATE_NOTE}
    return {"checked": checked, "index": index, "dates": releases.DATE_NOTE}


def judge(cells: Sequence[Mapping[str, Any]], record: Mapping[str, Any], root: Path | None) -> dict[str, Any]:
    """The freshness record with, per package, the newest release these cells judged beside the index's, and the
    packages the matrix is behind on. Judged again on a merge's cells (the index part is kept as read)."""
    out = {k: v for k, v in record.items() if k not in ("packages", "behind")}
    if record.get("error") or not isinstance(record.get("index"), Mapping):
        return out
    held = {str(c.get("id")): judged_versions(c, root) for c in cells}  # each cell's lock read once
    packages: dict[str, Any] = {}
    for name, index in record["index"].items():
        judged = newest_judged(held, name)
        packages[name] = {
            "judged": judged[0] if judged else None,
            "judged_in": judged[1] if judged else None,
            "index": index,
            "behind": bool(index and judged and (_v(index) or Version("0")) > (_v(judged[0]) or Version("0"))),
        }
    return out | {"packages": packages, "behind": [n for n, p in packages.items() if p["behind"]]}


def lines(record: Mapping[str, Any] | None) -> list[str]:
    """The report header's freshness lines, plain text."""
    if not record:
        return []
    if record.get("error"):
        return [f"Freshness unknown: the index could not be read on {record.get('checked')} ({record['error']})."]
    pkgs = record.get("packages") or {}
    behind = record.get("behind") or []
    head = (
        f"The matrix is behind the index (read {record.get('checked')}) on {len(behind)} of {len(pkgs)} key "
        f"packages: {', '.join(behind)}."
        if behind
        else f"The matrix judges the newest release of each key package on the index (read {record.get('checked')})."
    )
    rows = [
        f"{name}: newest judged {p.get('judged') or 'none'}"
        + (f" ({p['judged_in']})" if p.get("judged_in") else "")
        + f"; newest on the index {p.get('index') or 'not found'}"
        + (" (behind)" if p.get("behind") else "")
        for name, p in sorted(pkgs.items())  # by name: a report re-rendered from its JSON (keys sorted) reads the same
    ]
    return [head, *rows, f"Release dates: {record.get('dates')}."]

"""How fresh a matrix run is: per key package, the newest release the run judged beside the newest on the index
when the run was made, and which packages the matrix is behind on.

Read once per run (the index is an input of the report, like the locks), through the watch's reader (pip's own
index client: the default index or PIP_INDEX_URL; no host here). pip gives no upload dates, so the record says
when the index was read instead. An unreachable index is recorded as such, never a failure of the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from packaging.version import InvalidVersion, Version

from . import releases
from .errors import FatalError

# The packages whose freshness the report states: the torch family and the engines under WhisperX.
KEY_PACKAGES = releases.WATCHED


def _v(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def newest_judged(cells: Iterable[Mapping[str, Any]], name: str) -> tuple[str, str] | None:
    """(version, cell) of the newest ``name`` any judged cell held (floating cells at what they floated to)."""
    best: tuple[Version, str, str] | None = None
    for cell in cells:
        text = (cell.get("versions") or {}).get(name)
        v = _v(str(text)) if text else None
        if v is not None and (best is None or (v, str(cell.get("id"))) > best[:2]):
            best = (v, str(cell.get("id")), str(text))
    return (best[2], best[1]) if best else None


def newest_release(versions: Sequence[str]) -> str | None:
    """The newest final release among ``versions`` (no pre-release, no local build such as ``2.13.0+cpu``)."""
    finals = [v for t in versions if (v := _v(t)) is not None and not v.is_prerelease and not v.local]
    return str(max(finals)) if finals else None


def collect(
    cells: Sequence[Mapping[str, Any]], *, names: Sequence[str] = KEY_PACKAGES, run: releases.Runner | None = None
) -> dict[str, Any]:
    """The freshness record of a run: per package the newest judged (with its cell) and the newest on the
    index, and the packages the matrix is behind on. ``{"error": ...}`` where the index could not be read."""
    checked = time.strftime("%Y-%m-%d")
    packages: dict[str, Any] = {}
    try:
        for name in names:
            judged = newest_judged(cells, name)
            found = releases.pip_versions(name, run=run)
            index = newest_release(found or [])
            packages[name] = {
                "judged": judged[0] if judged else None,
                "judged_in": judged[1] if judged else None,
                "index": index,
                "behind": bool(index and judged and (_v(index) or Version("0")) > (_v(judged[0]) or Version("0"))),
            }
    except FatalError as exc:  # a network or tool failure: the report says freshness is unknown, and why
        return {"checked": checked, "error": str(exc).splitlines()[0], "dates": releases.DATE_NOTE}
    return {
        "checked": checked,
        "packages": packages,
        "behind": [n for n, p in packages.items() if p["behind"]],
        "dates": releases.DATE_NOTE,
    }


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
        for name, p in pkgs.items()
    ]
    return [head, *rows, f"Release dates: {record.get('dates')}."]

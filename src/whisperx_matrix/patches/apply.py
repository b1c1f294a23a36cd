"""Applying the series to a built cell's site-packages, and reverting it: all or nothing.

1. decide per patch: apply, or skip with a reason ("not needed: fixed upstream in 3.8.0", "not applicable");
2. stage: patch copies of the files first (gnupatch.stage), so a failed hunk stops everything, naming file
   and hunk, before site-packages is touched;
3. only then write the staged files, their RECORD lines and the patch record through ``record.commit``.
Revert checks the after-hashes and runs the recorded diffs backwards, through the same writer.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..errors import PatchError
from .gnupatch import run_patch, stage
from .manifest import Outcome, Series, in_series_order, plan
from .record import (
    AppliedPatch,
    FileChange,
    PatchRecord,
    commit,
    installed_versions,
    record_line,
    record_rows,
    sha256_hex,
    verify_after,
)


@dataclass(frozen=True)
class ApplyResult:
    whisperx_version: str
    outcomes: tuple[Outcome, ...]
    changed: bool  # did site-packages change

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.outcomes if o.action in ("applied", "already-applied"))

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return tuple((o.id, o.reason) for o in self.outcomes if o.action == "skipped")

    @property
    def summary(self) -> str:
        lines = []
        for o in self.outcomes:
            if o.action == "applied":
                lines.append(f"applied {o.id}" + (f" ({o.reason})" if o.reason else ""))
            elif o.action == "already-applied":
                lines.append(f"already applied {o.id}: nothing to do")
            else:
                lines.append(f"{o.id}: {o.reason}")
        if not lines:
            lines.append("the series is empty: nothing to do")
        head = f"whisperx {self.whisperx_version}: " + ("patched" if self.changed else "unchanged")
        return "\n".join([head, *("  " + ln for ln in lines)])


@dataclass(frozen=True)
class RevertResult:
    reverted: tuple[str, ...]
    changed: bool

    @property
    def summary(self) -> str:
        if not self.changed:
            return "no patches recorded in this env: nothing to revert"
        return "reverted " + ", ".join(self.reverted) + " (files restored byte for byte)"


def _check_version(site_packages: Path, whisperx_version: str, installed: Mapping[str, str]) -> str:
    try:
        wanted = Version(whisperx_version)
    except InvalidVersion:
        raise PatchError(f"{whisperx_version!r} is not a WhisperX version", hint="pass a version like 3.7.6") from None
    have = installed.get("whisperx")
    if have is None:
        raise PatchError(
            f"no whisperx-*.dist-info in {site_packages}",
            hint="point at a cell's site-packages with WhisperX installed",
        )
    if Version(have) != wanted:
        raise PatchError(
            f"{site_packages} holds whisperx {have}, not {wanted}",
            hint="rebuild the cell from its lock, or pass the installed version",
        )
    return str(wanted)


def apply_series(
    series: Series, site_packages: Path, whisperx_version: str, opted: Collection[str] = ()
) -> ApplyResult:
    """Apply every patch that fits ``whisperx_version`` to ``site_packages`` (opt-in ones only when in ``opted``):
    all of them, or none."""
    site_packages = Path(site_packages)
    installed = installed_versions(site_packages)
    version = _check_version(site_packages, whisperx_version, installed)
    todo, skipped = plan(series, version, installed, opted)

    record = PatchRecord.read(site_packages)
    if record is not None:
        if [(p.id, p.sha256) for p in record.patches] == [(p.id, p.sha256) for p in todo]:
            verify_after(site_packages, record, action="apply")
            outcomes = [Outcome(p.id, "already-applied") for p in todo] + skipped
            return ApplyResult(version, in_series_order(series, outcomes), changed=False)
        raise PatchError(
            f"{site_packages} already holds another patch set ({', '.join(p.id for p in record.patches)}) "
            "than the series gives now; nothing was changed",
            hint="revert it first: python -m whisperx_matrix patches revert ... (or rebuild the cell)",
        )
    if not todo:
        return ApplyResult(version, tuple(skipped), changed=False)

    with tempfile.TemporaryDirectory(prefix="wxm-patch-") as tmp:
        notes = stage(todo, site_packages, Path(tmp))
        rels = sorted({f.path for p in todo for f in p.files})
        originals = {rel: (site_packages / rel).read_bytes() for rel in rels}
        results = {rel: (Path(tmp) / rel).read_bytes() for rel in rels}
    rows = record_rows(site_packages, rels)
    new_record = PatchRecord(
        whisperx_version=version,
        series_fingerprint=series.fingerprint(),
        patches=tuple(
            AppliedPatch(
                p.id, p.sha256, p.text, p.strip, p.fuzz, tuple(f.path for f in p.files), tuple(notes.get(p.id, ()))
            )
            for p in todo
        ),
        files=tuple(
            FileChange(rel, sha256_hex(originals[rel]), sha256_hex(results[rel]), rows.get(rel, (None, None))[1])
            for rel in rels
        ),
    )
    # Each patched file's RECORD line gets its new hash and size.
    by_record: dict[Path, dict[str, str]] = {}
    for rel, (record_file, line) in rows.items():
        by_record.setdefault(record_file, {})[line] = record_line(rel, results[rel])
    commit(site_packages, originals, results, by_record, new_record)
    outcomes = [Outcome(p.id, "applied", "; ".join(notes.get(p.id, ()))) for p in todo] + skipped
    return ApplyResult(version, in_series_order(series, outcomes), changed=True)


def revert_series(site_packages: Path) -> RevertResult:
    """Undo what the record says was applied, after checking each file still has its after-hash.
    Needs no series: the record holds the diffs as they were applied."""
    site_packages = Path(site_packages)
    record = PatchRecord.read(site_packages)
    if record is None:
        return RevertResult((), changed=False)
    verify_after(site_packages, record, action="revert")
    rels = [c.path for c in record.files]
    with tempfile.TemporaryDirectory(prefix="wxm-revert-") as tmp:
        staging = Path(tmp)
        for rel in rels:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(site_packages / rel, staging / rel)
        for applied in reversed(record.patches):
            run = run_patch(applied.text, staging, strip=applied.strip, fuzz=applied.fuzz, reverse=True)
            if not run.ok:
                raise PatchError(
                    f"cannot revert {applied.id}: {run.output.splitlines()[-1] if run.output else 'GNU patch failed'}; nothing was changed",
                    hint="rebuild the cell",
                )
        restored = {rel: (staging / rel).read_bytes() for rel in rels}
    for change in record.files:
        if sha256_hex(restored[change.path]) != change.before:
            raise PatchError(
                f"cannot revert: {change.path} would not come back byte for byte; nothing was changed",
                hint="rebuild the cell",
            )
    current = {rel: (site_packages / rel).read_bytes() for rel in rels}
    # Each RECORD line goes back to exactly what it was (the lines now hold the after-hashes).
    rows = record_rows(site_packages, rels)
    by_record: dict[Path, dict[str, str]] = {}
    for change in record.files:
        if change.path in rows and change.record_line is not None:
            record_file, line = rows[change.path]
            by_record.setdefault(record_file, {})[line] = change.record_line
    commit(site_packages, current, restored, by_record, None)
    return RevertResult(tuple(p.id for p in record.patches), changed=True)

"""What a patched env holds, and the one writer that changes it.

Each patched file's line in ``*.dist-info/RECORD`` is rewritten with its new hash and size (so ``pip check``
and uninstall still work), and ``<site-packages>/whisperx_matrix_patches.json`` keeps the record: patch id, the
diff text, each file's sha256 before and after and its RECORD line before. ``commit`` writes all of it or
nothing; ``status`` compares the record with the files.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import PatchError
from ..fsutil import atomic_write_bytes
from .manifest import SCHEMA, Outcome, Series, in_series_order, plan

RECORD_FILE = "whisperx_matrix_patches.json"


def installed_versions(site_packages: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution installed in ``site_packages`` (their METADATA)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(site_packages)]):
        name = dist.metadata["Name"]
        if name:  # a dist-info without METADATA is no distribution
            found[canonicalize_name(name)] = dist.version
    return found


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_rows(site_packages: Path, rel_paths: Iterable[str]) -> dict[str, tuple[Path, str]]:
    """For each relative path, the RECORD file that lists it and its line there (as written)."""
    wanted = set(rel_paths)
    rows: dict[str, tuple[Path, str]] = {}
    for record in sorted(site_packages.glob("*.dist-info/RECORD")):
        for line in record.read_text(encoding="utf-8").splitlines():
            row = next(csv.reader([line]), [])
            if row and row[0] in wanted and row[0] not in rows:
                rows[row[0]] = (record, line)
    return rows


def _replace_lines(text: str, replacements: Mapping[str, str]) -> str:
    """A RECORD file's text with whole lines replaced (old -> new), every other line left as it was."""
    out = []
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        out.append(replacements[bare] + line[len(bare) :] if bare in replacements else line)
    return "".join(out)


def record_line(rel: str, data: bytes) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([rel, _record_hash(data), len(data)])
    return buf.getvalue()


def _drop_pycache(site_packages: Path, rel: str) -> None:
    """Delete the module's cached bytecode. Not left to mtime checks: a patch can keep the size, an mtime can
    tie within its resolution, and unchecked-hash .pyc files are never revalidated at all."""
    module = site_packages / rel
    for pyc in (module.parent / "__pycache__").glob(f"{module.stem}.*.pyc"):
        pyc.unlink(missing_ok=True)


# --- the record in the env -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    path: str
    before: str  # sha256 hex of the file before the series
    after: str
    record_line: str | None = None  # the RECORD line before, restored on revert


@dataclass(frozen=True)
class AppliedPatch:
    id: str
    sha256: str
    text: str  # the diff as applied: revert runs it backwards, whatever patches/ holds by then
    strip: int
    fuzz: int
    files: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PatchRecord:
    whisperx_version: str
    series_fingerprint: str
    patches: tuple[AppliedPatch, ...]
    files: tuple[FileChange, ...]

    def to_json(self) -> str:
        data = {
            "schema": SCHEMA,
            "tool": "whisperx-matrix",
            "whisperx_version": self.whisperx_version,
            "series_fingerprint": self.series_fingerprint,
            "patches": [
                {
                    "id": p.id,
                    "sha256": p.sha256,
                    "strip": p.strip,
                    "fuzz": p.fuzz,
                    "files": list(p.files),
                    "notes": list(p.notes),
                    "text": p.text,
                }
                for p in self.patches
            ],
            "files": [
                {"path": f.path, "before": f.before, "after": f.after, "record_line": f.record_line} for f in self.files
            ],
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def read(cls, site_packages: Path) -> PatchRecord | None:
        path = site_packages / RECORD_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                whisperx_version=data["whisperx_version"],
                series_fingerprint=data["series_fingerprint"],
                patches=tuple(
                    AppliedPatch(
                        p["id"], p["sha256"], p["text"], p["strip"], p["fuzz"], tuple(p["files"]), tuple(p["notes"])
                    )
                    for p in data["patches"]
                ),
                files=tuple(
                    FileChange(f["path"], f["before"], f["after"], f.get("record_line")) for f in data["files"]
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PatchError(
                f"{path}: unreadable patch record ({exc.__class__.__name__}: {exc})",
                hint="rebuild the cell (its files can no longer be verified)",
            ) from None


# --- the one writer ------------------------------------------------------------------------------------


def commit(
    site_packages: Path,
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
    record_lines: Mapping[Path, Mapping[str, str]],
    record: PatchRecord | None,
) -> None:
    """The one writer of apply and revert, all or nothing: ``new`` over the files, then the RECORD line
    replacements (per RECORD file: old line -> new line), then the patch record (``None``: delete it). Each
    write is atomic; on any failure every one already done is undone (files get ``old`` back). Last, the
    files' stale bytecode goes."""
    site = Path(site_packages)
    before: dict[Path, bytes | None] = {site / rel: old[rel] for rel in new}
    after: dict[Path, bytes | None] = {site / rel: data for rel, data in new.items()}
    for record_file, replacements in record_lines.items():
        text = record_file.read_text(encoding="utf-8")
        before[record_file] = text.encode("utf-8")
        after[record_file] = _replace_lines(text, replacements).encode("utf-8")
    kept = site / RECORD_FILE
    before[kept] = kept.read_bytes() if kept.exists() else None
    after[kept] = record.to_json().encode("utf-8") if record is not None else None
    done: list[Path] = []
    try:
        for path, data in after.items():
            _put(path, data)
            done.append(path)
    except BaseException:
        for path in reversed(done):
            _put(path, before[path])
        raise
    for rel in new:
        _drop_pycache(site, rel)


def _put(path: Path, data: bytes | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_bytes(path, data)


# --- status ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    path: str
    state: str  # "patched" (matches the after-hash), "original", "modified", "missing"


@dataclass(frozen=True)
class Status:
    site_packages: Path
    record: PatchRecord | None
    files: tuple[FileState, ...]
    pending: tuple[Outcome, ...] = ()  # what apply would do now (when a series was given)

    @property
    def intact(self) -> bool:
        return all(f.state == "patched" for f in self.files)

    @property
    def summary(self) -> str:
        if self.record is None:
            lines = ["no patches applied in this env"]
        else:
            lines = [
                f"applied to whisperx {self.record.whisperx_version}: " + ", ".join(p.id for p in self.record.patches)
            ]
            lines += [f"  {f.path}: {f.state}" for f in self.files]
        for o in self.pending:
            lines.append(
                f"  {o.id}: "
                + ({"applied": "would be applied", "already-applied": "applied"}.get(o.action, o.reason or o.action))
            )
        return "\n".join(lines)


def file_state(site_packages: Path, change: FileChange) -> str:
    path = site_packages / change.path
    if not path.is_file():
        return "missing"
    digest = sha256_hex(path.read_bytes())
    if digest == change.after:
        return "patched"
    return "original" if digest == change.before else "modified"


def verify_after(site_packages: Path, record: PatchRecord, *, action: str) -> None:
    bad = [(c.path, file_state(site_packages, c)) for c in record.files]
    bad = [(p, s) for p, s in bad if s != "patched"]
    if bad:
        listing = ", ".join(f"{p} ({s})" for p, s in bad)
        raise PatchError(
            f"cannot {action}: {listing} changed since the patches were applied; nothing was changed",
            hint="rebuild the cell (its files no longer match the record in " + RECORD_FILE + ")",
        )


def status(
    series: Series | None, site_packages: Path, whisperx_version: str | None = None, opted: Collection[str] = ()
) -> Status:
    """What the record says, checked against the files; with a series, also what apply would do."""
    site_packages = Path(site_packages)
    record = PatchRecord.read(site_packages)
    files = tuple(FileState(c.path, file_state(site_packages, c)) for c in record.files) if record else ()
    pending: tuple[Outcome, ...] = ()
    if series is not None:
        installed = installed_versions(site_packages)
        version = whisperx_version or installed.get("whisperx")
        if version is not None:
            todo, skipped = plan(series, version, installed, opted)
            recorded = {p.id for p in record.patches} if record else set()
            pending = in_series_order(
                series, [Outcome(p.id, "already-applied" if p.id in recorded else "applied") for p in todo] + skipped
            )
    return Status(site_packages, record, files, pending)

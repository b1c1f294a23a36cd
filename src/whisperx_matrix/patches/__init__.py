"""The patches/ series: versioned unified diffs for an installed WhisperX, applied all or nothing.

A patch names the WhisperX versions it fits, what it fixes, and the upstream release that made it
unnecessary. One module per stage:

- ``manifest``: patches/series.toml, validated; which patches a release and env take (``plan``);
- ``diff``: the .patch files' structure, checked at load time;
- ``gnupatch``: GNU patch, run and read; ``stage``, the dry run on copies that every change starts with;
- ``apply``: apply and revert;
- ``record``: what a patched env holds (its RECORD lines, whisperx_matrix_patches.json), its status, and
  ``commit``, the one writer that changes it, all or nothing;
- ``releases``: the series checked over every WhisperX release in its range, from the real wheels;
- ``cli``: ``python -m whisperx_matrix patches ...``.

The names below are the package's interface (build.py and the tests use them).
"""

from __future__ import annotations

from .apply import ApplyResult, RevertResult, apply_series, revert_series
from .cli import register
from .diff import FileDiff, Hunk, parse_diff
from .gnupatch import HunkProblem, patch_bin, stage
from .manifest import MANIFEST, OPT_IN_OFF, SCHEMA, Outcome, Patch, Series, default_patches_dir, load_series, plan
from .record import (
    RECORD_FILE,
    AppliedPatch,
    FileChange,
    FileState,
    PatchRecord,
    Status,
    installed_versions,
    status,
)
from .releases import CheckRow, check_series, extract_wheel, format_table, release_versions, wheel_for

__all__ = [
    "MANIFEST",
    "OPT_IN_OFF",
    "RECORD_FILE",
    "SCHEMA",
    "AppliedPatch",
    "ApplyResult",
    "CheckRow",
    "FileChange",
    "FileDiff",
    "FileState",
    "Hunk",
    "HunkProblem",
    "Outcome",
    "Patch",
    "PatchRecord",
    "RevertResult",
    "Series",
    "Status",
    "apply_series",
    "check_series",
    "default_patches_dir",
    "extract_wheel",
    "format_table",
    "installed_versions",
    "load_series",
    "parse_diff",
    "patch_bin",
    "plan",
    "register",
    "release_versions",
    "revert_series",
    "stage",
    "status",
    "wheel_for",
]

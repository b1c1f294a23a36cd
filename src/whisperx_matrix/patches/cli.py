"""``python -m whisperx_matrix patches apply|revert|status|check``: the series on a cell, or over releases."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from packaging.version import Version

from .. import matrix as matrix_mod
from .. import paths
from ..errors import NotBuiltError, PatchError
from .apply import apply_series, revert_series
from .manifest import Series, default_patches_dir, load_series
from .record import installed_versions, status
from .releases import check_series, format_table, release_versions


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


def _target(args: argparse.Namespace) -> tuple[Path, str | None, bool, tuple[str, ...]]:
    """(site-packages, the cell's pinned whisperx or None, does the cell take patches, its opt-in patches)."""
    if args.site_packages is not None:
        sp = Path(args.site_packages)
        if not sp.is_dir():
            raise NotBuiltError(f"{sp} is not a folder", hint="pass a venv's lib/python3.X/site-packages")
        return sp, None, True, ()
    m = matrix_mod.load()
    cell = m.get(args.cell)
    env = paths.envs_dir(m.root) / cell.id
    if not env.exists():
        raise NotBuiltError(
            f"cell {cell.id} is not built ({env} does not exist)", hint=f"build it: nox -s env-{cell.id}"
        )
    try:
        sp = paths.site_packages(env)
    except FileNotFoundError:
        raise NotBuiltError(
            f"cell {cell.id}: no site-packages under {env}", hint=f"rebuild it: nox -s env-{cell.id}"
        ) from None
    return sp, cell.pins.get("whisperx"), cell.patches, cell.opt_in_patches  # a latest cell may float whisperx


def _series(args: argparse.Namespace) -> Series:
    return load_series(args.patches_dir or default_patches_dir())


def _cmd_env(args: argparse.Namespace) -> int:
    sp, pinned, takes_patches, opted = _target(args)
    if args.action == "revert":
        print(revert_series(sp).summary)
        return 0
    series = _series(args)
    if args.action == "status":
        st = status(series, sp, opted=opted)
        print(st.summary)
        return 0 if st.record is None or st.intact else 1
    if not takes_patches:
        print(f"cell {args.cell} is built without patches (patches = false in matrix.toml): nothing done")
        return 0
    version = installed_versions(sp).get("whisperx") or pinned
    if version is None:
        raise PatchError(f"no whisperx-*.dist-info in {sp}", hint="point at a site-packages with WhisperX installed")
    if pinned is not None and Version(version) != Version(pinned):
        raise PatchError(
            f"cell {args.cell} pins whisperx {pinned} but has {version} installed",
            hint=f"rebuild it: nox -s env-{args.cell}",
        )
    series.check_opted(opted, f"cell {args.cell}: opt_in_patches", whisperx_version=version)
    print(apply_series(series, sp, version, opted).summary)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    series = _series(args)
    versions = list(args.versions or release_versions())
    if not args.versions:
        # The releases the matrix pins are checked too, yanked or not (pip index hides yanked ones: 3.7.3).
        # A broken or missing matrix.toml stops here with its error: --versions checks without it.
        versions += [c.pins["whisperx"] for c in matrix_mod.load().cells if "whisperx" in c.pins]
    rows = check_series(series, versions)
    print(format_table(series, rows))
    for i, patch in enumerate(series.patches):
        ok = sorted((r.version for r in rows if r.cells[i].startswith("applies")), key=Version)
        print(f"{patch.id}: applies to {len(ok)} release(s) in {patch.applies_to}: {', '.join(ok) or 'none'}")
    return 1 if any(r.failed for r in rows) else 0

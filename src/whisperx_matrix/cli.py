"""``python -m whisperx_matrix <command>``: the one place where FatalError becomes an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import FatalError

# Command -> the module whose register(subparsers) defines it. Only the module of the command being run is
# imported, so `build` works with nox's bare Python (packaging, uv and rich) while `audit` needs pyelftools.
COMMANDS = {
    "list": "whisperx_matrix.cells_cli",
    "lock": "whisperx_matrix.lock",
    "build": "whisperx_matrix.build",
    "preflight": "whisperx_matrix.preflight",
    "matrix": "whisperx_matrix.matrix_run",
    "probe": "whisperx_matrix.matrix_run",
    "bench": "whisperx_matrix.bench",
    "patches": "whisperx_matrix.patches",
    "audit": "whisperx_matrix.audit",
    "doctor": "whisperx_matrix.doctor",
    "wheelhouse": "whisperx_matrix.wheelhouse",
    "gpu-bundle": "whisperx_matrix.gpubundle",
    "report": "whisperx_matrix.report",
    "figures": "whisperx_matrix.figures",
    "disk": "whisperx_matrix.diskuse",
    "watch": "whisperx_matrix.watch",
    "cache": "whisperx_matrix.cache_cli",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def add_selectors(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The CELL arguments every command that works on cells takes."""
    p.add_argument(
        "selectors",
        nargs="+" if required else "*",
        metavar="CELL",
        help="cell ids, aliases or globs (e.g. 'stable-*', '*-cu130', 'stable-cu{128,130}')",
    )


def _chosen(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisperx-matrix", description="A tested build matrix for WhisperX on NVIDIA GPUs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    modules = [COMMANDS[chosen]] if chosen in COMMANDS else list(COMMAND_MODULES)
    for name in modules:
        try:
            importlib.import_module(name).register(sub)
        except ImportError as exc:  # listing every command must not fail for one missing dependency
            if len(modules) == 1:
                raise
            for cmd in (c for c, m in COMMANDS.items() if m == name):
                sub.add_parser(cmd, help=f"(unavailable here: {exc}; pip install -e . installs it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
    except ImportError as exc:
        print(
            f"error: {_chosen(argv)} needs a package that is not installed: {exc}\n"
            f"  hint: run it through nox (nox -s {_chosen(argv)}), or pip install -e . first",
            file=sys.stderr,
        )
        return 8
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FatalError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing half-built was put in place", file=sys.stderr)
        return 130

"""``python -m whisperx_matrix <command>``: the one place where FatalError becomes an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import FatalError

# Each module defines register(subparsers) and sets `func` on its parser(s).
COMMAND_MODULES = (
    "whisperx_matrix.commands",
    "whisperx_matrix.run",
    "whisperx_matrix.bench",
    "whisperx_matrix.patches",
    "whisperx_matrix.audit",
    "whisperx_matrix.doctor",
    "whisperx_matrix.wheelhouse",
    "whisperx_matrix.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisperx-matrix", description="A tested build matrix for WhisperX on NVIDIA GPUs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FatalError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing half-built was put in place", file=sys.stderr)
        return 130

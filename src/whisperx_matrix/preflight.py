"""`python -m whisperx_matrix preflight WORK`: every system program a kind of work needs, checked at once before
anything is downloaded. Above tools and speech (it asks speech whether the test speech is already cached)."""

from __future__ import annotations

import argparse
import sys

from . import speech
from .tools import SYSTEM_PROGRAMS, install_line, preflight


def check_system(work: str) -> None:
    """All the system programs ``work`` needs, checked before anything is downloaded (preflight)."""
    for program in preflight(work, satisfied={"espeak-ng": speech.selftest_speech_cached()}):
        print(
            f"warning: {program} not found ({SYSTEM_PROGRAMS[program][1]}); "
            f"{install_line([program])} to run that test too",
            file=sys.stderr,
            flush=True,
        )


def cmd_preflight(args: argparse.Namespace) -> int:
    check_system(args.work)
    print(f"preflight {args.work}: every system program it needs is here")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check every system program a kind of work needs, at once")
    p.add_argument("work", choices=("build", "matrix", "bench", "tests"))
    p.set_defaults(func=cmd_preflight)

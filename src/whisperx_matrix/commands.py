"""The foundation's commands: list, lock, build. Each parses its arguments and calls a stage module."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import build as builds
from . import lock as locks
from . import matrix as matrices
from . import ui
from .errors import LockError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_selectors(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("selectors", nargs="+" if required else "*", metavar="CELL",
                   help="cell ids, aliases or globs (e.g. 'stable-*', '*-cu130', 'stable-cu{128,130}')")


def expectations(cell: matrices.Cell, sm: int | None) -> str:
    """A cell's expected outcome: for one target when ``sm`` is given, else the default and every per-target one
    (so a CPU or sm_90 user is not shown only the sm_120 expectation)."""
    if sm is not None:
        return f"on sm_{sm}: {cell.expected(sm).describe()}"
    parts = [cell.expect.describe()] + [f"on sm_{n}: {e.describe()}" for n, e in sorted(cell.expect_sm.items())]
    return "; ".join(parts)


def cmd_list(args: argparse.Namespace) -> int:
    m = matrices.load()
    cells = m.select(args.selectors)
    if args.json:
        print(json.dumps([{"id": c.id, "channel": c.channel, "cuda": c.cuda, "python": c.python, "aliases": list(c.aliases),
                           "lock": c.lock_id, "expect": c.expect.__dict__,
                           "expect_sm": {str(n): e.__dict__ for n, e in sorted(c.expect_sm.items())}} for c in cells]))
        return 0
    headers = ["CELL", "ALIASES", "CHANNEL", "CUDA", "EXPECT"] + (["SUMMARY"] if args.verbose else [])
    rows = [[c.id, ", ".join(c.aliases) or "-", c.channel, c.cuda, expectations(c, args.sm)]
            + ([c.summary] if args.verbose else []) for c in cells]
    print(ui.table(headers, rows))
    return 0


def _lock_table(results: list[locks.LockStatus]) -> str:
    return ui.table(["STATE", "LOCK", "DETAIL"], [[r.state, r.who, r.detail or "-"] for r in results])


def cmd_lock(args: argparse.Namespace) -> int:
    m = matrices.load()
    cells = m.select(args.selectors)
    if args.check:
        results = locks.check(m, cells)
        print(_lock_table(results))
        stale = [r for r in results if r.problem]
        if stale:
            raise LockError(f"{len(stale)} lock(s) out of date: {', '.join(r.lock_id for r in stale)}",
                            hint=f"regenerate: {locks.REGENERATE}")
        return 0
    results = locks.lock_all(m, cells, upgrade=args.upgrade, progress=_say)
    print(_lock_table(results))
    failed = [r for r in results if r.state == "failed"]
    if failed:
        raise LockError(f"could not lock {', '.join(r.lock_id for r in failed)}", hint="see the lines above")
    return 0


def preflight(work: str) -> None:
    """All the system programs ``work`` needs, checked before anything is downloaded (tools.preflight)."""
    from . import speech, tools

    for program in tools.preflight(work, satisfied={"espeak-ng": speech.selftest_speech_cached()}):
        _say(f"warning: {program} not found ({tools.SYSTEM_PROGRAMS[program][1]}); "
             f"{tools.install_line([program])} to run that test too")


def cmd_preflight(args: argparse.Namespace) -> int:
    preflight(args.work)
    print(f"preflight {args.work}: every system program it needs is here")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    m = matrices.load()
    if args.for_this_machine:
        from . import doctor, tools

        if args.selectors:
            raise LockError("--for-this-machine picks the cell itself", hint="name cells, or pass --for-this-machine alone")
        cell, why = doctor.choose_cell(m, doctor.collect(), python_ok=tools.python_available)
        _say(f"building {cell.id}: {why}")
        cells = [cell]
    else:
        if not args.selectors:
            raise LockError("build needs cells (ids, aliases or globs) or --for-this-machine",
                            hint="nox -s env picks the cell for this GPU; nox -s env-cu128 builds the working cell")
        cells = m.select(args.selectors)
    if not args.no_selftest:
        preflight("build")
    wheelhouse = Path(args.wheelhouse).resolve() if args.wheelhouse else None
    lock_from = Path(args.lock_from).resolve() if args.lock_from else None
    if lock_from is not None and len(cells) != 1:
        raise LockError("--lock-from takes one cell", hint="name the one cell whose lock the file holds")
    for cell in cells:
        result = builds.resolve_and_build(m, cell, lock_from=lock_from, use_patches=False if args.no_patches else None,
                                          selftest=not args.no_selftest, offline=args.offline, wheelhouse=wheelhouse,
                                          force=args.force, progress=_say)
        if result.state == "up-to-date":
            print(f"{cell.id}: up to date (lock and patches unchanged), nothing to do "
                  f"[{result.seconds['check']:.2f} s]")
        else:
            times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
            print(f"{cell.id}: {result.state} [{times}]")
            if result.patches:
                print(f"  patches: {result.patches}")
        st = result.selftest
        if st and st.get("passed"):
            tr = st["transcription"]
            print(f"  self-test: imports ok; transcribed {st['audio_seconds']:.0f} s of speech on the CPU, "
                  f"WER {tr['wer']:.0%}: {tr['text'][:70]!r}...")
        print(result.usage())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the cells (a dry run of the selection)")
    _add_selectors(p)
    p.add_argument("--json", action="store_true", help="one JSON list (for CI fan-out)")
    p.add_argument("--sm", type=int, default=None, help="show the expectation for this compute capability only "
                   "(default: the default one and every per-target one)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("lock", help="write hashed locks constraints/<cell>.txt (or --check them)")
    _add_selectors(p)
    p.add_argument("--check", action="store_true", help="exit non-zero naming each stale lock and what changed")
    p.add_argument("--upgrade", action="store_true", help="re-resolve even if the inputs are unchanged")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("preflight", help="check every system program a kind of work needs, at once")
    p.add_argument("work", choices=("build", "matrix", "bench", "tests"))
    p.set_defaults(func=cmd_preflight)

    p = sub.add_parser("build", help="build cell venvs from their locks (atomic, hash-checked, self-tested)")
    _add_selectors(p)
    p.add_argument("--for-this-machine", action="store_true",
                   help="let the doctor pick the cell for this GPU and driver (the working cell where there is no GPU)")
    p.add_argument("--no-patches", action="store_true", help="build without the WhisperX patch series")
    p.add_argument("--no-selftest", action="store_true", help="skip the import and transcription self-test")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.add_argument("--offline", action="store_true", help="no network at all (uv cache or --wheelhouse only)")
    p.add_argument("--wheelhouse", metavar="DIR", help="install from this folder of wheels instead of the index")
    p.add_argument("--lock-from", metavar="FILE", help="build from this lock, or from the lock a matrix result JSON kept "
                   "for the cell (rebuilds a floating nightly cell exactly as that run had it)")
    p.set_defaults(func=cmd_build)

"""`python -m whisperx_matrix list`: the cells of matrix.toml and their expectations (a dry run of the
selection). The command line of the matrix data; matrix.py itself knows no command line."""

from __future__ import annotations

import argparse
import json

from . import ui
from .cli import add_selectors
from .matrix import Cell, load


def expectations(cell: Cell, sm: int | None) -> str:
    """A cell's expected outcome: for one target when ``sm`` is given, else the default and every per-target one
    (so a CPU or sm_90 user is not shown only the sm_120 expectation)."""
    if sm is not None:
        return f"on sm_{sm}: {cell.expected(sm).describe()}"
    parts = [cell.expect.describe()] + [f"on sm_{n}: {e.describe()}" for n, e in sorted(cell.expect_sm.items())]
    return "; ".join(parts)


def cmd_list(args: argparse.Namespace) -> int:
    m = load()
    cells = m.select(args.selectors)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": c.id,
                        "channel": c.channel,
                        "cuda": c.cuda,
                        "python": c.python,
                        "aliases": list(c.aliases),
                        "lock": c.lock_id,
                        "expect": c.expect.__dict__,
                        "expect_sm": {str(n): e.__dict__ for n, e in sorted(c.expect_sm.items())},
                    }
                    for c in cells
                ]
            )
        )
        return 0
    headers = ["CELL", "ALIASES", "CHANNEL", "CUDA", "EXPECT"] + (["SUMMARY"] if args.verbose else [])
    rows = [
        [c.id, ", ".join(c.aliases) or "-", c.channel, c.cuda, expectations(c, args.sm)]
        + ([c.summary] if args.verbose else [])
        for c in cells
    ]
    print(ui.table(headers, rows))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the cells (a dry run of the selection)")
    add_selectors(p)
    p.add_argument("--json", action="store_true", help="one JSON list (for CI fan-out)")
    p.add_argument(
        "--sm",
        type=int,
        default=None,
        help="show the expectation for this compute capability only "
        "(default: the default one and every per-target one)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_list)

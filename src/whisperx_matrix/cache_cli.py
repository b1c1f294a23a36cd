"""`nox -s cache`: the matrix's results cache (resultcache) listed, pruned, cleared, and a cell's key printed
for the GPU workflow's actions/cache."""

from __future__ import annotations

import os
from typing import Any

from . import matrix as matrices
from .resultcache import ResultCache


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _age(s: float) -> str:
    return f"{s / 86400:.1f} d" if s >= 86400 else f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m`` or seconds -> seconds; anything else: FatalError with the forms it takes."""
    from .errors import FatalError

    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise FatalError(f"not an age: {text!r}", hint="give e.g. 30d, 12h, 90m or a number of seconds") from None


def cmd_cache(args: Any) -> int:
    from . import ui

    cache = ResultCache()
    if args.action == "list":
        rows = cache.entries()
        print(
            ui.table(
                ["CELL", "KEY", "STORED", "AGE", "SIZE"],
                [
                    [
                        r.get("cell") or "(unreadable)",
                        r["key"][:16],
                        r.get("generated_at") or "-",
                        _age(r["age_s"]),
                        _size(r["bytes"]),
                    ]
                    for r in rows
                ],
            )
            if rows
            else "(empty)"
        )
        print(f"\n{len(rows)} cell results, {_size(sum(r['bytes'] for r in rows))} in {cache.folder}")
    elif args.action == "key":
        return _print_keys(args)
    elif args.action == "prune":
        gone = cache.prune(older_than_s=parse_age(args.older_than))
        print(f"removed {len(gone)} cell results older than {args.older_than} from {cache.folder}")
    else:
        print(f"removed {cache.clear()} cell results from {cache.folder} (nothing else in it touched)")
    return 0


def _print_keys(args: Any) -> int:
    """``cache key CELL...``: each cell's key, one ``CELL KEY`` line; with ``--github-output`` (one cell) the line
    ``key=wxm-cell-<cell>-<key>`` goes to $GITHUB_OUTPUT for actions/cache. A cell whose lock does not pass gets a
    key that never matches (a new one each time), so its job runs it and says why."""
    import uuid

    from . import matrix_run
    from .errors import FatalError

    m = matrices.load()
    cells = m.select(args.cells)
    keys = matrix_run.cell_keys(m, cells, sm=args.sm or m.target_sm, suite=not args.no_suite)
    for cid, key in keys.items():
        print(f"{cid} {key or 'none (its lock stage does not pass: nothing to look up)'}")
    if args.github_output:
        if len(keys) != 1:
            raise FatalError(
                f"--github-output takes one cell, got {len(keys)}", hint="name the matrix job's cell: cache key CELL"
            )
        cid, key = next(iter(keys.items()))
        out = os.environ.get("GITHUB_OUTPUT")
        if not out:
            raise FatalError("--github-output: GITHUB_OUTPUT is not set", hint="run it as a workflow step")
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(f"key=wxm-cell-{cid}-{key or 'unkeyed-' + uuid.uuid4().hex}\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("cache", help="the matrix's results cache: list its cell results, prune old ones, or clear it")
    p.add_argument("action", choices=("list", "prune", "clear", "key"))
    p.add_argument("cells", nargs="*", metavar="CELL", help="key: the cells (ids, aliases or globs; default all)")
    p.add_argument("--sm", type=int, default=None, help="key: the target sm (default: matrix.toml's)")
    p.add_argument("--no-suite", action="store_true", help="key: as for `matrix --no-suite`")
    p.add_argument("--github-output", action="store_true", help="key: write key=... for one cell to $GITHUB_OUTPUT")
    p.add_argument(
        "--older-than", default="30d", metavar="AGE", help="prune: remove results older than this (default 30d)"
    )
    p.set_defaults(func=cmd_cache)

#!/usr/bin/env python3
"""Print the selected cells of matrix.toml as one JSON list of ids, for a CI matrix (``fromJSON``).

scripts/list_cells.py                      # every cell
scripts/list_cells.py 'stable-* *-cu130'   # ids, aliases or globs, space-separated (one argument is fine)
scripts/list_cells.py --github-output 'stable-*'   # also append cells=<json> to $GITHUB_OUTPUT
scripts/list_cells.py --platform x86_64    # only the cells for that machine (the GPU runner's)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from whisperx_matrix import matrix  # noqa: E402
from whisperx_matrix.errors import FatalError  # noqa: E402


def cell_ids(selectors: list[str], matrix_path: Path | None = None, platform: str | None = None) -> list[str]:
    m = matrix.load(matrix_path or ROOT / "matrix.toml")
    return [c.id for c in m.select(" ".join(selectors).split()) if platform is None or c.arch == platform]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("selectors", nargs="*", help="cell ids, aliases or globs (empty: every cell)")
    parser.add_argument("--github-output", action="store_true", help="append cells=<json> to $GITHUB_OUTPUT")
    parser.add_argument(
        "--platform",
        choices=("x86_64", "aarch64"),
        help="only the cells for this machine (the GPU runner judges its own; other platforms' cells are judged "
        "statically by `nox -s matrix` anywhere)",
    )
    args = parser.parse_args(argv)
    try:
        ids = cell_ids(args.selectors, platform=args.platform)
    except FatalError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    text = json.dumps(ids)
    print(text)
    if args.github_output:
        out = os.environ.get("GITHUB_OUTPUT")
        if not out:
            print("error: --github-output but GITHUB_OUTPUT is not set", file=sys.stderr)
            return 2
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(f"cells={text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

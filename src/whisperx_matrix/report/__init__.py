"""The report stage: one matrix result (a plain dict) -> matrix.json, matrix.md, matrix.html and matrix.png.

The result is the orchestrator's (schema 1, see ``tests/data/report/sample-result.json``). This module
renders it; a merge has the claims judged again by the verdict stage on the union of the observations.

- ``write_report(result, out_dir)`` writes the four files atomically: everything is rendered in memory, each
  file goes to a temp name in ``out_dir`` (fsynced), then the temps are renamed over the old files with
  ``os.replace``, ``matrix.json`` last, so a reader who sees the new JSON sees the new files too. A failure
  before the renames leaves the previous report untouched and no temp file behind.
- ``claims_markdown(result)`` is the claims table alone; ``update_readme(readme, result)`` puts it (with one
  provenance line) between ``<!-- claims:start -->`` and ``<!-- claims:end -->``.
- ``merge_results(results)`` joins per-cell results from a CI fan-out (see its docstring for the rules).
- Every string is made plain and redacted before it is rendered (``data.plain``: no terminal escape, no control
  character but newline and tab; ``whisperx_matrix.secrets.redact``: the values of ``HF_TOKEN`` and every
  ``*_TOKEN`` in the environment).
- The report leads with the verdicts: headline, provenance, the claims of the document, then the cells, then the
  checks (the PNG grid) and the GPU probes. Red means an unexpected outcome and nothing else: a contradicted
  claim is orange, a mixed one purple, an incomplete cell (nothing failed, but its suite did not run) amber.

The stages of a report live beside this file: data.py (vocabulary, headline, redaction), markdown.py, html.py,
png.py, merge.py (CI fan-out merging, reading and writing result JSON).

A check is ``{"status": "pass"|"fail"|"skip", "expected": bool, "detail": str, "seconds": float}``;
``expected`` says whether this status was the expected one (a string "pass"/"fail" is also accepted, as the
expected status). An optional ``label`` overrides the short text drawn in the PNG square.

CLI: ``python -m whisperx_matrix report RESULT.json [--out reports/]`` re-renders a result;
``python -m whisperx_matrix report --merge DIR_OR_JSON... [--out reports/]`` merges then renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import ui
from ..fsutil import atomic_write_many
from ..verdict import totals
from .data import (
    CELL_LEGEND,
    CHECKS,
    CLAIM_KIND,
    CLAIM_LEGEND,
    CLAIMS_END,
    CLAIMS_START,
    COLOURS,
    FILES,
    LEGEND,
    SCHEMA,
    VERDICT_KIND,
    ReportError,
    check_kind,
    claim_verdict,
    headline,
    plain,
    redacted,
)
from .html import render_html
from .markdown import claims_markdown, render_markdown, update_readme
from .merge import (
    VOLATILE_KEYS,
    atomic_write_json,
    collect_inputs,
    load_probes,
    load_result,
    matrix_judge,
    merge_results,
    without_volatile,
)
from .png import render_png, short_label

__all__ = [
    "CELL_LEGEND",
    "CHECKS",
    "CLAIMS_END",
    "CLAIMS_START",
    "CLAIM_KIND",
    "CLAIM_LEGEND",
    "COLOURS",
    "FILES",
    "LEGEND",
    "VERDICT_KIND",
    "VOLATILE_KEYS",
    "ReportError",
    "atomic_write_json",
    "check_kind",
    "claim_verdict",
    "claims_markdown",
    "collect_inputs",
    "headline",
    "load_probes",
    "load_result",
    "matrix_judge",
    "merge_results",
    "plain",
    "redacted",
    "render_html",
    "render_markdown",
    "render_png",
    "register",
    "short_label",
    "update_readme",
    "without_volatile",
    "write_report",
]

# ---------------------------------------------------------------------------------------------- writing


def write_report(result: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Render ``result`` into ``out_dir`` (matrix.json, .md, .html, .png), atomically; returns kind -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = redacted(result)
    if "totals" not in data:
        data["totals"] = totals(data.get("cells", []))
    png = render_png(data)
    rendered = {
        "png": png,
        "md": render_markdown(data).encode("utf-8"),
        "html": render_html(data, png).encode("utf-8"),
        "json": (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"),
    }
    paths = {kind: out_dir / name for kind, name in FILES.items()}
    atomic_write_many({paths[kind]: rendered[kind] for kind in FILES})  # FILES order: JSON last
    return paths


# ---------------------------------------------------------------------------------------------- CLI


def _run(args: argparse.Namespace) -> int:
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if bool(args.merge) == bool(args.result):
        raise ReportError(
            "give either one RESULT.json to re-render or --merge DIR_OR_JSON...",
            hint="python -m whisperx_matrix report --merge results/ --out reports/",
        )
    if args.merge:
        paths = collect_inputs([Path(p) for p in args.merge], warn=say)
        order, judge = matrix_judge()  # a merge re-judges every claim on the union of the observations
        inputs = [load_result(p) for p in paths]
        if args.probes:  # recorded GPU runs, as probes (the matrix's --probes): their cells never replace ours
            inputs.append(
                {
                    "schema": SCHEMA,
                    "cells": [],
                    "probes": load_probes(args.probes),
                    "target_sm": inputs[0].get("target_sm"),
                }
            )
            paths.append(Path("probes"))
        result = merge_results(inputs, sources=[p.name for p in paths], order=order, judge=judge)
        if result.get("freshness"):  # the index as read by the latest run, judged against the merged cells
            from .. import freshness
            from ..matrix import find_matrix

            result["freshness"] = freshness.judge(result["cells"], result["freshness"], find_matrix().parent)
    else:
        result = load_result(Path(args.result))
    written = write_report(result, Path(args.out))
    print(headline(result))
    print(ui.table(["KIND", "FILE"], [[kind, written[kind]] for kind in FILES], indent=2))
    if args.readme:
        changed = update_readme(Path(args.readme), result)
        print(f"  {args.readme}: claims table {'updated' if changed else 'unchanged'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a matrix result as Markdown, HTML, PNG and JSON (or merge CI results)",
        description="Re-render RESULT.json, or merge the per-cell result JSONs of a CI fan-out "
        "(a cell seen twice keeps its later run; every claim is judged again on the union) and render it.",
    )
    p.add_argument("result", nargs="?", metavar="RESULT.json", help="a result to re-render")
    p.add_argument("--merge", nargs="+", metavar="DIR_OR_JSON", help="result files, or folders searched for them")
    p.add_argument("--out", default="reports", metavar="DIR", help="output folder (default: reports)")
    p.add_argument("--readme", metavar="README.md", help="also update the claims block of this README")
    p.add_argument(
        "--probes",
        nargs="+",
        default=[],
        metavar="RESULT.json",
        help="with --merge: judge with the GPU observations of these recorded results too (as the matrix's --probes)",
    )
    p.set_defaults(func=_run)

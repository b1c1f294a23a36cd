"""`python -m whisperx_matrix figures`: every measured number in README.md and benchmarks/results/README.md,
rendered from the results files.

Each passage that carries a number sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; ``DOCUMENTS``
names, per file, the function that renders each block. The numbers come from fields of the results files (the
newest ``benchmarks/results/<kind>-<date>.json`` of each kind in ``KINDS``, and the arch audit in
``reports/matrix.json``); a missing field is an error naming the file and the field, never a blank. ``--update``
rewrites the blocks in place, ``--check`` names each block that differs from what the results render.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import FiguresError
from .fmt import wrap
from .pipeline import pipeline_block, trellis_block
from .readme import (
    _suite_cell,
    arm_block,
    audit_block,
    bench_block,
    build_block,
    build_noop,
    disk_block,
    gpu_cu130,
    gpu_front_door,
    gpu_front_door_bench,
    headline_table,
)
from .results import REPORT, RESULTS_DIR, UPDATE, Doc, Results
from .results_readme import files_table, results_machine, targets_bullets

# ------------------------------------------------------------------------------------------ the documents

Renderer = Callable[[Results], str]
DOCUMENTS: dict[str, dict[str, Renderer]] = {
    "README.md": {
        "figures:gpu-front-door": gpu_front_door,
        "figures:gpu-front-door-bench": gpu_front_door_bench,
        "figures:pipeline": pipeline_block,
        "figures:trellis": trellis_block,
        "figures:gpu-cu130": gpu_cu130,
        "figures:arm": arm_block,
        "bench": bench_block,
        "figures:build-noop": build_noop,
        "figures:audit": audit_block,
        "figures:disk": disk_block,
        "figures:build": build_block,
    },
    f"{RESULTS_DIR}/README.md": {
        "figures:machine": results_machine,
        "figures:headline": headline_table,
        "figures:targets": targets_bullets,
        "figures:files": files_table,
    },
}


def render(
    results: Results, documents: Mapping[str, Mapping[str, Renderer]] | None = None
) -> dict[str, dict[str, str]]:
    """Every block's text, by document (``DOCUMENTS`` by default) and block name."""
    documents = DOCUMENTS if documents is None else documents
    return {doc: {name: fn(results).strip("\n") for name, fn in blocks.items()} for doc, blocks in documents.items()}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def blocks_in(text: str, names: Iterable[str], *, where: str) -> dict[str, str]:
    """The current text of each named block in ``text`` (between its markers, without the newlines around it)."""
    out = {}
    for name in names:
        start, end = _markers(name)
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise FiguresError(
                f"{where}: block {name} needs exactly one '{start}' line followed by one '{end}' line",
                hint="put the marker pair around the passage the block renders",
            )
        out[name] = text[text.index(start) + len(start) : text.index(end)].strip("\n")
    return out


def replace_blocks(text: str, rendered: Mapping[str, str], *, where: str) -> str:
    """``text`` with each block's content replaced by ``rendered``; everything outside the markers unchanged."""
    blocks_in(text, rendered, where=where)
    for name, body in rendered.items():
        start, end = _markers(name)
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{body}\n{end}{tail}"
    return text


def _document(root: Path, doc: str) -> str:
    try:
        return (root / doc).read_text(encoding="utf-8")
    except OSError as exc:
        raise FiguresError(
            f"cannot read {doc}: {exc.strerror}", hint="run from the project's checkout (--root)"
        ) from None


def drift(root: Path, results: Results | None = None) -> list[tuple[str, str]]:
    """(document, block) for each block whose text differs from what the results render."""
    rendered = render(results or Results.load(root))
    out = []
    for doc, blocks in rendered.items():
        current = blocks_in(_document(root, doc), blocks, where=doc)
        out += [(doc, name) for name, body in blocks.items() if current[name] != body]
    return out


def update(root: Path, results: Results | None = None) -> list[str]:
    """Rewrite every document's blocks in place, each file atomically, and only once every block has rendered
    and every marker pair is found; the documents that changed."""
    from ..fsutil import atomic_write_text as atomic_write

    rendered = render(results or Results.load(root))
    new = {}
    for doc, blocks in rendered.items():
        old = _document(root, doc)
        text = replace_blocks(old, blocks, where=doc)
        if text != old:
            new[doc] = text
    for doc, text in new.items():
        atomic_write(root / doc, text)
    return list(new)


def cmd_figures(args: argparse.Namespace) -> int:
    if args.root:
        root = Path(args.root)
    else:
        from ..matrix import find_matrix

        root = find_matrix().parent
    if args.update:
        changed = update(root)
        print("\n".join(f"{doc}: rewritten" for doc in changed) or "figures: every block is up to date")
        return 0
    if args.check:
        stale = drift(root)
        for doc, name in stale:
            print(f"{doc}: block {name} differs from what {RESULTS_DIR}/ renders")
        if stale:
            raise FiguresError(
                f"{len(stale)} figure block(s) out of date: " + ", ".join(f"{doc}#{name}" for doc, name in stale),
                hint=f"run {UPDATE}",
            )
        print("figures: every block matches the results files")
        return 0
    for doc, blocks in render(Results.load(root)).items():
        for name, body in blocks.items():
            start, end = _markers(name)
            sys.stdout.write(f"# {doc}\n{start}\n{body}\n{end}\n\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "figures",
        help="render the READMEs' measured numbers from benchmarks/results/ "
        "(--update rewrites them, --check names each drifted block)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--update", action="store_true", help="rewrite the blocks in README.md and benchmarks/results/README.md"
    )
    mode.add_argument("--check", action="store_true", help="exit non-zero naming each block that differs")
    p.add_argument("--root", metavar="DIR", help="the checkout (default: the one holding matrix.toml)")
    p.set_defaults(func=cmd_figures)


__all__ = [
    "DOCUMENTS",
    "REPORT",
    "RESULTS_DIR",
    "Doc",
    "Results",
    "_suite_cell",
    "audit_block",
    "blocks_in",
    "build_block",
    "build_noop",
    "drift",
    "register",
    "render",
    "replace_blocks",
    "update",
    "wrap",
]

"""Merging the per-cell results of a CI fan-out, and reading and writing result JSON."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_bytes
from ..verdict import is_gpu_test, totals
from .data import SCHEMA, ReportError

# ---------------------------------------------------------------------------------------------- merging

Judge = Callable[[Mapping[str, Mapping[str, Any]], Sequence[Mapping[str, Any]]], list[dict[str, Any]]]


def _stamp(result: Mapping[str, Any]) -> str:
    return str(result.get("generated_at", ""))


def merge_results(
    results: Sequence[Mapping[str, Any]],
    *,
    sources: Sequence[str] | None = None,
    order: Sequence[str] | None = None,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """Join results of a CI fan-out (one job per cell, plus GPU probe records) into one result, the same
    whatever order the inputs come in.

    - cells: one per id. Where two inputs hold the same cell, the later run (generated_at, then its JSON)
      wins. Sorted by ``order`` (matrix.toml's cell ids), unknown ids last by id.
    - probes: the union, one per (label, generated_at).
    - claims: re-judged by ``judge`` on the merged cells and probes (the verdict stage); never picked from an
      input. Without a judge, the merged result has no claims.
    - totals: recomputed; seconds: summed over the inputs (machine time); generated_at: the latest input's;
      selectors: the union in cell order; machine: every distinct description, sorted.
    All inputs must be schema 1 with the same target_sm.
    """
    if not results:
        raise ReportError("nothing to merge", hint="pass result JSON files or folders that hold them")
    sources = list(sources or [f"input {i + 1}" for i in range(len(results))])
    sms = {r.get("target_sm") for r in results}
    if len(sms) > 1:
        raise ReportError(
            f"results for different target compute capabilities: {sorted(map(str, sms))}",
            hint="merge only results of one matrix run (one --sm)",
        )
    rank = {cid: i for i, cid in enumerate(order or [])}

    def cell_key(cid: str) -> tuple[int, str]:
        return (rank.get(cid, len(rank)), cid)

    by_id: dict[str, tuple[tuple[str, str], dict[str, Any]]] = {}
    probes: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        for cell in r.get("cells", []):
            cid = str(cell.get("id"))
            key = (_stamp(r), json.dumps(cell, sort_keys=True))
            if cid not in by_id or key > by_id[cid][0]:
                by_id[cid] = (key, copy.deepcopy(dict(cell)))
        for probe in r.get("probes") or []:
            probes[(str(probe.get("label")), str(probe.get("generated_at")))] = copy.deepcopy(dict(probe))
    cells = [by_id[cid][1] for cid in sorted(by_id, key=cell_key)]
    probe_list = [probes[k] for k in sorted(probes)]

    seconds: dict[str, float] = {}
    for r in results:
        for k, v in (r.get("seconds") or {}).items():
            if isinstance(v, (int, float)):
                seconds[k] = seconds.get(k, 0.0) + v
    seconds = {k: round(v, 2) for k, v in sorted(seconds.items())}
    selectors = sorted({str(s) for r in results for s in r.get("selectors") or []}, key=cell_key)
    latest = max(results, key=lambda r: (_stamp(r), json.dumps(r.get("machine") or {}, sort_keys=True)))
    machine = copy.deepcopy(dict(latest.get("machine") or {}))
    descriptions = sorted({d for r in results if (d := (r.get("machine") or {}).get("description"))})
    if len(descriptions) > 1:
        machine["description"] = " / ".join(descriptions)
    by_cells = {c["id"]: c for c in cells}
    fresh = [r for r in results if r.get("freshness")]
    return {
        **({"freshness": copy.deepcopy(max(fresh, key=_stamp)["freshness"])} if fresh else {}),
        "schema": SCHEMA,
        "generated_at": max(_stamp(r) for r in results),
        "target_sm": results[0].get("target_sm"),
        "machine": machine,
        "selectors": selectors,
        "cells": cells,
        "probes": probe_list,
        "claims": judge(by_cells, probe_list) if judge else [],
        "totals": totals(cells),
        "seconds": seconds,
        "merged_from": sorted(
            (
                {"source": s, "generated_at": r.get("generated_at"), "cells": [c.get("id") for c in r.get("cells", [])]}
                for s, r in zip(sources, results, strict=True)
            ),
            key=lambda x: (str(x["source"]), str(x["generated_at"])),
        ),
    }


def matrix_judge(root: Path | None = None) -> tuple[list[str], Judge]:
    """matrix.toml's cell order and the verdict stage over claims.toml, for merging."""
    from .. import matrix as matrices
    from .. import verdict

    m = matrices.load(root / "matrix.toml" if root else None)
    claims = verdict.load_claims(m.root / "claims.toml", m)
    return m.ids(), lambda cells, probes: verdict.judge_claims(claims, cells, probes)


# Keys whose values may differ between two runs of the same inputs: when and how long, and whether a build was
# made or reused. Everything else in a result is a function of the inputs.
VOLATILE_KEYS = frozenset({"generated_at", "seconds", "built_at", "work", "merged_from", "cached", "cached_cells"})


def without_volatile(data: Any) -> Any:
    """``data`` with every VOLATILE_KEYS entry removed, at any depth: what two runs must agree on byte for byte."""
    if isinstance(data, Mapping):
        return {k: without_volatile(v) for k, v in data.items() if k not in VOLATILE_KEYS}
    if isinstance(data, list):
        return [without_volatile(v) for v in data]
    return data


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def load_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not is_result(data):
        raise ReportError(
            f"{path} is not a matrix result (no 'schema'/'cells')",
            hint="pass the result JSON that the matrix run wrote",
        )
    if data["schema"] != SCHEMA:
        raise ReportError(
            f"{path}: result schema {data['schema']!r}, this version reads schema {SCHEMA}",
            hint="re-render with the whisperx-matrix version that wrote it",
        )
    return data


def is_result(data: Any) -> bool:
    return isinstance(data, dict) and "schema" in data and isinstance(data.get("cells"), list)


def collect_inputs(items: Sequence[Path], *, warn: Callable[[str], None] | None = None) -> list[Path]:
    """The result files named or found (recursively, sorted) in the folders named; other JSON is skipped."""
    found: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            for path in sorted(item.rglob("*.json")):
                try:
                    ok = is_result(json.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    ok = False
                if ok:
                    found.append(path)
                elif warn:
                    warn(f"skipping {path}: not a matrix result")
        elif item.exists():
            found.append(item)
        else:
            raise ReportError(f"no such file or folder: {item}")
    if not found:
        raise ReportError(
            f"no result JSON in {', '.join(map(str, items))}",
            hint="each CI job writes one result JSON; download them all into one folder",
        )
    return found


def load_probes(files: list[str]) -> list[dict[str, Any]]:
    """The GPU observations of recorded results: their probe records, and the GPU facts of each cell a GPU
    machine ran (as a probe named after the cell and the GPU, so a cell id is never judged twice)."""
    out: list[dict[str, Any]] = []
    for f in files:
        data = load_result(Path(f))
        out += data.get("probes", [])
        gpu_name = ((data.get("machine") or {}).get("gpu") or {}).get("name") or "a GPU"
        for cell in data.get("cells", []):
            if (cell.get("gpu") or {}).get("present"):
                tests = [t for t in (cell.get("suite") or {}).get("tests", []) if is_gpu_test(t)]
                out.append(
                    {
                        "label": f"{cell['id']} (the matrix, run on {gpu_name})",
                        "generated_at": data.get("generated_at"),
                        "python": cell.get("python"),
                        "versions": cell.get("versions", {}),
                        "gpu": cell["gpu"],
                        "suite": {"cell": cell["id"], "tests": tests},
                        "built_by": "the matrix",
                        **({"ld_library_path": cell["ld_library_path"]} if cell.get("ld_library_path") else {}),
                    }
                )
    return out

"""``nox -s watch``: upstream releases newer than the locks, each as a candidate cell with a predicted verdict.

As Renovate and Dependabot do, it reads the package index and compares it with the lockfiles; unlike them, it also
says what an update would do here, from static facts only (ARCHITECTURE.md: ``watch`` stands beside the flow like
``doctor``):

1. releases  (releases.py)   ``pip index versions`` for torch, its companions, WhisperX's engines and every nvidia-*
                              library the locks hold; what is newer than constraints/*.txt (upload dates unknown)
2. candidates (candidates.py) a [[cells]] fragment per new torch line and per new engine release: data, written to
                              ``--out`` (default: our cache's watch/ folder), each parsed with matrix.toml first
3. predict   (predict.py)     its lock (the lock stage's own code), its wheels into our cache, the arch audit for each
                              sm and the closure audit (no build, no suite, no GPU), the cell record they make, and
                              what that record changes: its outcome beside its base cell's, the claims before/after
4. apply     (apply.py)       ``--apply``: a branch watch/<date> with the fragments in matrix.toml and their locks

``--json`` prints one JSON object (releases, candidates, predictions); the same object, the fragments, their locks
and a Markdown summary (a pull request's body) are written under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths, ui, verdict
from .. import releases as rel
from ..errors import ConfigError
from ..fsutil import atomic_write_text
from ..lock import read_pins
from ..matrix import Matrix
from ..matrix import load as load_matrix
from . import candidates as cands
from . import predict as pr
from .render import markdown, text

SCHEMA = 1
AUDIT_MODES = ("all", "newest", "none")


def _results(path: Path | None, root: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], str]:
    """The committed matrix result the predictions compare with: cells by id, probes, and how to name it (relative
    to the project, so that a pull request's body names no machine's path)."""
    if path is None or not path.is_file():
        return {}, [], f"no matrix result ({path}): the claims are judged on nothing before"
    from ..report.merge import load_result

    data = load_result(path)
    full = path.resolve()
    name = str(full.relative_to(root)) if full.is_relative_to(root) else str(path)
    return {c["id"]: c for c in data["cells"]}, list(data.get("probes") or []), name


@dataclass(frozen=True)
class _Context:
    matrix: Matrix
    out: Path
    sms: list[int]
    cells: dict[str, dict[str, Any]]
    probes: list[dict[str, Any]]
    claims: list[verdict.Claim]
    before: dict[str, dict[str, Any]]
    env: Any


def _entry(cand: cands.Candidate, fragment: str, file: str, **rest: Any) -> dict[str, Any]:
    family = cand.family
    return {
        "id": cand.id,
        "package": cand.package,
        "version": cand.version,
        "locked": cand.locked,
        "base": cand.base,
        "bumps": cand.bumps,
        "family": None
        if family is None
        else {"versions": family.versions, "why": family.why, "cuda_from": family.cuda_from},
        "cuda": cand.raw.get("cuda"),
        "file": file,
        "fragment": fragment,
        "expect": cand.expect,
        "expect_sm": {str(k): v for k, v in cand.expect_sm.items()},
        "expect_predicted": cand.predicted,
    } | rest


def _one(ctx: _Context, cand: cands.Candidate, audit_it: bool) -> dict[str, Any]:
    """One candidate: parsed with matrix.toml, locked, audited, its expect predicted, its fragment written, and what
    it would change. A fragment the matrix rejects (a CUDA build with no cited driver floor, ...) is reported with
    the matrix's own error and not written."""
    try:
        trial = cands.with_fragments(ctx.matrix, [cand.fragment()])  # what --apply adds, parsed by the matrix itself
    except ConfigError as exc:
        cand.predicted = False
        why = f"matrix.toml would reject this fragment: {exc} ({exc.hint})"
        return _entry(
            cand,
            cand.fragment(),
            "",
            lock={},
            locks=[],
            audit={"static_only": True, "note": why, "per_sm": {}, "closure_missing": [], "seconds": 0.0},
            outcome={"kind": "unknown", "text": why},
            claims=[],
            _pins={},
        )
    cell = trial.get(cand.id)
    variants = [c for c in trial.cells if c.id == cand.id or c.id.startswith(cand.id + "-py")]
    pred = pr.predict(trial, cell, variants, ctx.sms, ctx.out / "constraints", audit_wheels=audit_it, env=ctx.env)
    cand.expect, cand.expect_sm = pr.predicted_expectation(pred, ctx.sms, fallback=ctx.matrix.get(cand.base))
    cand.predicted = bool(pred.per_sm)
    cand.expect_note = "; ".join(
        ([pr.STATIC_ONLY] if pred.per_sm else [])
        + [
            f"sm_{sm}: {'runnable' if v['runnable'] else 'fails: ' + ', '.join(v['reasons'])}"
            for sm, v in pred.per_sm.items()
        ]
        + ([pred.note] if pred.note else [])
    )
    fragment = cand.fragment()
    cands.with_fragments(ctx.matrix, [fragment])  # the final fragment parses too
    file = ctx.out / "cells" / f"{cand.id}.toml"
    atomic_write_text(file, fragment)
    claims = (
        pr.predict_claims(
            ctx.claims,
            ctx.cells,
            ctx.probes,
            pred.record,
            base_id=cand.base,
            row=cand.package == rel.TORCH,
            before=ctx.before,
        )
        if pred.record is not None
        else []
    )
    lock_pins = {lid: {p.name: p.version for p in read_pins(body)} for lid, body in pred.locks.items()}
    return _entry(
        cand,
        fragment,
        str(file),
        lock=pred.lock,
        locks=sorted(pred.locks),
        audit={
            "static_only": True,
            "note": pred.note,
            "per_sm": {f"sm_{sm}": v for sm, v in pred.per_sm.items()},
            "closure_missing": pred.closure,
            "seconds": pred.seconds,
        },
        outcome=pr.outcome_change(pred, ctx.cells.get(cand.base), cand.base, ctx.sms[0]),
        claims=claims,
        _pins=lock_pins.get(cell.lock_id, {}),
    )


def run_watch(
    matrix: Matrix,
    *,
    only: Sequence[str] = (),
    pre: bool = False,
    audit_mode: str = "all",
    out: Path | None = None,
    results: Path | None = None,
    env: Any = None,
    today: str | None = None,
    say: Any = ui.say,
) -> tuple[dict[str, Any], list[cands.Candidate]]:
    """The whole watch; returns the JSON-able result and the candidates (with their final fragments). ``env``: the
    closure audit's system side (a SearchEnv; tests isolate it)."""
    t0 = time.perf_counter()
    today = today or time.strftime("%Y-%m-%d")
    out = out or paths.cache_dir() / "watch"
    for sub in ("cells", "constraints"):  # this run's fragments and locks only: never a stale one of a past run
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)
    locked = rel.locked_versions(matrix.root / "constraints")
    names = rel.watched_names(locked, only)
    if only and not names:
        raise ConfigError(
            f"none of {', '.join(only)} is in a lock",
            hint=f"watched: {', '.join(rel.WATCHED)} and the nvidia-* libraries",
        )
    say(f"watch: asking the index about {len(names)} packages (pip index versions)")
    releases = rel.find_releases(locked, names, pre=pre)
    by_name = {r.name: r for r in releases}

    from ..doctor import WORKING_ALIAS

    working = matrix.get(WORKING_ALIAS)
    found: list[cands.Candidate] = []
    notes: list[str] = []
    if (torch := by_name.get(rel.TORCH)) is not None:
        made, why = cands.torch_candidates(matrix, torch, today=today)
        found += made
        notes += why
    for name in rel.ENGINES:
        if (r := by_name.get(name)) is not None and (c := cands.bump_candidate(matrix, r, working, today=today)):
            found.append(c)

    cells, probes, results_note = _results(results, matrix.root.resolve())
    sms = pr.results_sms(matrix.target_sm, probes, cells.values())
    claims_path = matrix.root / "claims.toml"
    claims = verdict.load_claims(claims_path, matrix) if claims_path.is_file() else []
    before = {j["id"]: j for j in verdict.judge_claims(claims, cells, probes)}
    newest = {c.package: c.id for c in found}  # the last candidate of a package is its newest
    ctx = _Context(matrix, out, sms, cells, probes, claims, before, env)
    entries = []
    for n, cand in enumerate(found, 1):
        audit_it = audit_mode == "all" or (audit_mode == "newest" and newest[cand.package] == cand.id)
        say(f"[{n}/{len(found)}] {cand.id}: lock{', wheels and static audit' if audit_it else ''}")
        entries.append(_one(ctx, cand, audit_it))
    _covered(releases, entries)
    for entry in entries:
        entry.pop("_pins")
    result = {
        "schema": SCHEMA,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "index": "pip's configured index (the default one unless PIP_INDEX_URL says otherwise)",
        "dates": rel.DATE_NOTE,
        "results": results_note,
        "sms": sms,
        "audit": audit_mode,
        "out": str(out),
        "releases": [r.to_dict() for r in releases],
        "candidates": entries,
        "claims_before": {cid: j["verdict"] for cid, j in before.items()},
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return result, found


def _covered(releases: Sequence[rel.Release], entries: Sequence[dict[str, Any]]) -> None:
    """For each release: the candidates made for it, the candidates whose locks resolve it (torch's companions and
    the nvidia-* libraries come with a torch), and why the others have none."""
    for r in releases:
        r.candidates.extend(e["id"] for e in entries if e["package"] == r.name)
        for version in r.newer:
            taking = [e["id"] for e in entries if e["_pins"].get(r.name) == version and e["package"] != r.name]
            if taking:
                r.taken[version] = taking
            if (
                version in r.covered
                or version in r.taken
                or any(e["version"] == version for e in entries if e["package"] == r.name)
            ):
                continue
            if r.name in rel.COMPANIONS:
                r.covered[version] = "comes with its torch; no candidate resolves it"
            elif r.name.startswith(rel.NVIDIA_PREFIX):
                r.covered[version] = "comes with the torch that requires it; no candidate resolves it"
            else:
                r.covered[version] = "no candidate"


def write_outputs(result: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "watch.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "watch.md", markdown(result))


# --- command line -----------------------------------------------------------------------------------------


def cmd_watch(args: argparse.Namespace) -> int:
    from . import apply as applying

    m = load_matrix()
    if args.apply:
        applying.refuse_dirty(m.root)  # before any download: a dirty tree is refused in one line
    out = Path(args.out) if args.out else None
    results = Path(args.results) if args.results else m.root / "reports" / "matrix.json"
    result, found = run_watch(m, only=args.package or (), pre=args.pre, audit_mode=args.audit, out=out, results=results)
    write_outputs(result, Path(result["out"]))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text(result))
    if args.apply:
        applied = applying.apply(m, found, today=time.strftime("%Y-%m-%d"))
        print(applied, file=sys.stderr if args.json else sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="releases newer than the locks: candidate cells, their static audit and the verdicts they would change",
        description="Read the index (pip index versions) for releases of torch, torchaudio, torchvision, torchcodec, "
        "whisperx, pyannote-audio, ctranslate2, faster-whisper and the nvidia-* libraries newer than constraints/; "
        "write each candidate cell as a TOML fragment, audit its wheels statically (no build, no GPU) and print "
        "which claims' verdicts and which cells' outcomes would change, and why. Predictions from static facts only.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (releases, candidates, predictions)")
    p.add_argument(
        "--apply",
        action="store_true",
        help="on a new branch watch/<date>: add the candidate cells to matrix.toml, lock them, commit",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where the fragments, locks, watch.json and watch.md go (default: the cache's watch/ folder)",
    )
    p.add_argument(
        "--results", metavar="RESULT.json", help="the matrix result to compare with (default: reports/matrix.json)"
    )
    p.add_argument("--package", action="append", metavar="NAME", help="watch only these packages (repeatable)")
    p.add_argument("--pre", action="store_true", help="count pre-releases too")
    p.add_argument(
        "--audit",
        choices=AUDIT_MODES,
        default="all",
        help="download and audit the wheels of every candidate (all), of the newest per package (newest), or none",
    )
    p.set_defaults(func=cmd_watch)

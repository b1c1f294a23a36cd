"""Predictions from static facts only: a candidate's lock, its wheels audited (no build, no suite, no GPU), the cell
record that audit makes, and what that record would change: the candidate's outcome beside its base cell's, and
the claims' verdicts judged with and without it.

Everything here is a prediction and is named so: the build, the self-test and the cell suite were not run, so a
claim or an outcome that rests on them is "not predictable statically", never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import verdict
from ..audit import AuditReport, audit_arch, audit_closure
from ..audit import elf as elf_files
from ..audit.fatbin import Arch
from ..audit.loader import SearchEnv
from ..lock import LockStatus, compile_lock, read_pins
from ..matrix import Cell, Matrix, native_arch
from ..matrix_run import Stage, _arch_summary, _closure_summary, _named_by_library, finish_cell
from ..wheelsite import install_site

STATIC_ONLY = "static only: build and suite not run"
# Checks that read only what the static audit gives (torch's kernels, the closure, the CUDA runtime, cited tables);
# any other check needs the cell suite, so a candidate that replaces one of its cells is not predictable statically.
STATIC_CHECKS = frozenset(
    {"driver-minimum", "max-arch", "option1-mechanism", "missing-soname", "first-stable-with-arch"}
)
# Checks that read a list of cells, each a row: a new torch release is one more row of them.
ROW_CHECKS = frozenset({"driver-minimum", "first-stable-with-arch"})
VERSION_KEYS = (
    "torch",
    "torchaudio",
    "torchvision",
    "torchcodec",
    "whisperx",
    "pyannote-audio",
    "ctranslate2",
    "faster-whisper",
)


@dataclass
class Prediction:
    """What the static audit of one candidate says. ``record``: the cell record at the target sm, as the matrix
    writes one (``suite`` absent); ``per_sm``: sm -> {runnable, reasons, torch}; ``note`` says why there is none."""

    lock: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    per_sm: dict[int, dict[str, Any]] = field(default_factory=dict)
    closure: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0
    locks: dict[str, str] = field(default_factory=dict)  # lock id -> lock text, for every variant of the cell

    def reasons(self, sm: int) -> list[str]:
        return list(self.per_sm.get(sm, {}).get("reasons") or [])


# --- lock and wheels ------------------------------------------------------------------------------------


def lock_candidate(matrix: Matrix, cell: Cell, dest: Path) -> LockStatus:
    """Resolve the candidate as ``nox -s lock`` would (the same code), into ``dest``; outcomes are data."""
    return compile_lock(matrix, cell, upgrade=True, dest=dest)


# --- the audit and the record ---------------------------------------------------------------------------


def audit(
    site: Path, cell: Cell, sms: Sequence[int], *, env: SearchEnv | None = None
) -> tuple[dict[int, AuditReport], Any]:
    """The closure audit once (the process model WhisperX loads), the arch audit for each sm; the same audits
    ``nox -s audit`` runs, on the candidate's wheels. ``env``: the loader's system side (tests isolate it)."""
    files = list(elf_files.iter_files(site))
    preload = [site / p for p in cell.preload] if cell.preload else None
    if env is None and cell.arch != native_arch():  # another platform's wheels: that platform's loader
        env = SearchEnv.foreign(cell.arch)
    closure = audit_closure(site, preload=preload, files=files, env=env, progress=False)
    used = {item.path for item in closure.process.loaded} if closure.process.entries else None
    reports = {}
    for sm in sms:
        arch = audit_arch(site, sm, files=files, progress=False, used=used)
        reasons = (
            ([arch.reason] if arch.reason else [])
            + [f"no-cuda-build:{name}" for name in arch.cpu_only]
            + [f"missing-soname:{n}" for n in closure.missing]
        )
        reports[sm] = AuditReport(
            target=cell.id,
            site=str(site),
            sm=Arch.parse(sm).sm(),
            runnable=not reasons,
            reason=reasons[0] if reasons else None,
            reasons=tuple(reasons),
            arch=arch,
            closure=closure,
        )
    return reports, closure


def _cuda_runtime(pins: Mapping[str, str]) -> str | None:
    return next((v for n, v in pins.items() if n.startswith("nvidia-cuda-runtime")), None)


def cell_record(cell: Cell, report: AuditReport, sm: int, pins: Mapping[str, str], lock_note: str) -> dict[str, Any]:
    """The candidate's cell record, as the matrix writes one: its lock, its arch and closure stages from the
    static audit, and build, self-test and suite skipped because they were not run."""
    t0 = time.perf_counter()
    arch, closure = _arch_summary(report), _closure_summary(report)
    torch_arch = arch["packages"].get("torch", {})
    arch_reasons = [r for r in report.reasons if r.startswith("arch-unsupported")]
    closure_reasons = [r for r in report.reasons if r.startswith("missing-soname")]
    stages = [
        Stage("lock", "pass", lock_note),
        Stage("build", "skip", skipped=STATIC_ONLY),
        Stage("selftest", "skip", skipped=STATIC_ONLY),
        Stage(
            "arch",
            "fail" if arch_reasons else "pass",
            f"sm_{sm}: {_named_by_library('torch', torch_arch)} SASS {' '.join(torch_arch.get('sass', [])) or '-'}; "
            f"PTX {' '.join(torch_arch.get('ptx', [])) or '-'}",
            arch_reasons,
            evidence=[
                f"{_named_by_library(n, p)}: no sm_{sm} image (SASS {' '.join(p['sass'])}; PTX {' '.join(p['ptx']) or 'none'})"
                for n, p in sorted(arch["packages"].items())
                if not p["runnable"]
            ],
            record={"cuda_runtime": _cuda_runtime(pins), "arch": arch},
        ),
        Stage(
            "closure",
            "fail" if closure_reasons else "pass",
            "; ".join(closure["missing"]) or "every required soname resolves, LD_LIBRARY_PATH unset",
            closure_reasons,
            evidence=list(closure["missing"]),
            record={"closure": closure},
        ),
        Stage("suite", "skip", skipped=STATIC_ONLY),
    ]
    rec = {"versions": {k: pins[k] for k in VERSION_KEYS if k in pins}, "seconds": {}}
    out = finish_cell(cell, sm, stages, rec, t0)
    out["static_only"] = True
    return out


def _torch_line(report: AuditReport) -> str:
    lib = _arch_summary(report)["packages"].get("torch") or {}
    if not lib:
        return "torch: no GPU code found"
    return f"torch SASS {' '.join(lib.get('sass') or []) or 'none'}; PTX {' '.join(lib.get('ptx') or []) or 'none'}"


def predict(
    matrix: Matrix,
    cell: Cell,
    variants: Sequence[Cell],
    sms: Sequence[int],
    work: Path,
    *,
    audit_wheels: bool = True,
    env: SearchEnv | None = None,
) -> Prediction:
    """Lock the candidate (and its Python variants), install its wheels into our cache, audit them for each sm,
    and make its cell record at ``sms[0]`` (the matrix's target)."""
    t0 = time.perf_counter()
    pred = Prediction()
    lock_file = work / f"{cell.lock_id}.txt"
    for variant in variants:
        dest = work / f"{variant.lock_id}.txt"
        status = lock_candidate(matrix, variant, dest)
        if variant.id == cell.id:
            pred.lock = {
                "state": status.state,
                "detail": status.detail,
                **({"infra": status.infra} if status.infra else {}),
            }
        if status.state in ("written", "fresh"):
            pred.locks[variant.lock_id] = dest.read_text(encoding="utf-8")
    if pred.lock.get("state") not in ("written", "fresh"):
        why = pred.lock.get("detail") or "no lock"
        pred.note = (
            f"not testable here ({pred.lock.get('infra')}): {why}"
            if pred.lock.get("infra")
            else f"the lock does not resolve: {why}"
        )
        if not pred.lock.get("infra"):
            pred.per_sm = {sm: {"runnable": False, "reasons": [f"resolve-failed:{cell.id}"], "torch": ""} for sm in sms}
        return pred
    if not audit_wheels:
        pred.note = "not audited (--audit newest or none): its lock resolves; its wheels were not downloaded"
        return pred
    site, why = install_site(lock_file, cell)
    if site is None:
        pred.note = f"not testable here: {why}"
        return pred
    reports, closure = audit(site, cell, sms, env=env)
    pins: dict[str, str] = {p.name: p.version for p in read_pins(lock_file.read_text(encoding="utf-8"))}
    for sm, report in reports.items():
        pred.per_sm[sm] = {"runnable": report.runnable, "reasons": list(report.reasons), "torch": _torch_line(report)}
    pred.closure = [m.describe() for m in closure.process.missing]
    pred.record = cell_record(cell, reports[sms[0]], sms[0], pins, "resolved now by nox -s watch (not committed)")
    pred.seconds = round(time.perf_counter() - t0, 2)
    return pred


def predicted_expectation(
    pred: Prediction, sms: Sequence[int], *, fallback: Cell
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """``expect`` at the target sm, and ``expect_sm`` where another sm predicts otherwise: a static failure's first
    reason, else a pass (which the build and suite still have to show). Without an audit, ``fallback``'s own
    expectation, copied (the fragment's comment says it was not predicted)."""

    def one(sm: int) -> dict[str, Any]:
        reasons = pred.reasons(sm)
        return {"status": "fail", "reason": reasons[0]} if reasons else {"status": "pass"}

    if not pred.per_sm:

        def plain(e: Any) -> dict[str, Any]:
            return {"status": e.status, **({"reason": e.reason} if e.reason else {})}

        return plain(fallback.expect), {sm: plain(e) for sm, e in sorted(fallback.expect_sm.items())}
    target = one(sms[0])
    return target, {sm: one(sm) for sm in sms[1:] if sm in pred.per_sm and one(sm) != target}


# --- what would change ----------------------------------------------------------------------------------

STATIC_REASONS = ("arch-unsupported", "missing-soname", "resolve-failed")


def _static(reason: str) -> bool:
    return reason.startswith(STATIC_REASONS)


def outcome_change(pred: Prediction, base: Mapping[str, Any] | None, base_id: str, sm: int) -> dict[str, Any]:
    """The candidate's predicted outcome on ``sm`` beside its base cell's recorded one: kind "changed",
    "unchanged" or "unknown", and why in words."""
    if sm not in pred.per_sm:
        return {"kind": "unknown", "text": pred.note or "not audited"}
    now = pred.reasons(sm)
    predicted = (
        f"fail ({', '.join(now)})" if now else f"no static failure (a pass needs the build and suite: {STATIC_ONLY})"
    )
    if base is None or base.get("verdict") == verdict.NOT_TESTABLE:
        return {
            "kind": "unknown",
            "predicted": predicted,
            "text": f"{predicted}; no judged run of {base_id} to compare",
        }
    then = list((base.get("observed") or {}).get("reasons") or [])
    was = f"fails ({', '.join(then)})" if then else "passes" if verdict.complete(base) else "no failure seen"
    if now:
        if set(now) == set(then):
            return {"kind": "unchanged", "predicted": predicted, "text": f"{base_id} {was}: the same failure"}
        return {"kind": "changed", "predicted": predicted, "text": f"{base_id} {was} -> {predicted}"}
    static_then = [r for r in then if _static(r)]
    if static_then:
        return {
            "kind": "changed",
            "predicted": predicted,
            "text": f"{base_id} {was}; its static failure goes ({', '.join(static_then)} no longer found); whether "
            "it passes rests on the build and suite",
        }
    if then:
        return {
            "kind": "unknown",
            "predicted": predicted,
            "text": f"{base_id} {was}, a failure of its build or suite: the static audit cannot say",
        }
    return {"kind": "unchanged", "predicted": predicted, "text": f"{base_id} {was}; no static failure either"}


def _names(claim: verdict.Claim) -> set[str]:
    return set(claim.cells) | {v for v in claim.says.values() if isinstance(v, str)}


def _lines(judged: Mapping[str, Any]) -> list[str]:
    return [verdict.evidence_line(e) + (" [context]" if e.get("context") else "") for e in judged["evidence"]]


def predict_claims(
    claims: Sequence[verdict.Claim],
    cells: Mapping[str, Mapping[str, Any]],
    probes: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any],
    *,
    base_id: str,
    row: bool,
    before: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Each claim the candidate touches, judged before and after it: the candidate takes its base cell's place
    (as that cell's next version), and, for a torch candidate (``row``), is one more row of the claims that read a
    list of releases. A claim whose check needs the cell suite is "needs-suite": not predictable statically."""
    cand_id = str(record["id"])
    touched = [c for c in claims if base_id in _names(c) or (row and c.check in ROW_CHECKS)]
    if before is None:
        before = {j["id"]: j for j in verdict.judge_claims(list(touched), cells, probes)}
    after_cells = dict(cells) | {base_id: dict(record, id=base_id), cand_id: record}
    out = []
    for claim in touched:
        b = before[claim.id]
        entry: dict[str, Any] = {"claim": claim.id, "before": b["verdict"]}
        if claim.check not in STATIC_CHECKS and base_id in _names(claim):
            entry |= {
                "after": None,
                "kind": "needs-suite",
                "why": [f"its check ({claim.check}) reads {base_id}'s cell suite: {STATIC_ONLY}"],
            }
            out.append(entry)
            continue
        judged = claim if not (row and claim.check in ROW_CHECKS) else replace(claim, cells=(*claim.cells, cand_id))
        a = verdict.judge_claims([judged], after_cells, probes)[0]
        old, new = _lines(b), _lines(a)
        why = [f"+ {line}" for line in new if line not in old] + [f"- {line}" for line in old if line not in new]
        kind = "verdict-changes" if a["verdict"] != b["verdict"] else "evidence-changes" if why else "unchanged"
        entry |= {"after": a["verdict"], "kind": kind, "why": why}
        if a.get("missing") and kind == "verdict-changes":
            entry["missing"] = list(a["missing"])
        out.append(entry)
    return out


def results_sms(target: int, probes: Iterable[Mapping[str, Any]], cells: Iterable[Mapping[str, Any]]) -> list[int]:
    """The matrix's target sm first, then the compute capabilities of the GPUs the recorded runs saw (the GPU
    runner's H200 is sm_90): the sms each candidate's kernels are audited for."""
    seen = [
        int(sm)
        for r in (*probes, *cells)
        if (sm := ((r.get("gpu") or {}).get("sm"))) and (r.get("gpu") or {}).get("present")
    ]
    return [target, *sorted(set(seen) - {target}, reverse=True)]

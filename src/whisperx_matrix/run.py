"""`nox -s matrix`: build (or reuse) each selected cell, audit it, run the cell suite in it, judge it, and
judge the document's claims from what was observed. A cell's outcome is data; nothing escapes as an error
except the final "some outcome was unexpected".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import build as builds
from . import lock as locks
from . import matrix as matrices
from . import paths, speech, tools, verdict
from .errors import FatalError, SelfTestError, UnexpectedOutcomeError

RESULT_SCHEMA = 1
CHECK_NAMES = ("lock", "build", "selftest", "arch", "closure", "suite")
_print_lock = threading.Lock()


def _say(msg: str) -> None:
    with _print_lock:
        print(msg, file=sys.stderr, flush=True)


def _check(status: str, detail: str = "", *, expected: bool = True, seconds: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "expected": expected, "detail": detail}
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
    return out


def machine() -> dict[str, Any]:
    """What the run ran on, for the report (no host names, no paths, no secrets)."""
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1]) // (1024 * 1024)
    except (OSError, StopIteration, ValueError):
        pass
    gpu = None
    try:
        from . import doctor

        found = doctor.collect()
        if found.gpus:
            g = found.gpus[0]
            gpu = {"name": g.name, "compute_capability": f"{g.sm // 10}.{g.sm % 10}" if g.sm else None,
                   "driver": found.driver, "cuda": found.cuda}
    except Exception:  # noqa: BLE001 - the report says "no GPU seen" rather than fail the run
        gpu = None
    from .secrets import token_present

    return {
        "description": f"{os.cpu_count()} cores, {mem} GiB, {'GPU: ' + gpu['name'] if gpu else 'no GPU'}",
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "gpu": gpu,
        "uv": tools.run([tools.uv_bin(), "--version"]).stdout.strip(),
        "hf_token_present": bool(token_present().get("HF_TOKEN")),
    }


def _arch_summary(report: Any) -> dict[str, Any]:
    arch = report.arch
    packages = {}
    for p in arch.packages:
        name = p.package.split()[0]
        packages[name] = {"status": p.status, "runnable": p.runnable, "sass": list(p.sass), "ptx": list(p.ptx),
                          "via": p.via}
    # torch's own kernels live in libtorch_cuda.so; the package total also counts bundled CUDA libraries
    # (torch 2.5.1's compute_90 PTX is cuSPARSELt's), so claims about "torch's kernels" cite this file.
    for lib in arch.libraries:
        if lib.path.endswith("torch/lib/libtorch_cuda.so") and "torch" in packages:
            packages["torch"].update(sass=list(lib.sass), ptx=list(lib.ptx), library=lib.path,
                                     package_sass=packages["torch"]["sass"], package_ptx=packages["torch"]["ptx"])
    return {"target": arch.target, "runnable": arch.runnable, "reason": arch.reason, "packages": packages,
            "torch_arch_list": list(arch.torch_arch_list or []), "files": arch.files, "seconds": arch.seconds}


def _closure_summary(report: Any) -> dict[str, Any]:
    c = report.closure
    return {
        "runnable": c.runnable,
        "missing_sonames": list(c.missing),
        "missing": [m.describe() for m in c.process.missing],
        "loaded": {item.soname: f"{item.path} ({item.package})" for item in c.process.loaded},
        "mixed_cuda": c.process.mixed_cuda,
        "cuda_majors": {k: list(v) for k, v in c.process.cuda_majors.items()},
        "ld_library_path_dependent": bool(c.depends_on_ld_library_path),
        "seconds": c.seconds,
    }


def run_cell(m: matrices.Matrix, cell: matrices.Cell, *, sm: int, work: Path, suite: bool = True) -> dict[str, Any]:
    """Every stage for one cell. Returns the cell's result dict (see report.py for the schema)."""
    t_cell = time.perf_counter()
    expected = cell.expected(sm)
    rec: dict[str, Any] = {
        "id": cell.id, "summary": cell.summary, "channel": cell.channel, "cuda": cell.cuda,
        "expected": {"status": expected.status, "reason": expected.reason},
        "checks": {name: _check("skip", "not run") for name in CHECK_NAMES},
        "versions": {}, "evidence": [], "seconds": {},
    }
    reasons: list[str] = []

    def finish(note: str | None = None, testable: bool = True) -> dict[str, Any]:
        unique = list(dict.fromkeys(reasons))
        status = "not-testable" if not testable else ("fail" if unique else "pass")
        rec["observed"] = {"status": status, "reasons": unique}
        if note:
            rec["observed"]["note"] = note
        rec["verdict"] = verdict.judge_cell(expected, unique, testable=testable)
        rec["unexpected"] = rec["verdict"] in verdict.UNEXPECTED
        for check in rec["checks"].values():  # a failing check is expected only if its reason was expected
            if check["status"] == "fail":
                check["expected"] = expected.reason is not None and expected.reason in check.get("reasons", [])
        rec["seconds"]["total"] = round(time.perf_counter() - t_cell, 2)
        return rec

    # lock
    t0 = time.perf_counter()
    status = locks.check(m, [cell])[0]
    if status.state == "unreachable":
        rec["checks"]["lock"] = _check("skip", status.detail)
        return finish(note=status.detail, testable=False)
    if status.state != "fresh":
        reasons.append(f"lock-{status.state}:{cell.lock_id}")
        rec["checks"]["lock"] = _check("fail", status.line(), seconds=time.perf_counter() - t0)
        rec["checks"]["lock"]["reasons"] = reasons[-1:]
        return finish()
    rec["checks"]["lock"] = _check("pass", f"constraints/{cell.lock_id}.txt is fresh", seconds=time.perf_counter() - t0)

    # build + self-test
    t0 = time.perf_counter()
    try:
        result = builds.build(m, cell, progress=lambda msg: _say(f"  {msg}"))
        env_dir, st = result.env, result.selftest
        selftest_ran_now = result.state == "built"
        rec["checks"]["build"] = _check("pass", f"{result.state}; {result.patches or 'no patches'}".replace("\n", "; "),
                                        seconds=time.perf_counter() - t0)
    except SelfTestError as exc:
        env_dir, st = Path(exc.record["env"]), exc.record
        selftest_ran_now = not exc.record.get("reused")
        rec["checks"]["build"] = _check("pass", "built; self-test failed, so it is not linked", seconds=time.perf_counter() - t0)
    except FatalError as exc:
        reason = f"build-failed:{type(exc).__name__}"
        reasons.append(reason)
        rec["checks"]["build"] = _check("fail", str(exc), seconds=time.perf_counter() - t0)
        rec["checks"]["build"]["reasons"] = [reason]
        rec["evidence"].append(f"build: {exc}")
        return finish()
    rec["seconds"]["build"] = round(time.perf_counter() - t0, 2)
    if st:
        rec["versions"] = {k: v for k, v in st.get("versions", {}).items() if v}
        # A reused build carries the self-test it passed (or failed) when it was built: not this run's time.
        rec["seconds"]["selftest"] = st.get("seconds") if selftest_ran_now else 0.0
        if selftest_ran_now:
            rec["seconds"]["build"] = round(max(0.0, rec["seconds"]["build"] - (st.get("seconds") or 0)), 2)
        if st.get("passed"):
            tr = st["transcription"]
            rec["checks"]["selftest"] = _check("pass", f"WER {tr['wer']:.0%} on {st['audio_seconds']:.0f} s of speech (CPU)")
        else:
            reason = verdict.classify(st["failure"].split(": ", 1)[1] if ": " in st["failure"] else st["failure"])
            reasons.append(reason)
            rec["checks"]["selftest"] = _check("fail", st["failure"])
            rec["checks"]["selftest"]["reasons"] = [reason]
            rec["evidence"].append(f"self-test: {st['failure']}")

    # audits (no GPU needed)
    t0 = time.perf_counter()
    from .audit import audit_site

    site = paths.site_packages(env_dir)
    report = audit_site(site, sm, python=env_dir / "bin" / "python", ld_library_path=os.environ.get("LD_LIBRARY_PATH"),
                        progress=False, label=cell.id)
    rec["arch"], rec["closure"] = _arch_summary(report), _closure_summary(report)
    rec["seconds"]["audit"] = round(time.perf_counter() - t0, 2)
    arch_reasons = [r for r in report.reasons if r.startswith("arch-unsupported")]
    closure_reasons = [r for r in report.reasons if r.startswith("missing-soname")]
    torch_arch = rec["arch"]["packages"].get("torch", {})
    rec["checks"]["arch"] = _check("fail" if arch_reasons else "pass",
                                   f"sm_{sm}: torch SASS {' '.join(torch_arch.get('sass', [])) or '-'}; "
                                   f"PTX {' '.join(torch_arch.get('ptx', [])) or '-'}")
    rec["checks"]["arch"]["reasons"] = arch_reasons
    rec["checks"]["closure"] = _check("fail" if closure_reasons else "pass",
                                      "; ".join(rec["closure"]["missing"]) or "every required soname resolves, LD_LIBRARY_PATH unset")
    rec["checks"]["closure"]["reasons"] = closure_reasons
    reasons += arch_reasons + closure_reasons
    rec["evidence"] += rec["closure"]["missing"]
    for name, pkg in rec["arch"]["packages"].items():
        if not pkg["runnable"]:
            rec["evidence"].append(f"{name}: no sm_{sm} image (SASS {' '.join(pkg['sass'])}; PTX {' '.join(pkg['ptx']) or 'none'})")

    # the cell suite, in the cell's own python
    if suite:
        t0 = time.perf_counter()
        cell_work = work / cell.id
        cell_work.mkdir(parents=True, exist_ok=True)
        audit_json = cell_work / "audit-summary.json"
        audit_json.write_text(json.dumps({
            "reasons": list(report.reasons),
            "arch_evidence": [e for e in rec["evidence"] if "no sm_" in e],
            "closure_evidence": rec["closure"]["missing"],
        }))
        sample = speech.selftest_speech()
        text_file = cell_work / "reference.txt"
        text_file.write_text(sample.text)
        results = cell_work / "suite.json"
        results.unlink(missing_ok=True)
        env = builds.clean_env() | {
            "WXM_CELL_ID": cell.id, "WXM_TARGET_SM": str(sm), "WXM_SPEECH_WAV": str(sample.wav),
            "WXM_SPEECH_TEXT": str(text_file), "WXM_AUDIT_JSON": str(audit_json), "WXM_CELL_RESULTS": str(results),
        }
        proc = tools.run([str(env_dir / "bin" / "python"), "-m", "pytest", str(m.root / "tests" / "cell"), "-q",
                          f"--junitxml={cell_work / 'junit.xml'}"], cwd=m.root, env=env, timeout=1800)
        data = json.loads(results.read_text()) if results.exists() else None
        rec["seconds"]["suite"] = round(time.perf_counter() - t0, 2)
        if data is None:
            reason = "suite-crashed"
            rec["checks"]["suite"] = _check("fail", proc.last_error_line())
            rec["checks"]["suite"]["reasons"] = [reason]
            reasons.append(reason)
        else:
            rec["suite"] = data
            failed = [t for t in data["tests"] if t["outcome"] == "failed"]
            skipped = [t for t in data["tests"] if t["outcome"] == "skipped"]
            suite_reasons = list(dict.fromkeys(verdict.classify(t.get("error", "")) for t in failed))
            passed = len(data["tests"]) - len(failed) - len(skipped)
            detail = f"{passed} passed, {len(failed)} failed, {len(skipped)} skipped"
            if failed:
                detail += f"; first failure: {failed[0]['test']}: {failed[0].get('error', '')[:160]}"
            if skipped:
                detail += f"; skipped: {skipped[0].get('skip_reason', '')}"
            rec["checks"]["suite"] = _check("fail" if failed else "pass", detail)
            rec["checks"]["suite"]["reasons"] = suite_reasons
            reasons += suite_reasons
            rec["evidence"] += [f"{t['test']}: {t.get('error', '')}" for t in failed]
    return finish()


def run_matrix(m: matrices.Matrix, cells: list[matrices.Cell], *, sm: int, jobs: int, out: Path,
               suite: bool = True, claims_path: Path | None = None) -> dict[str, Any]:
    t_run = time.perf_counter()
    claims = verdict.load_claims(claims_path or m.root / "claims.toml", m)  # rejected at load if it names a bad cell
    # One scratch folder per run: two matrix runs at once (CI shards, pytest workers) never share files.
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matrix-work-", dir=paths.cache_dir()))
    tools.require("ffmpeg")
    speech.selftest_speech()  # made once, before the workers need it
    results: dict[str, dict[str, Any]] = {}
    _say(f"matrix: {len(cells)} cells, target sm_{sm}, {jobs} at a time")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_cell, m, c, sm=sm, work=work, suite=suite): c for c in cells}
        for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            cell = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a crash in one cell must not lose the others
                rec = {"id": cell.id, "summary": cell.summary, "channel": cell.channel, "cuda": cell.cuda,
                       "expected": cell.expected(sm).__dict__, "observed": {"status": "fail", "reasons": ["matrix-crashed"]},
                       "verdict": "unexpected-failure", "unexpected": True, "versions": {}, "seconds": {},
                       "checks": {name: _check("skip", "not run") for name in CHECK_NAMES},
                       "evidence": [f"{type(exc).__name__}: {exc}"]}
            results[cell.id] = rec
            mark = "UNEXPECTED " if rec["unexpected"] else ""
            why = ", ".join(rec["observed"]["reasons"]) or rec["observed"].get("note", "")
            _say(f"[{n}/{len(cells)}] {cell.id}: {mark}{rec['verdict']}{f' ({why})' if why else ''} "
                 f"[{rec['seconds'].get('total', 0):.0f} s]")
    shutil.rmtree(work, ignore_errors=True)
    ordered = [results[c.id] for c in cells]
    stage_totals = {k: round(sum(r["seconds"].get(k) or 0 for r in ordered), 2)
                    for k in ("build", "selftest", "audit", "suite")}
    result = {
        "schema": RESULT_SCHEMA,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target_sm": sm,
        "machine": machine(),
        "selectors": [c.id for c in cells],
        "cells": ordered,
        "claims": verdict.judge_claims(claims, results),
        "totals": {
            "cells": len(ordered),
            "as_expected": sum(r["verdict"] in ("as-expected", "failed-as-expected") for r in ordered),
            "unexpected": sum(bool(r["unexpected"]) for r in ordered),
            "not_testable": sum(r["verdict"] == "not-testable" for r in ordered),
        },
        "seconds": {"total": round(time.perf_counter() - t_run, 2), **stage_totals},
    }
    return result


def print_summary(result: dict[str, Any]) -> None:
    t = result["totals"]
    print(f"\n{t['cells']} cells on sm_{result['target_sm']}: {t['as_expected']} as expected, "
          f"{t['unexpected']} unexpected, {t['not_testable']} not testable here "
          f"[{result['seconds']['total']:.0f} s]\n")
    print(f"{'cell':<28} {'expected':<44} verdict")
    for r in result["cells"]:
        exp = r["expected"]["status"] + (f" ({r['expected']['reason']})" if r["expected"].get("reason") else "")
        why = ", ".join(r["observed"]["reasons"])
        print(f"{r['id']:<28} {exp:<44} {r['verdict']}{f' ({why})' if why and r['verdict'] != 'failed-as-expected' else ''}")
    print(f"\n{'claim':<22} {'verdict':<13} the document says")
    for c in result["claims"]:
        print(f"{c['id']:<22} {c['verdict']:<13} {c['quote']}")
        print(f"{'':<36} evidence: {c['evidence'][:220]}")


def cmd_matrix(args: argparse.Namespace) -> int:
    m = matrices.load()
    cells = m.select(args.selectors)
    sm = args.sm or m.target_sm
    jobs = args.jobs or max(1, min(len(cells), os.cpu_count() or 1))
    result = run_matrix(m, cells, sm=sm, jobs=jobs, out=Path(args.out), suite=not args.no_suite)
    from . import report

    written = report.write_report(result, Path(args.out))
    if args.update_readme:
        report.update_readme(m.root / "README.md", result)
    print_summary(result)
    print(f"\nreport: {', '.join(str(p) for p in written.values())}")
    if result["totals"]["unexpected"]:
        bad = [r["id"] for r in result["cells"] if r["unexpected"]]
        raise UnexpectedOutcomeError(f"{len(bad)} unexpected outcome(s): {', '.join(bad)}",
                                     hint=f"see {Path(args.out) / 'matrix.md'} for the evidence")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matrix", help="build, audit and test the selected cells; judge the document's claims")
    p.add_argument("selectors", nargs="*", metavar="CELL", help="cells, aliases or globs (default: all)")
    p.add_argument("--sm", type=int, default=None, help="target compute capability (default: matrix.toml's, 120)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="cells at a time (default: the cores)")
    p.add_argument("--out", default="reports", help="report folder (default: reports/)")
    p.add_argument("--no-suite", action="store_true", help="skip the in-cell pytest suite (builds and audits only)")
    p.add_argument("--update-readme", action="store_true", help="rewrite README.md's claims table from this run")
    p.set_defaults(func=cmd_matrix)

"""Expected against observed: reasons from error lines, a verdict per cell, and a verdict per claim.

Cell verdicts: as-expected, failed-as-expected, wrong-reason, unexpected-pass, unexpected-failure,
not-testable. Only the middle three are unexpected. A failure counts as expected only when the
expected reason is among the observed ones. A cell that could not be locked, downloaded or built for an
infrastructure reason (network, disk, index, missing lock) is not-testable: that is never evidence.

Claim verdicts: confirmed, contradicted, not-testable. Each is computed here from observations: the cell
results of one run, or the union of the runs being merged, plus GPU probe records. Every evidence item
carries its basis:

- ``measured``: seen in a run (a cell's audit, suite, versions);
- ``emulated``: measured under a named emulation (``CUDA_FORCE_PTX_JIT=1``, a stand-in index);
- ``cited``: from a table that names its source (title and section).

A check that needs a cell or an observation it does not have says which, and returns not-testable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from .cudafacts import CUDA_DRIVERS, GPU_DRIVER_BRANCH, GPU_DRIVER_BRANCH_SOURCE
from .errors import ConfigError, did_you_mean
from .matrix import Expectation, Matrix, read_toml

# A cell's verdict: its observed outcome against its expectation. The one home of this vocabulary and its totals.
VERDICTS = (
    "as-expected",
    "failed-as-expected",
    "wrong-reason",
    "unexpected-pass",
    "unexpected-failure",
    "not-testable",
    "incomplete",
)
AS_EXPECTED = frozenset({"as-expected", "failed-as-expected"})
UNEXPECTED = frozenset({"wrong-reason", "unexpected-pass", "unexpected-failure"})
NOT_TESTABLE = "not-testable"
# Nothing failed, but what decides the cell was not observed: its suite did not run, or every test was skipped.
INCOMPLETE = "incomplete"
BASES = ("measured", "emulated", "cited")
# A claim's verdict. "mixed": the claim has parts, and some were confirmed while others were contradicted.
CLAIM_VERDICTS = ("confirmed", "contradicted", "mixed", "not-testable")


def totals(cells: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many cells came out as expected, unexpected, or not testable."""
    return {
        "cells": len(cells),
        "as_expected": sum(c.get("verdict") in AS_EXPECTED for c in cells),
        "unexpected": sum(bool(c.get("unexpected")) or c.get("verdict") in UNEXPECTED for c in cells),
        "not_testable": sum(c.get("verdict") == NOT_TESTABLE for c in cells),
        **({"incomplete": n} if (n := sum(c.get("verdict") == INCOMPLETE for c in cells)) else {}),
    }


_REASON_RE = re.compile(r"^([a-z][a-z0-9-]*:[\w.+\-=]+)")


def classify(line: str) -> str:
    """A reason token from an error line. Already-tokenised lines (``missing-soname:libx.so.1: ...``) keep
    their token; known exception shapes get a stable one; anything else is ``ExcType:first words``."""
    line = line.strip()
    if m := _REASON_RE.match(line):
        return m.group(1).rstrip(":")
    exc, _, msg = line.partition(": ")
    # pytest reports `assert x, "reason:..."` as "AssertionError: reason:..." and pytest.fail as "Failed: ...".
    if exc in ("AssertionError", "Failed") and (m := _REASON_RE.match(msg)):
        return m.group(1).rstrip(":")
    exc = exc.split(".")[-1].strip() or "Error"
    if "use_auth_token" in msg:
        return f"{exc}:use_auth_token"
    if m := re.search(r"(lib[\w.+-]+\.so(?:\.\d+)*)\S* (?:is not found|cannot open shared object)", msg) or re.search(
        r"(lib[\w.+-]+\.so(?:\.\d+)*): cannot open shared object", msg
    ):
        return f"missing-soname:{m.group(1)}"
    if "Weights only load failed" in msg:
        return f"{exc}:weights_only"
    if "no kernel image is available" in msg:
        return "arch-unsupported"
    if m := re.search(r"No module named '([\w.]+)'", msg):
        return f"missing-module:{m.group(1)}"
    if m := re.search(r"module '([\w.]+)' has no attribute '(\w+)'", msg):
        return f"{exc}:{m.group(1)}.{m.group(2)}"
    words = re.sub(r"[^\w.]+", "-", msg)[:48].strip("-")
    return f"{exc}:{words}" if words else exc


def judge_cell(expected: Expectation, reasons: list[str], *, testable: bool = True, complete: bool = True) -> str:
    """``complete``: the parts that decide a cell were observed (its suite ran a test that was not skipped). A
    failure decides on its own; the absence of one decides nothing until the suite has run."""
    if not testable:
        return NOT_TESTABLE
    if not reasons and not complete:
        return INCOMPLETE
    if expected.status == "pass":
        return "as-expected" if not reasons else "unexpected-failure"
    if not reasons:
        return "unexpected-pass"
    return "failed-as-expected" if expected.reason in reasons else "wrong-reason"


# --- evidence -----------------------------------------------------------------------------------------


def measured(text: str, *, cell: str | None = None) -> dict[str, Any]:
    return {"basis": "measured", "text": text, **({"cell": cell} if cell else {})}


def emulated(text: str, *, emulation: str, where: str | None = None) -> dict[str, Any]:
    return {"basis": "emulated", "text": text, "emulation": emulation, **({"where": where} if where else {})}


def cited(text: str, *, source: str) -> dict[str, Any]:
    return {"basis": "cited", "text": text, "source": source}


def evidence_line(item: Mapping[str, Any] | str) -> str:
    """One evidence item as text: ``measured: ...``, ``emulated (how): ...``, ``cited (source): ...``."""
    if isinstance(item, str):
        return item
    basis = item.get("basis", "?")
    if basis == "emulated":
        return f"emulated ({item.get('emulation')}): {item.get('text')}"
    if basis == "cited":
        return f"cited ({item.get('source')}): {item.get('text')}"
    return f"{basis}: {item.get('text')}"


# Cited facts come from cudafacts.CUDA_DRIVERS (NVIDIA's table, cited there) and name this source. Nothing else in
# this module states a fact it did not observe.
CUDA_RELEASE_NOTES = "NVIDIA CUDA Toolkit Release Notes, Table 3 (toolkit driver version)"


# --- claims -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    id: str
    quote: str
    cells: tuple[str, ...]
    check: str
    says: Mapping[str, Any]


def load_claims(path: Path, matrix: Matrix) -> list[Claim]:
    """claims.toml, validated: every cell named must exist, every check must be known."""
    data, _ = read_toml(path, missing_hint="claims.toml sits beside matrix.toml")
    claims = []
    ids = set(matrix.ids())
    for raw in data.get("claims", []):
        cid = raw.get("id", "?")
        for key in ("id", "quote", "cells", "check"):
            if key not in raw:
                raise ConfigError(f"{path.name}: claim {cid!r} lacks {key!r}", hint="see the header of claims.toml")
        named = list(raw["cells"]) + [
            v for k, v in raw.get("says", {}).items() if k.endswith("cell") or k in _CELL_KEYS
        ]
        for cell in named:
            if cell not in ids:
                raise ConfigError(
                    f"{path.name}: claim {cid!r} names unknown cell {cell!r}{did_you_mean(cell, ids)}",
                    hint=f"known cells: {', '.join(sorted(ids))}",
                )
        if raw["check"] not in CHECKS:
            raise ConfigError(
                f"{path.name}: claim {cid!r} has unknown check {raw['check']!r}{did_you_mean(raw['check'], CHECKS)}",
                hint=f"known checks: {', '.join(CHECKS)}",
            )
        claims.append(Claim(cid, raw["quote"], tuple(raw["cells"]), raw["check"], raw.get("says", {})))
    if len({c.id for c in claims}) != len(claims):
        raise ConfigError(f"{path.name}: duplicate claim ids", hint="give each claim its own id")
    return claims


_CELL_KEYS = ("old", "new", "patched", "unpatched", "upstream", "proxy", "today", "guide")


@dataclass
class Observations:
    """What the claims are judged on: cell results by id, and GPU probe records (the cell suite run in an env
    the matrix did not build, e.g. a GPU machine's own stack)."""

    cells: Mapping[str, Mapping[str, Any]]
    probes: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def get(self, cell: str) -> Mapping[str, Any] | None:
        rec = self.cells.get(cell)
        return rec if rec is not None and rec.get("verdict") != "not-testable" else None

    def why_missing(self, cell: str, what: str = "") -> str:
        """Why a cell's observations are not there: not run, not testable (infra), or ``what`` not observed."""
        rec = self.cells.get(cell)
        if rec is None:
            return f"{cell}: not in the results judged"
        if rec.get("verdict") != "not-testable" and what:
            return f"{cell}: its result has no {what}"
        note = (rec.get("observed") or {}).get("note") or "not testable here"
        return f"{cell}: {note}"

    def gpu_records(self) -> list[tuple[str, Mapping[str, Any]]]:
        """(where, gpu observation) from every cell suite that saw a GPU, cells first, then probes."""
        out = []
        for cid in sorted(self.cells):
            gpu = self.cells[cid].get("gpu") or {}
            if gpu.get("present"):
                out.append((f"cell {cid}", gpu))
        for probe in sorted(self.probes, key=lambda p: str(p.get("label"))):
            gpu = probe.get("gpu") or {}
            if gpu.get("present"):
                out.append((f"probe {probe.get('label')}", gpu))
        return out


@dataclass
class Judgement:
    """A claim's verdict with its evidence and what it lacked. ``parts``: (part, verdict) for a claim of several
    statements; ``partial``: what part of the claim the verdict does not cover (shown beside it)."""

    verdict: str
    evidence: list[dict[str, Any]]
    missing: list[str] = field(default_factory=list)
    partial: str | None = None
    parts: list[tuple[str, str]] = field(default_factory=list)


# An evidence item shown beside a verdict that it did not decide.
CONTEXT: dict[str, Any] = {"context": True}


def combine(
    parts: Sequence[tuple[str, str]], evidence: list[dict[str, Any]], missing: list[str], *, partial: str | None = None
) -> Judgement:
    """One verdict from a claim's parts: confirmed or contradicted where every judged part agrees, mixed where
    they disagree, not-testable where none was judged. A part not judged is named in ``partial``."""
    judged = [v for _, v in parts if v != "not-testable"]
    if not judged:
        verdict = "not-testable"
    elif all(v == "confirmed" for v in judged):
        verdict = "confirmed"
    elif all(v == "contradicted" for v in judged):
        verdict = "contradicted"
    else:
        verdict = "mixed"
    unjudged = [name for name, v in parts if v == "not-testable"]
    gaps = [partial] if partial else []
    if judged and unjudged:
        gaps.append("not observed: " + ", ".join(f"'{n}'" for n in unjudged))
    return Judgement(verdict, evidence, missing, "; ".join(gaps) or None, list(parts) if len(parts) > 1 else [])


def _untested(obs: Observations, cells: Iterable[str]) -> Judgement:
    missing = [obs.why_missing(c) for c in cells]
    return Judgement("not-testable", [], missing)


def _torch_lib(rec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """torch's own kernels (libtorch_cuda.so), as the arch audit read them; None if not audited."""
    return ((rec.get("arch") or {}).get("packages") or {}).get("torch")


def _sm_num(arch: str) -> int:
    return int(re.sub(r"\D", "", arch.split()[0]) or 0)


def _v(text: str | None) -> Version:
    try:
        return Version(text or "0")
    except InvalidVersion:
        return Version("0")


def _reasons(rec: Mapping[str, Any]) -> list[str]:
    return list((rec.get("observed") or {}).get("reasons") or [])


# --- what a cell's record observed -----------------------------------------------------------------


def is_gpu_test(test: Mapping[str, Any]) -> bool:
    """A cell-suite test that exercises the GPU: marked ``gpu`` (recorded by the suite), or, in results written
    before the mark was recorded, named ``test_gpu_*``."""
    return bool(test.get("gpu")) or str(test.get("test", "")).startswith("test_gpu")


def _part(tests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ran = [t for t in tests if t.get("outcome") != "skipped"]
    skipped = [t for t in tests if t.get("outcome") == "skipped"]
    return {
        "ran": len(ran),
        "failed": sum(t.get("outcome") == "failed" for t in ran),
        "skipped": len(skipped),
        "skip_reasons": list(dict.fromkeys(str(t.get("skip_reason") or "no reason given") for t in skipped)),
    }


def suite_parts(rec: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The cell suite's tests by part, ``cpu`` and ``gpu``: how many ran, failed and were skipped (with why).
    None when the suite did not run."""
    suite = rec.get("suite")
    if not isinstance(suite, Mapping) or not isinstance(suite.get("tests"), list):
        return None
    tests = suite["tests"]
    return {
        "cpu": _part([t for t in tests if not is_gpu_test(t)]),
        "gpu": _part([t for t in tests if is_gpu_test(t)]),
    }


# How a cell of another platform says its build, self-test and suite were not run here (judged statically).
NOT_RUN_PLATFORM = "not-run: platform"


def judged_statically(rec: Mapping[str, Any]) -> bool:
    """A cell whose wheels were audited but never built or run here (another platform's)."""
    build = ((rec.get("checks") or {}).get("build") or {}).get("detail") or ""
    return build.startswith(NOT_RUN_PLATFORM)


def unobserved(rec: Mapping[str, Any]) -> list[str]:
    """What of a cell was not observed, each with why: the suite (not run), its CPU tests (every one skipped),
    its GPU part (no GPU test ran). Empty when everything ran. A missing part is never counted as passing."""
    parts = suite_parts(rec)
    if parts is None:
        why = ((rec.get("checks") or {}).get("suite") or {}).get("detail") or "no suite in this result"
        return [f"suite: not run ({why})"]
    out = []
    cpu, gpu = parts["cpu"], parts["gpu"]
    if not cpu["ran"]:
        out.append(f"CPU tests: none ran ({'; '.join(cpu['skip_reasons']) or 'the suite held none'})")
    if not gpu["ran"]:
        out.append(f"GPU part: not run ({'; '.join(gpu['skip_reasons']) or 'the suite held no GPU test'})")
    return out


def complete(rec: Mapping[str, Any]) -> bool:
    """The parts that decide a cell on any machine ran: its suite ran, with at least one CPU test not skipped.
    (The GPU part needs a GPU; where it was not run, claims say so in their ``partial``.)"""
    parts = suite_parts(rec)
    return parts is not None and parts["cpu"]["ran"] > 0


def _outcome(rec: Mapping[str, Any]) -> str:
    """A cell's outcome in words, saying what was not observed."""
    reasons = _reasons(rec)
    if reasons:
        return "fails: " + ", ".join(reasons)
    gaps = unobserved(rec)
    if not complete(rec):
        return "no failure seen, but not judged: " + "; ".join(gaps)
    if gaps:
        return "passes its static and CPU checks; " + "; ".join(gaps)
    return "passes every check, GPU part included"


def _pass_state(rec: Mapping[str, Any]) -> tuple[str, str | None]:
    """("fails" | "passes" | "unobserved", partial): partial names the part a pass did not cover."""
    if _reasons(rec):
        return "fails", None
    if not complete(rec):
        return "unobserved", None
    parts = suite_parts(rec) or {}
    return "passes", None if parts.get("gpu", {}).get("ran") else "CPU and static only; GPU part not run"


def _ver(rec: Mapping[str, Any], pkg: str) -> str:
    return str((rec.get("versions") or {}).get(pkg) or "?")


def _kernels(rec: Mapping[str, Any]) -> str:
    lib = _torch_lib(rec) or {}
    return f"SASS {' '.join(lib.get('sass') or []) or 'none'}; PTX {' '.join(lib.get('ptx') or []) or 'none'}"


def _has_sm(rec: Mapping[str, Any], sm: int) -> bool:
    return f"sm_{sm}" in ((_torch_lib(rec) or {}).get("sass") or [])


def check_driver_minimum(claim: Claim, obs: Observations) -> Judgement:
    """The driver a GPU family needs is the first driver branch that supports it (cited, with its source); that
    alone decides. Each cell's bundled CUDA runtime (measured) and the driver that runtime needs (cited) are
    context: a runtime's floor is lower than a GPU's (CUDA 12.x runs from R525 with minor-version compatibility)."""
    sm, stated = int(claim.says["sm"]), int(claim.says["driver"])
    ev: list[dict[str, Any]] = []
    runtimes: dict[str, str] = {}
    missing = []
    for c in claim.cells:
        r = obs.get(c)
        if not (r and _torch_lib(r) and r.get("cuda_runtime")):
            missing.append(obs.why_missing(c, "torch arch audit or CUDA runtime version"))
            continue
        has = _has_sm(r, sm)
        ev.append(
            measured(
                f"{c}: torch {_ver(r, 'torch')} {'carries' if has else 'has no'} sm_{sm} SASS; "
                f"bundles CUDA runtime {r['cuda_runtime']}",
                cell=c,
            )
            | CONTEXT
        )
        runtimes.setdefault(".".join(str(r["cuda_runtime"]).split(".")[:2]), c)
    for runtime in sorted(runtimes, key=_v):
        cite = next((d for d in CUDA_DRIVERS.values() if d.cuda == runtime), None)
        if cite is None:
            missing.append(
                f"{runtimes[runtime]}: no cited driver floor for its CUDA {runtime} runtime (cudafacts.CUDA_DRIVERS)"
            )
        else:
            ev.append(
                cited(
                    f"the CUDA {runtime} runtime runs from driver {cite.minor_compat_driver} (minor-version "
                    f"compatibility); its toolkit's own driver is {cite.toolkit_driver}",
                    source=CUDA_RELEASE_NOTES,
                )
                | CONTEXT
            )
    fact = GPU_DRIVER_BRANCH.get(sm // 10)
    if fact is None:
        return Judgement("not-testable", ev, missing + [f"no cited first driver branch for sm_{sm} GPUs"])
    branch, why = fact
    ev.append(cited(f"sm_{sm}: {why}: first branch R{branch}", source=GPU_DRIVER_BRANCH_SOURCE))
    return Judgement("contradicted" if branch > stated else "confirmed", ev, missing)


def check_max_arch(claim: Claim, obs: Observations) -> Judgement:
    cell = claim.cells[0]
    r = obs.get(cell)
    lib = _torch_lib(r) if r else None
    if r is None or lib is None:
        return Judgement("not-testable", [], [obs.why_missing(cell, "torch arch audit")])
    top = max((_sm_num(a) for a in lib["sass"]), default=0)
    ev = [
        measured(
            f"torch {_ver(r, 'torch')} ({r.get('cuda')}) libtorch_cuda.so: {_kernels(r)}; highest SASS sm_{top}",
            cell=cell,
        )
    ]
    return Judgement("confirmed" if top == int(claim.says["max_sm"]) else "contradicted", ev)


NO_KERNEL_IMAGE = "no kernel image is available"


def _emulation_items(obs: Observations) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(where, gpu facts, emulation record) for every recorded run of the no-kernel-image emulation."""
    out = []
    for where, gpu in obs.gpu_records():
        emu = gpu.get("no_kernel_emulation")
        if isinstance(emu, Mapping) and emu.get("is_available") is not None:
            out.append((where, gpu, emu))
    return out


def _runs_on(sm: int, lib: Mapping[str, Any]) -> list[str]:
    """The kernels of a library that run on sm_N: SASS of the same major at or below it, or PTX at or below it."""
    sass = [a for a in lib.get("sass") or [] if _sm_num(a) // 10 == sm // 10 and _sm_num(a) <= sm]
    return sass + [a for a in lib.get("ptx") or [] if _sm_num(a) <= sm]


def check_option1_mechanism(claim: Claim, obs: Observations) -> Judgement:
    """Two parts. *Option 1 fails on sm_N*: the guide's-era torch carries no kernel that runs there (measured
    from its fatbin). *The GPU is not detected at all*: what a GPU without matching kernels sees, emulated on a
    real GPU; a run counts only where the emulation took effect (the first kernel failed for want of a kernel
    image). Today's stable cell is context, never a part."""
    sm = int(claim.says["sm"])
    era, today = claim.says["cell"], claim.says.get("today")
    ev: list[dict[str, Any]] = []
    missing: list[str] = []
    parts: list[tuple[str, str]] = []
    fails_part = f"option 1 fails on sm_{sm}"
    r_era = obs.get(era)
    lib = _torch_lib(r_era) if r_era else None
    if r_era and lib is not None:
        runs = _runs_on(sm, lib)
        ev.append(
            measured(
                f"{era}: torch {_ver(r_era, 'torch')} libtorch_cuda.so: {_kernels(r_era)}: "
                + (f"runs on sm_{sm} through {' '.join(runs)}" if runs else f"no sm_{sm} SASS and no PTX to JIT"),
                cell=era,
            )
        )
        parts.append((fails_part, "contradicted" if runs else "confirmed"))
    else:
        missing.append(obs.why_missing(era, "torch arch audit"))
        parts.append((fails_part, "not-testable"))
    detected: list[bool] = []
    for where, gpu, emu in _emulation_items(obs):
        err = str(emu.get("first_kernel_error") or "")
        text = (
            f"{where} on {gpu.get('name')} (sm_{gpu.get('sm')}), torch {emu.get('torch')}: "
            f"torch.cuda.is_available() {emu.get('is_available')}, device name {emu.get('name')!r}, "
            f"capability {emu.get('capability')}; first kernel: {err or 'ran'}"
        )
        if emu.get("is_available") and NO_KERNEL_IMAGE not in err:
            # The emulation did not take effect (the kernel ran, or failed for another reason): not evidence.
            missing.append(f"{text}: the emulation did not take effect, so this run is not evidence")
            continue
        ev.append(emulated(text, emulation=str(emu.get("emulation") or "CUDA_FORCE_PTX_JIT=1"), where=where))
        detected.append(bool(emu.get("is_available")) and bool(emu.get("name")))
    detect_part = "the GPU is not detected at all"
    if detected:
        parts.append((detect_part, "contradicted" if all(detected) else "confirmed" if not any(detected) else "mixed"))
    else:
        parts.append((detect_part, "not-testable"))
        missing.append(
            "no GPU run of the cell suite's no-kernel-image emulation that took effect in these results "
            "(run the matrix, or `python -m whisperx_matrix probe`, where a GPU exists)"
        )
    if today and (r_today := obs.get(today)) and _torch_lib(r_today):
        has = _has_sm(r_today, sm)
        ev.append(
            measured(
                f"today's {today} (stable torch {_ver(r_today, 'torch')}, {r_today.get('cuda')}): "
                f"{'carries' if has else 'has no'} sm_{sm} SASS",
                cell=today,
            )
            | CONTEXT
        )
    return combine(parts, ev, missing)


def _soname_state(rec: Mapping[str, Any], soname: str) -> str:
    closure = rec.get("closure") or {}
    if soname in (closure.get("missing_sonames") or []):
        return "missing"
    if soname in (closure.get("loaded") or {}):
        return f"resolved to {closure['loaded'][soname]}"
    return "not wanted by any library in the cell"


def _closure_ev(cell: str, rec: Mapping[str, Any], soname: str) -> dict[str, Any]:
    really = ", ".join((rec.get("closure") or {}).get("missing_sonames") or []) or "nothing"
    loader = rec.get("loader") or {}
    agree = (
        ""
        if not loader
        else (
            "; the real loader in the cell's python agrees"
            if loader.get("agrees")
            else f"; the real loader disagrees: {loader.get('disagreements')}"
        )
    )
    return measured(
        f"{cell} (torch {_ver(rec, 'torch')}): {soname} {_soname_state(rec, soname)}; "
        f"missing from the closure: {really}{agree}",
        cell=cell,
    )


def _index_basis(rec: Mapping[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """A nightly cell resolved from an index that served a release (a stand-in), not a nightly: emulated."""
    lock = rec.get("lock") or {}
    torch = _v(_ver(rec, "torch"))
    if rec.get("channel") == "nightly" and not torch.is_prerelease:
        return emulated(
            item["text"],
            emulation=f"stand-in nightly index ({lock.get('index_note', 'overridden')}) "
            f"serving torch {torch}, a release",
            where=item.get("cell"),
        )
    return item


def check_missing_soname(claim: Claim, obs: Observations) -> Judgement:
    """Is the soname missing in the claim's cell (closure audit + the real loader)? A proxy cell of the same
    CUDA build is shown but never decides."""
    soname, target, proxy = claim.says["soname"], claim.says["cell"], claim.says.get("proxy")
    r = obs.get(target)
    ev = []
    if proxy and (p := obs.get(proxy)):
        ev.append(_closure_ev(proxy, p, soname))
    if r is None:
        return Judgement("not-testable", ev, [obs.why_missing(target)])
    ev.insert(0, _index_basis(r, _closure_ev(target, r, soname)))
    return Judgement("confirmed" if _soname_state(r, soname) == "missing" else "contradicted", ev)


def check_cell_passes(claim: Claim, obs: Observations) -> Judgement:
    """The claim's cell passes: its suite ran and nothing failed. A pass whose GPU part did not run is confirmed
    in part (``partial`` says so); a suite that did not run, or skipped every test, confirms nothing. A proxy
    cell is shown as context and never decides."""
    target, proxy = claim.says["cell"], claim.says.get("proxy")
    ev = []
    if proxy and (p := obs.get(proxy)):
        ev.append(
            measured(f"{proxy} (stable torch {_ver(p, 'torch')}, same CUDA build): {_outcome(p)}", cell=proxy) | CONTEXT
        )
    r = obs.get(target)
    if r is None:
        return Judgement("not-testable", ev, [obs.why_missing(target)])
    ev.insert(0, _index_basis(r, measured(f"{target} (torch {_ver(r, 'torch')}): {_outcome(r)}", cell=target)))
    state, partial = _pass_state(r)
    gaps = [f"{target}: {g}" for g in unobserved(r)]
    if state == "unobserved":
        return Judgement("not-testable", ev, gaps)
    return Judgement("confirmed" if state == "passes" else "contradicted", ev, gaps if partial else [], partial)


def check_pyannote_needs_4(claim: Claim, obs: Observations) -> Judgement:
    """Two cells that differ only in pyannote-audio: the old one must fail for the stated reason, the new pass
    (its suite run: a pass nobody observed decides nothing)."""
    s = claim.says
    old, new = obs.get(s["old"]), obs.get(s["new"])
    if not (old and new):
        return _untested(obs, [c for c in (s["old"], s["new"]) if not obs.get(c)])
    same = [p for p in ("torch", "torchaudio", "whisperx", "ctranslate2") if _ver(old, p) != _ver(new, p)]
    ev = [
        measured(
            f"{s[k]}: torch {_ver(r, 'torch')} + pyannote-audio {_ver(r, 'pyannote-audio')}: {_outcome(r)}", cell=s[k]
        )
        for k, r in (("old", old), ("new", new))
    ]
    if same or _ver(old, "pyannote-audio") == _ver(new, "pyannote-audio"):
        return Judgement(
            "not-testable", ev, [f"the two cells differ in {', '.join(same) or 'nothing'}, not in pyannote-audio alone"]
        )
    state, partial = _pass_state(new)
    if state == "unobserved":
        return Judgement("not-testable", ev, [f"{s['new']}: {g}" for g in unobserved(new)])
    confirmed = s["reason"] in _reasons(old) and state == "passes"
    gaps = [f"{s['new']}: {g}" for g in unobserved(new)] if confirmed and partial else []
    return Judgement("confirmed" if confirmed else "contradicted", ev, gaps, partial if confirmed else None)


def _failure_line(rec: Mapping[str, Any], needle: str) -> str:
    """The recorded failure line that names ``needle``, else the cell's reasons."""
    return next((e for e in rec.get("evidence", []) if needle in str(e)), ", ".join(_reasons(rec)) or "no failure")


def _ran(rec: Mapping[str, Any], name_part: str) -> bool:
    """Whether a suite test whose name holds ``name_part`` ran (was not skipped)."""
    tests = (rec.get("suite") or {}).get("tests") or []
    return any(name_part in str(t.get("test")) and t.get("outcome") != "skipped" for t in tests)


def check_patch_needed(claim: Claim, obs: Observations) -> Judgement:
    """Two parts. *A patch is needed*: the recipe without one fails for the stated reason. *The guide's edit is
    enough*: the cell with exactly the guide's edit runs VAD, ASR and diarization (its suite's diarization test
    ran) without that failure. The project's full patch and upstream WhisperX are context."""
    s = claim.says
    reason = s["reason"]
    ev: list[dict[str, Any]] = []
    missing: list[str] = []
    parts: list[tuple[str, str]] = []
    unpatched = obs.get(s["unpatched"])
    if unpatched is None:
        missing.append(obs.why_missing(s["unpatched"]))
        parts.append(("a patch is needed", "not-testable"))
    else:
        state, _ = _pass_state(unpatched)
        ev.append(
            measured(
                f"{s['unpatched']}: whisperx {_ver(unpatched, 'whisperx')} + pyannote-audio "
                f"{_ver(unpatched, 'pyannote-audio')} without a patch: "
                + (_failure_line(unpatched, "use_auth_token") if state == "fails" else _outcome(unpatched)),
                cell=s["unpatched"],
            )
        )
        verdict = (
            "confirmed" if reason in _reasons(unpatched) else "contradicted" if state == "passes" else "not-testable"
        )
        if verdict == "not-testable":
            missing.append(f"{s['unpatched']}: {_outcome(unpatched)}, not for {reason}")
        parts.append(("a patch is needed", verdict))
    guide = obs.get(s["guide"])
    enough = "the guide's two-file edit is enough (VAD, ASR and diarization)"
    if guide is None:
        missing.append(obs.why_missing(s["guide"]))
        parts.append((enough, "not-testable"))
    else:
        state, _ = _pass_state(guide)
        ev.append(
            measured(
                f"{s['guide']}: the same with only the guide's edit (vads/pyannote.py, asr.py): "
                + (_failure_line(guide, "use_auth_token") if state == "fails" else _outcome(guide)),
                cell=s["guide"],
            )
        )
        if reason in _reasons(guide):
            parts.append((enough, "contradicted"))
        elif state == "passes" and _ran(guide, "diariz"):
            parts.append((enough, "confirmed"))
        else:
            why = _outcome(guide) if state != "passes" else "its diarization test did not run"
            missing.append(f"{s['guide']}: {why}")
            parts.append((enough, "not-testable"))
    for key, what in (("patched", "with the project's patches/0001 (four files)"), ("upstream", "no patch")):
        if (r := obs.get(s[key])) is not None:
            ev.append(
                measured(f"{s[key]}: whisperx {_ver(r, 'whisperx')}, {what}: {_outcome(r)}", cell=s[key]) | CONTEXT
            )
    return combine(parts, ev, missing)


def _ld_records(claim: Claim, obs: Observations) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, comparison) for every run of the suite with LD_LIBRARY_PATH unset and set: this run's cells named
    by the claim, then recorded runs (probes) of those cells or their Python variants, e.g. on a GPU machine."""
    out = [
        (c, lp)
        for c in sorted(obs.cells, key=lambda c: (c not in claim.cells, c))
        if names_cell(c, claim.cells) and (r := obs.get(c)) and (lp := r.get("ld_library_path") or {}).get("with")
    ]
    for probe in sorted(obs.probes, key=lambda p: str(p.get("label"))):
        lp = probe.get("ld_library_path") or {}
        if lp.get("with") and names_cell(str((probe.get("suite") or {}).get("cell")), claim.cells):
            out.append((f"probe {probe.get('label')}", lp))
    return out


def check_needs_ld_library_path(claim: Claim, obs: Observations) -> Judgement:
    """The cell suite run twice: LD_LIBRARY_PATH unset, and set to the guide's list of nvidia/*/lib folders.
    A cell relies on it when it fails without and passes with. Each side is judged on the tests that ran in
    both; the evidence says how many of them were GPU tests, since only those load the libraries CTranslate2
    opens at run time (cuBLAS) and run kernels: a comparison of CPU tests alone is named as partial."""
    judged = _ld_records(claim, obs)
    if not judged:
        missing = [
            obs.why_missing(c) if not obs.get(c) else f"{c}: the suite was not run with LD_LIBRARY_PATH set"
            for c in claim.cells
        ]
        return Judgement("not-testable", [], missing)
    ev, relies, fine, gpu_runs = [], [], [], 0
    for where, lp in judged:
        without, with_ = lp["without"], lp["with"]
        compared = list(lp.get("compared") or [])
        on_gpu = [n for n in compared if is_gpu_test({"test": n})]
        gpu_runs += bool(on_gpu)
        ev.append(
            measured(
                f"{where}: LD_LIBRARY_PATH unset: {without['summary']}; set to its {with_['folders']} "
                f"nvidia/*/lib folders: {with_['summary']}; of the tests compared, {len(on_gpu)} on the GPU"
                + (f" ({', '.join(on_gpu)})" if on_gpu else ""),
                cell=where,
            )
        )
        if not without["passed"] and with_["passed"]:
            relies.append(where)
        elif without["passed"]:
            fine.append(where)
    if relies:
        return Judgement("confirmed", ev)
    if not fine:
        return Judgement("not-testable", ev, ["no cell passes its suite either way"])
    partial = None
    missing = []
    if not gpu_runs:
        partial = "CPU tests only; no GPU run compared"
        missing.append(
            "no run compared GPU tests (CTranslate2 on CUDA loads cuBLAS at run time; torch runs kernels): "
            "run the matrix with these cells on a GPU machine"
        )
    return Judgement("contradicted", ev, missing, partial)


def check_first_stable_with_arch(claim: Claim, obs: Observations) -> Judgement:
    """The guide's advice: switch to stable torch >= the named release once it carries sm_N. It holds when a
    measured stable release at or above the named one carries sm_N (named, with the measured releases before it
    that do not); it is contradicted when only releases below the named one carry it."""
    sm, named = int(claim.says["sm"]), _v(str(claim.says["torch"]))
    have = [c for c in claim.cells if (r := obs.get(c)) and _torch_lib(r)]
    missing = [obs.why_missing(c, "torch arch audit") for c in claim.cells if c not in have]
    if not have:
        return Judgement("not-testable", [], missing)
    ev, carriers = [], []
    for c in sorted(have, key=lambda c: _v(_ver(obs.cells[c], "torch"))):
        r = obs.cells[c]
        has = _has_sm(r, sm)
        ev.append(
            measured(
                f"{c}: torch {_ver(r, 'torch')} ({r.get('cuda')}, default index): "
                f"{'has' if has else 'no'} sm_{sm} SASS",
                cell=c,
            )
        )
        if has:
            carriers.append(_v(_ver(r, "torch")))
    at_or_above = [v for v in carriers if v.release[:2] >= named.release[:2]]
    if at_or_above:
        ev.append(measured(f"first measured stable torch >= {named} with sm_{sm}: {min(at_or_above)}"))
        return Judgement("confirmed", ev, missing)
    if carriers:
        ev.append(measured(f"only stable torch below {named} carries sm_{sm}: {', '.join(map(str, carriers))}"))
        return Judgement("contradicted", ev, missing)
    return Judgement("not-testable", ev, missing + [f"no measured stable torch >= {named} carries sm_{sm} yet"])


CHECKS: dict[str, Callable[[Claim, Observations], Judgement]] = {
    "driver-minimum": check_driver_minimum,
    "max-arch": check_max_arch,
    "option1-mechanism": check_option1_mechanism,
    "missing-soname": check_missing_soname,
    "cell-passes": check_cell_passes,
    "pyannote-needs-4": check_pyannote_needs_4,
    "patch-needed": check_patch_needed,
    "needs-ld-library-path": check_needs_ld_library_path,
    "first-stable-with-arch": check_first_stable_with_arch,
}


def judge_claims(
    claims: list[Claim], cells: Mapping[str, Mapping[str, Any]], probes: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Every claim judged on these observations. A bug in a check raises: it is never turned into a verdict."""
    obs = Observations(cells, list(probes))
    out = []
    for claim in claims:
        j = CHECKS[claim.check](claim, obs)
        bases = sorted({e["basis"] for e in j.evidence}, key=BASES.index)
        deciding = {e["basis"] for e in j.evidence if not e.get("context")}
        rec: dict[str, Any] = {
            "id": claim.id,
            "quote": claim.quote,
            "cells": list(claim.cells),
            "verdict": j.verdict,
            "bases": bases,
            "evidence": j.evidence,
        }
        if j.partial:
            rec["partial"] = j.partial
        if j.parts:
            rec["parts"] = [{"part": name, "verdict": v} for name, v in j.parts]
        if j.missing:
            rec["missing"] = j.missing
        if deciding == {"cited"}:
            rec["rests_on"] = "cited facts only"
        out.append(rec)
    return out


def claim_cells(claims: Iterable[Claim], check: str) -> set[str]:
    """The cells that the claims of one check name (the matrix gathers those claims' extra observations)."""
    return {c for claim in claims if claim.check == check for c in claim.cells}


def names_cell(cell_id: str, named: Iterable[str]) -> bool:
    """``cell_id`` is one of ``named``, or a Python variant of one (``stable-cu128-py312`` of ``stable-cu128``):
    a claim about a cell holds for its variants, which the GPU runner builds."""
    return cell_id in set(named) or re.sub(r"-py\d+$", "", cell_id) in set(named)

"""Expected against observed: reasons from error lines, a verdict per cell, and a verdict per claim.

Cell verdicts: as-expected, failed-as-expected, wrong-reason, unexpected-pass, unexpected-failure,
not-testable. Only the middle three are unexpected. A failure counts as expected only when the
expected reason is among the observed ones.

Claim verdicts: confirmed, contradicted, not-testable; each with its evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from .errors import ConfigError, did_you_mean
from .matrix import Expectation, Matrix, read_toml


UNEXPECTED = ("wrong-reason", "unexpected-pass", "unexpected-failure")
CLAIM_VERDICTS = ("confirmed", "contradicted", "not-testable")
# Packages whose GPU code WhisperX runs: the cell-level arch verdict is theirs. The CUDA libraries
# (nvidia-*) dispatch per arch and carry kernels for arches they do not serve; they are reported, not judged.
KEY_GPU_PACKAGES = ("torch", "torchaudio", "torchvision", "ctranslate2")

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


def judge_cell(expected: Expectation, reasons: list[str], *, testable: bool = True) -> str:
    if not testable:
        return "not-testable"
    if expected.status == "pass":
        return "as-expected" if not reasons else "unexpected-failure"
    if not reasons:
        return "unexpected-pass"
    return "failed-as-expected" if expected.reason in reasons else "wrong-reason"


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
        for cell in raw["cells"]:
            if cell not in ids:
                raise ConfigError(f"{path.name}: claim {cid!r} names unknown cell {cell!r}{did_you_mean(cell, ids)}",
                                  hint=f"known cells: {', '.join(sorted(ids))}")
        if raw["check"] not in CHECKS:
            raise ConfigError(f"{path.name}: claim {cid!r} has unknown check {raw['check']!r}{did_you_mean(raw['check'], CHECKS)}",
                              hint=f"known checks: {', '.join(CHECKS)}")
        claims.append(Claim(cid, raw["quote"], tuple(raw["cells"]), raw["check"], raw.get("says", {})))
    if len({c.id for c in claims}) != len(claims):
        raise ConfigError(f"{path.name}: duplicate claim ids", hint="give each claim its own id")
    return claims


Outcomes = Mapping[str, Mapping[str, Any]]  # cell id -> the cell's result dict (see run.py)
Verdict = tuple[str, str]


def _testable(o: Mapping[str, Any] | None) -> bool:
    return o is not None and o.get("verdict") != "not-testable"


def _untested(cells: list[str], outcomes: Outcomes) -> str:
    why = []
    for c in cells:
        o = outcomes.get(c)
        why.append(f"{c}: {'not selected in this run' if o is None else o['observed'].get('note', 'not testable here')}")
    return "; ".join(why)


def _pkg_arch(o: Mapping[str, Any], package: str) -> Mapping[str, Any] | None:
    return (o.get("arch") or {}).get("packages", {}).get(package)


def _sm_num(arch: str) -> int:
    return int(re.sub(r"\D", "", arch.split()[0]) or 0)


def check_driver_minimum(claim: Claim, outcomes: Outcomes) -> Verdict:
    from .doctor import CUDA_DRIVERS  # the cited table of NVIDIA's driver minimums

    sm = int(claim.says["sm"])
    have = [c for c in claim.cells if _testable(outcomes.get(c)) and _pkg_arch(outcomes[c], "torch")]
    if not have:
        return "not-testable", _untested(list(claim.cells), outcomes)
    with_sm = [c for c in have if f"sm_{sm}" in _pkg_arch(outcomes[c], "torch")["sass"]]
    without = [c for c in have if c not in with_sm]
    if not with_sm:
        return "not-testable", f"none of {', '.join(have)} carries sm_{sm} kernels in torch"
    first = min(with_sm, key=lambda c: outcomes[c]["cuda"])
    cuda = outcomes[first]["cuda"]
    minimum = CUDA_DRIVERS[cuda].toolkit_driver
    older = ", ".join(f"{c} ({outcomes[c]['cuda']})" for c in without) or "any older cell"
    evidence = (f"sm_{sm} SASS appears in torch's {cuda} build ({first}: torch {outcomes[first]['versions'].get('torch')}), "
                f"not in {older}; "
                f"CUDA {cuda[2:-1]}.{cuda[-1]} needs driver >= {minimum} (NVIDIA CUDA Toolkit release notes, "
                f"table 3), i.e. the {minimum.split('.')[0]} series, not {claim.says['driver']}")
    verdict = "contradicted" if Version(minimum.split(".")[0]) > Version(str(claim.says["driver"])) else "confirmed"
    return verdict, evidence


def check_max_arch(claim: Claim, outcomes: Outcomes) -> Verdict:
    cell = claim.cells[0]
    o = outcomes.get(cell)
    pkg = _pkg_arch(o, claim.says["package"]) if _testable(o) else None
    if pkg is None:
        return "not-testable", _untested([cell], outcomes)
    top = max((_sm_num(a) for a in pkg["sass"]), default=0)
    ptx = ", ".join(pkg["ptx"]) or "none"
    evidence = (f"{claim.says['package']} {o['versions'].get(claim.says['package'])} ({o['cuda']}): SASS "
                f"{' '.join(pkg['sass'])}; PTX {ptx}; highest sm_{top}")
    return ("confirmed" if top == int(claim.says["max_sm"]) else "contradicted"), evidence


def check_option1_mechanism(claim: Claim, outcomes: Outcomes) -> Verdict:
    cell = claim.cells[0]
    o = outcomes.get(cell)
    sm = int(claim.says["sm"])
    if not _testable(o):
        return "not-testable", _untested([cell], outcomes)
    gpu_tests = [t for t in o.get("suite", {}).get("tests", []) if t["test"].startswith("test_gpu_torch")]
    ran_on_target = any(t["outcome"] != "skipped" for t in gpu_tests) and o.get("gpu_sm") == sm
    pkg = _pkg_arch(o, "torch") or {}
    static = (f"the binaries say why it fails: torch {o['versions'].get('torch')} carries SASS "
              f"{' '.join(pkg.get('sass', []))} and PTX {', '.join(pkg.get('ptx', [])) or 'none'}, nothing that runs on "
              f"sm_{sm}; device detection (torch.cuda.is_available) depends on the driver, not on the kernels, so "
              f"the expected symptom is 'no kernel image is available', not an undetected GPU")
    if not ran_on_target:
        return "not-testable", f"no sm_{sm} GPU here; {static}"
    detected = any(t["outcome"] == "failed" and "arch-unsupported" in t.get("error", "") for t in gpu_tests)
    return ("contradicted" if detected else "confirmed"), static


def _soname_status(o: Mapping[str, Any], soname: str) -> str | None:
    closure = o.get("closure") or {}
    if soname in closure.get("missing_sonames", []):
        return "missing"
    if soname in closure.get("loaded", {}):
        return f"resolved to {closure['loaded'][soname]}"
    return None


def check_missing_soname(claim: Claim, outcomes: Outcomes) -> Verdict:
    soname = claim.says["soname"]
    judged = [c for c in claim.cells if _testable(outcomes.get(c))]
    if not judged:
        return "not-testable", _untested(list(claim.cells), outcomes)
    lines = []
    verdict = "contradicted"
    for c in judged:
        o = outcomes[c]
        state = _soname_status(o, soname) or "not wanted by any library in the cell"
        if state == "missing":
            verdict = "confirmed"
        really = ", ".join((o.get("closure") or {}).get("missing_sonames", [])) or "nothing"
        lines.append(f"{c} (torch {o['versions'].get('torch')}): {soname} {state}; what is really missing: {really}")
    untested = [c for c in claim.cells if c not in judged]
    if untested:
        lines.append(f"not testable here: {_untested(untested, outcomes)}")
    return verdict, "; ".join(lines)


def check_cell_passes(claim: Claim, outcomes: Outcomes) -> Verdict:
    target, proxy = claim.says["cell"], claim.says.get("same_cuda_build")
    o = outcomes.get(target)
    if _testable(o):
        ok = o["observed"]["status"] == "pass"
        return ("confirmed" if ok else "contradicted"), f"{target}: {o['verdict']} ({', '.join(o['observed']['reasons']) or 'all checks pass'})"
    evidence = _untested([target], outcomes)
    p = outcomes.get(proxy) if proxy else None
    if _testable(p):
        evidence += (f"; the stable cell of the same CUDA build, {proxy} (torch {p['versions'].get('torch')}), "
                     f"{'passes' if p['observed']['status'] == 'pass' else 'fails: ' + ', '.join(p['observed']['reasons'])}")
    return "not-testable", evidence


def check_pyannote_needs_4(claim: Claim, outcomes: Outcomes) -> Verdict:
    old, new = outcomes.get(claim.says["old"]), outcomes.get(claim.says["new"])
    if not (_testable(old) and _testable(new)):
        return "not-testable", _untested(list(claim.cells), outcomes)
    evidence = (f"torch {old['versions'].get('torch')} + pyannote-audio {old['versions'].get('pyannote-audio')}: "
                f"{', '.join(old['observed']['reasons']) or 'passes'}; torch {new['versions'].get('torch')} + "
                f"pyannote-audio {new['versions'].get('pyannote-audio')}: {', '.join(new['observed']['reasons']) or 'passes'}")
    confirmed = old["observed"]["status"] == "fail" and new["observed"]["status"] == "pass"
    return ("confirmed" if confirmed else "contradicted"), evidence


def check_patch_needed(claim: Claim, outcomes: Outcomes) -> Verdict:
    s = claim.says
    patched, unpatched, upstream = (outcomes.get(s[k]) for k in ("patched", "unpatched", "upstream"))
    if not (_testable(patched) and _testable(unpatched)):
        return "not-testable", _untested([s["patched"], s["unpatched"]], outcomes)
    failure = next((e for e in unpatched.get("evidence", []) if "use_auth_token" in e), ", ".join(unpatched["observed"]["reasons"]))
    evidence = (f"whisperx {unpatched['versions'].get('whisperx')} + pyannote-audio {unpatched['versions'].get('pyannote-audio')} "
                f"without the patch: {failure}; with patches/0001: {patched['verdict']}")
    if _testable(upstream):
        evidence += (f"; whisperx {upstream['versions'].get('whisperx')} needs no patch ({upstream['verdict']}): upstream "
                     f"made the change in 3.8.0, and it keeps faster-whisper's own use_auth_token")
    confirmed = s["reason"] in unpatched["observed"]["reasons"] and patched["observed"]["status"] == "pass"
    return ("confirmed" if confirmed else "contradicted"), evidence


def check_needs_ld_library_path(claim: Claim, outcomes: Outcomes) -> Verdict:
    judged = [c for c in claim.cells if _testable(outcomes.get(c))]
    if not judged:
        return "not-testable", _untested(list(claim.cells), outcomes)
    dependent = [c for c in judged if (outcomes[c].get("closure") or {}).get("ld_library_path_dependent")]
    passing = [c for c in judged if outcomes[c]["observed"]["status"] == "pass"]
    evidence = (f"with LD_LIBRARY_PATH unset, {', '.join(passing) or 'no cell'} pass{'es' if len(passing) == 1 else ''} "
                f"the suite (imports, VAD, transcription) and the loader resolves every library (closure audit); "
                f"the wheels' RPATHs point at their sibling nvidia/*/lib folders; cells that rely on LD_LIBRARY_PATH: "
                f"{', '.join(dependent) or 'none'}")
    return ("contradicted" if passing and not dependent else "confirmed"), evidence


def check_first_stable_with_arch(claim: Claim, outcomes: Outcomes) -> Verdict:
    sm = int(claim.says["sm"])
    have = [c for c in claim.cells if _testable(outcomes.get(c)) and _pkg_arch(outcomes[c], "torch")]
    if not have:
        return "not-testable", _untested(list(claim.cells), outcomes)
    rows = []
    first = None
    for c in sorted(have, key=lambda c: Version(outcomes[c]["versions"].get("torch") or "0")):
        o = outcomes[c]
        has = f"sm_{sm}" in _pkg_arch(o, "torch")["sass"]
        rows.append(f"torch {o['versions'].get('torch')} ({o['cuda']}, from the default index): {'has' if has else 'no'} sm_{sm}")
        if has and first is None:
            first = o
    if first is None:
        return "confirmed", "; ".join(rows) + f"; no stable cell here has sm_{sm} yet"
    evidence = "; ".join(rows) + (f"; stable already has Blackwell kernels, so the advice is stale: the working cell is "
                                  f"stable torch {first['versions'].get('torch')}, and 2.6 never shipped sm_{sm} "
                                  f"(sm_120 needs CUDA 12.8 builds, first made for torch 2.7)")
    return "contradicted", evidence


CHECKS: dict[str, Callable[[Claim, Outcomes], Verdict]] = {
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


def judge_claims(claims: list[Claim], outcomes: Outcomes) -> list[dict[str, Any]]:
    out = []
    for claim in claims:
        try:
            verdict, evidence = CHECKS[claim.check](claim, outcomes)
        except (KeyError, TypeError, ValueError) as exc:  # a check that cannot read its data is not a verdict
            verdict, evidence = "not-testable", f"could not evaluate: {type(exc).__name__}: {exc}"
        out.append({"id": claim.id, "quote": claim.quote, "cells": list(claim.cells), "verdict": verdict, "evidence": evidence})
    return out

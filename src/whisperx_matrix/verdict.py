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

from .cudafacts import CUDA_DRIVERS
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
)
AS_EXPECTED = frozenset({"as-expected", "failed-as-expected"})
UNEXPECTED = frozenset({"wrong-reason", "unexpected-pass", "unexpected-failure"})
NOT_TESTABLE = "not-testable"
BASES = ("measured", "emulated", "cited")


def totals(cells: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many cells came out as expected, unexpected, or not testable."""
    return {
        "cells": len(cells),
        "as_expected": sum(c.get("verdict") in AS_EXPECTED for c in cells),
        "unexpected": sum(bool(c.get("unexpected")) or c.get("verdict") in UNEXPECTED for c in cells),
        "not_testable": sum(c.get("verdict") == NOT_TESTABLE for c in cells),
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


def judge_cell(expected: Expectation, reasons: list[str], *, testable: bool = True) -> str:
    if not testable:
        return NOT_TESTABLE
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


_CELL_KEYS = ("old", "new", "patched", "unpatched", "upstream", "proxy", "today")


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
    verdict: str
    evidence: list[dict[str, Any]]
    missing: list[str] = field(default_factory=list)


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


def _outcome(rec: Mapping[str, Any]) -> str:
    reasons = _reasons(rec)
    return "passes every check" if not reasons else "fails: " + ", ".join(reasons)


def _ver(rec: Mapping[str, Any], pkg: str) -> str:
    return str((rec.get("versions") or {}).get(pkg) or "?")


def _kernels(rec: Mapping[str, Any]) -> str:
    lib = _torch_lib(rec) or {}
    return f"SASS {' '.join(lib.get('sass') or []) or 'none'}; PTX {' '.join(lib.get('ptx') or []) or 'none'}"


def _has_sm(rec: Mapping[str, Any], sm: int) -> bool:
    return f"sm_{sm}" in ((_torch_lib(rec) or {}).get("sass") or [])


def check_driver_minimum(claim: Claim, obs: Observations) -> Judgement:
    """Which cells carry sm_N kernels and which CUDA runtime each bundles (measured); that runtime's driver
    floor (cited)."""
    sm = int(claim.says["sm"])
    have = [c for c in claim.cells if (r := obs.get(c)) and _torch_lib(r) and r.get("cuda_runtime")]
    if not have:
        return Judgement(
            "not-testable", [], [obs.why_missing(c, "torch arch audit or CUDA runtime version") for c in claim.cells]
        )
    ev = []
    with_sm = []
    for c in have:
        r = obs.cells[c]
        has = _has_sm(r, sm)
        ev.append(
            measured(
                f"{c}: torch {_ver(r, 'torch')} {'carries' if has else 'has no'} sm_{sm} SASS; "
                f"bundles CUDA runtime {r['cuda_runtime']}",
                cell=c,
            )
        )
        if has:
            with_sm.append(c)
    if not with_sm:
        return Judgement("not-testable", ev, [f"no cell of {', '.join(have)} carries sm_{sm} kernels"])
    first = min(with_sm, key=lambda c: _v(obs.cells[c]["cuda_runtime"]))
    runtime = ".".join(str(obs.cells[first]["cuda_runtime"]).split(".")[:2])

    cite = next((d for d in CUDA_DRIVERS.values() if d.cuda == runtime), None)
    if cite is None:
        return Judgement("not-testable", ev, [f"no cited driver floor for CUDA {runtime}"])
    ev.append(cited(f"CUDA {cite.cuda} needs Linux driver >= {cite.toolkit_driver}", source=CUDA_RELEASE_NOTES))
    floor = _v(cite.toolkit_driver).release[0]
    verdict = "contradicted" if floor > int(claim.says["driver"]) else "confirmed"
    return Judgement(verdict, ev)


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


def _emulation_items(obs: Observations) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(where, gpu facts, emulation record) for every recorded run of the no-kernel-image emulation."""
    out = []
    for where, gpu in obs.gpu_records():
        emu = gpu.get("no_kernel_emulation")
        if isinstance(emu, Mapping) and emu.get("is_available") is not None:
            out.append((where, gpu, emu))
    return out


def check_option1_mechanism(claim: Claim, obs: Observations) -> Judgement:
    """Two parts. Today: does the stable cu128 cell carry kernels for the target (measured)? The guide's era:
    does a GPU without matching kernels go undetected (emulated on any NVIDIA GPU)?"""
    sm = int(claim.says["sm"])
    era, today = claim.says["cell"], claim.says["today"]
    ev: list[dict[str, Any]] = []
    missing: list[str] = []
    parts: list[str] = []
    r_era, r_today = obs.get(era), obs.get(today)
    if r_era and _torch_lib(r_era):
        ev.append(
            measured(
                f"{era}: torch {_ver(r_era, 'torch')} libtorch_cuda.so: {_kernels(r_era)}: "
                f"{'has' if _has_sm(r_era, sm) else 'no'} sm_{sm} SASS"
                f"{'' if (_torch_lib(r_era) or {}).get('ptx') else ', no PTX to JIT'}",
                cell=era,
            )
        )
    else:
        missing.append(obs.why_missing(era, "torch arch audit"))
    if r_today and _torch_lib(r_today):
        has = _has_sm(r_today, sm)
        ev.append(
            measured(
                f"{today} (stable torch {_ver(r_today, 'torch')}, {r_today.get('cuda')}): "
                f"{'carries' if has else 'has no'} sm_{sm} SASS",
                cell=today,
            )
        )
        parts.append("contradicted" if has else "confirmed")
    else:
        missing.append(obs.why_missing(today, "torch arch audit"))
    emus = _emulation_items(obs)
    if emus:
        detected_all = True
        for where, gpu, emu in emus:
            err = emu.get("first_kernel_error") or "none: the kernel ran"
            ev.append(
                emulated(
                    f"{where} on {gpu.get('name')} (sm_{gpu.get('sm')}), torch {emu.get('torch')}: "
                    f"torch.cuda.is_available() {emu.get('is_available')}, device name {emu.get('name')!r}, "
                    f"capability {emu.get('capability')}; first kernel: {err}",
                    emulation=str(emu.get("emulation") or "CUDA_FORCE_PTX_JIT=1"),
                    where=where,
                )
            )
            detected_all &= bool(emu.get("is_available")) and bool(emu.get("name"))
        parts.append("contradicted" if detected_all else "confirmed")
    else:
        missing.append(
            "no GPU run of the cell suite's no-kernel-image emulation in these results "
            "(run the matrix, or `python -m whisperx_matrix probe`, where a GPU exists)"
        )
    if not parts:
        return Judgement("not-testable", ev, missing)
    return Judgement("contradicted" if "contradicted" in parts else "confirmed", ev, missing)


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
    target, proxy = claim.says["cell"], claim.says.get("proxy")
    r = obs.get(target)
    ev = []
    if proxy and (p := obs.get(proxy)):
        ev.append(measured(f"{proxy} (stable torch {_ver(p, 'torch')}, same CUDA build): {_outcome(p)}", cell=proxy))
    if r is None:
        return Judgement("not-testable", ev, [obs.why_missing(target)])
    ev.insert(0, _index_basis(r, measured(f"{target} (torch {_ver(r, 'torch')}): {_outcome(r)}", cell=target)))
    return Judgement("confirmed" if not _reasons(r) else "contradicted", ev)


def check_pyannote_needs_4(claim: Claim, obs: Observations) -> Judgement:
    """Two cells that differ only in pyannote-audio: the old one must fail for the stated reason, the new pass."""
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
    confirmed = s["reason"] in _reasons(old) and not _reasons(new)
    return Judgement("confirmed" if confirmed else "contradicted", ev)


def check_patch_needed(claim: Claim, obs: Observations) -> Judgement:
    s = claim.says
    patched, unpatched, upstream = (obs.get(s[k]) for k in ("patched", "unpatched", "upstream"))
    if not (patched and unpatched):
        return _untested(obs, [c for c in (s["patched"], s["unpatched"]) if not obs.get(c)])
    failure = next((e for e in unpatched.get("evidence", []) if "use_auth_token" in e), ", ".join(_reasons(unpatched)))
    ev = [
        measured(
            f"{s['unpatched']}: whisperx {_ver(unpatched, 'whisperx')} + pyannote-audio "
            f"{_ver(unpatched, 'pyannote-audio')} without the patch: {failure}",
            cell=s["unpatched"],
        ),
        measured(f"{s['patched']}: the same with patches/0001: {_outcome(patched)}", cell=s["patched"]),
    ]
    if upstream:
        ev.append(
            measured(
                f"{s['upstream']}: whisperx {_ver(upstream, 'whisperx')}, no patch applied: {_outcome(upstream)}",
                cell=s["upstream"],
            )
        )
    confirmed = s["reason"] in _reasons(unpatched) and not _reasons(patched)
    return Judgement("confirmed" if confirmed else "contradicted", ev)


def check_needs_ld_library_path(claim: Claim, obs: Observations) -> Judgement:
    """The cell suite run twice: LD_LIBRARY_PATH unset, and set to the guide's list of nvidia/*/lib folders.
    A cell relies on it when it fails without and passes with."""
    judged = [c for c in claim.cells if (r := obs.get(c)) and (r.get("ld_library_path") or {}).get("with")]
    if not judged:
        missing = [
            obs.why_missing(c) if not obs.get(c) else f"{c}: the suite was not run with LD_LIBRARY_PATH set"
            for c in claim.cells
        ]
        return Judgement("not-testable", [], missing)
    ev, relies, fine = [], [], []
    for c in judged:
        lp = obs.cells[c]["ld_library_path"]
        without, with_ = lp["without"], lp["with"]
        ev.append(
            measured(
                f"{c}: LD_LIBRARY_PATH unset: {without['summary']}; set to its {with_['folders']} "
                f"nvidia/*/lib folders: {with_['summary']}",
                cell=c,
            )
        )
        if not without["passed"] and with_["passed"]:
            relies.append(c)
        elif without["passed"]:
            fine.append(c)
    if relies:
        return Judgement("confirmed", ev)
    return Judgement(
        "contradicted" if fine else "not-testable", ev, [] if fine else ["no cell passes its suite either way"]
    )


def check_first_stable_with_arch(claim: Claim, obs: Observations) -> Judgement:
    """The measured stable cells in torch order: which carry sm_N, and the first that does."""
    sm, named = int(claim.says["sm"]), str(claim.says["torch"])
    have = [c for c in claim.cells if (r := obs.get(c)) and _torch_lib(r)]
    missing = [obs.why_missing(c, "torch arch audit") for c in claim.cells if c not in have]
    if not have:
        return Judgement("not-testable", [], missing)
    ev, first = [], None
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
        if has and first is None:
            first = r
    named_cells = [c for c in have if _v(_ver(obs.cells[c], "torch")).release[:2] == _v(named).release[:2]]
    if not named_cells:
        return Judgement("not-testable", ev, missing + [f"no measured cell has torch {named}"])
    if first is None:
        return Judgement("not-testable", ev, missing + [f"no measured stable cell carries sm_{sm} yet"])
    ev.append(
        measured(f"first stable torch on the default index with sm_{sm}, of those measured: {_ver(first, 'torch')}")
    )
    return Judgement("confirmed" if _v(_ver(first, "torch")) <= _v(named) else "contradicted", ev, missing)


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
        rec: dict[str, Any] = {
            "id": claim.id,
            "quote": claim.quote,
            "cells": list(claim.cells),
            "verdict": j.verdict,
            "bases": bases,
            "evidence": j.evidence,
        }
        if j.missing:
            rec["missing"] = j.missing
        if bases == ["cited"]:
            rec["rests_on"] = "cited facts only"
        out.append(rec)
    return out


def claim_cells(claims: Iterable[Claim], check: str) -> set[str]:
    """The cells that the claims of one check name (the matrix gathers those claims' extra observations)."""
    return {c for claim in claims if claim.check == check for c in claim.cells}

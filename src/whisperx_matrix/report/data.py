"""The report's vocabulary and the facts every rendering draws: colours, check kinds, headline, redaction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import FatalError
from ..secrets import redact
from ..verdict import evidence_line, judged_statically, totals

SCHEMA = 1
CHECKS = ("lock", "build", "selftest", "arch", "closure", "suite")
CLAIMS_START = "<!-- claims:start -->"
CLAIMS_END = "<!-- claims:end -->"
FILES = {"png": "matrix.png", "md": "matrix.md", "html": "matrix.html", "json": "matrix.json"}  # write order

# One palette for the PNG's squares and the HTML's verdict cells. Red means one thing: an outcome nobody expected.
# A contradicted claim is a finding about the document, not a surprise of the matrix: orange, never red.
COLOURS = {
    "ok": "#2e9e4f",  # green: passed / as expected / claim confirmed
    "expected-fail": "#3b6fd6",  # blue: failed, as expected
    "unexpected": "#d6333f",  # red: failed unexpectedly, failed for another reason, or passed unexpectedly
    "none": "#b9bec5",  # grey: not run / not testable
    "incomplete": "#d8c08a",  # grey-ish amber: nothing failed, but what decides the cell did not run
    "contradicted": "#e8820c",  # orange: the document says otherwise than what was observed
    "mixed": "#8250c4",  # purple: parts of a claim confirmed, parts contradicted
}
# Kinds drawn on a light background get dark text (the others white).
LIGHT_KINDS = frozenset({"none", "incomplete", "contradicted"})
# The check squares (PNG and the HTML checks table): check_kind's four kinds.
LEGEND = {
    "ok": "passed",
    "expected-fail": "failed as expected",
    "unexpected": "failed unexpectedly, or passed where a failure was expected",
    "none": "not run / not testable",
}
CELL_LEGEND = {
    "ok": "as expected",
    "expected-fail": "failed as expected",
    "unexpected": "unexpected (wrong reason, unexpected pass or failure)",
    "incomplete": "incomplete (nothing failed; the suite did not run or skipped every test)",
    "none": "not testable here",
}
CLAIM_LEGEND = {
    "ok": "confirmed",
    "contradicted": "contradicted (the document is wrong here)",
    "mixed": "mixed (parts confirmed, parts contradicted)",
    "none": "not testable here",
}
VERDICT_KIND = {
    "as-expected": "ok",
    "failed-as-expected": "expected-fail",
    "wrong-reason": "unexpected",
    "unexpected-pass": "unexpected",
    "unexpected-failure": "unexpected",
    "not-testable": "none",
    "incomplete": "incomplete",
}
CLAIM_KIND = {"confirmed": "ok", "contradicted": "contradicted", "mixed": "mixed", "not-testable": "none"}
CONTEXT_PREFIX = "context, not judged: "  # an evidence item shown beside the ones that decided, not one of them


class ReportError(FatalError):
    """A result file is unreadable or not a matrix result, or the README has no claims markers.
    (FatalError's exit code 1: errors.py owns the distinct codes.)"""


# ---------------------------------------------------------------------------------------------- redaction


# Terminal escapes: CSI (ESC [ ... final byte), OSC and the other string sequences (ESC ] P X ^ _ ... up to
# BEL or ESC backslash, on one line), any other ESC sequence (ESC, intermediates, one final byte), a lone ESC,
# an 8-bit CSI.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)"
    r"|\x1b[ -/]*[0-~]"
    r"|\x1b"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Control characters but newline and tab: C0, DEL and C1.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """``text`` without terminal escapes (torch's messages carry ESC[1m ... ESC[0m) and without control
    characters other than newline and tab (a CR LF becomes LF)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\r\n", "\n")))


def redacted(data: Any) -> Any:
    """A deep copy of ``data`` with every string (keys too) made plain (``plain``) and passed through the
    redactor."""
    if isinstance(data, str):
        return redact(plain(data))
    if isinstance(data, Mapping):
        return {redact(plain(str(k))): redacted(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redacted(v) for v in data]
    return data


# ---------------------------------------------------------------------------------------------- the data


def check_kind(check: Mapping[str, Any] | None) -> str:
    """ok | expected-fail | unexpected | none, for a check's square."""
    if not check or check.get("status") not in ("pass", "fail"):
        return "none"
    status = check["status"]
    expected = check.get("expected", True)
    as_expected = expected == status if isinstance(expected, str) else bool(expected)
    if not as_expected:
        return "unexpected"
    return "ok" if status == "pass" else "expected-fail"


def headline(result: Mapping[str, Any]) -> str:
    """``16 cells: 14 as expected, 0 unexpected, 2 not testable here (target sm_120)``; ``, N incomplete`` goes
    before the target when the totals count incomplete cells (older results, without the key, read as before)."""
    t = result.get("totals") or totals(result.get("cells", []))
    cells = f"{t['cells']} cell{'' if t['cells'] == 1 else 's'}"
    incomplete = t.get("incomplete")
    more = f", {incomplete} incomplete" if isinstance(incomplete, int) and incomplete > 0 else ""
    return (
        f"{cells}: {t['as_expected']} as expected, {t['unexpected']} unexpected, "
        f"{t['not_testable']} not testable here{more} (target sm_{result.get('target_sm', '?')})"
    )


DEFAULT_PLATFORM = "x86_64-manylinux_2_28"  # what results written before the platform axis were locked for


def platform_text(cell: Mapping[str, Any]) -> str:
    """The cell's machine, and how it was judged: ``x86_64``, or ``aarch64 (static)`` for wheels of another
    platform whose build and suite were not run here."""
    arch = str(cell.get("platform") or DEFAULT_PLATFORM).split("-", 1)[0]
    return f"{arch} (static)" if judged_statically(cell) else arch


def _expected_text(exp: Mapping[str, Any] | None) -> tuple[str, str]:
    """(status, reason) of a cell's expectation."""
    exp = exp or {}
    return str(exp.get("status", "?")), str(exp.get("reason") or "")


def _observed_text(obs: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    obs = obs or {}
    return str(obs.get("status", "?")), [str(r) for r in obs.get("reasons") or []]


def unobserved_lines(obs: Mapping[str, Any] | None) -> list[str]:
    """What a cell could not observe (``observed["unobserved"]``), one ``not observed: ...`` line each."""
    return [f"not observed: {ln}" for ln in _lines((obs or {}).get("unobserved"))]


# What a floating cell's line names: the packages a user would ask about first.
FLOATED = ("whisperx", "torch", "torchaudio", "pyannote-audio", "ctranslate2", "huggingface-hub")


def observed_notes(cell: Mapping[str, Any]) -> list[str]:
    """The lines under a cell's observed outcome: what a floating cell floated to (its resolved lock is kept in
    the result, so ``--lock-from`` rebuilds it), then what it could not observe."""
    lock = cell.get("lock") or {}
    out = []
    if lock.get("floating"):
        versions = cell.get("versions") or {}
        got = ", ".join(f"{name} {versions[name]}" for name in FLOATED if versions.get(name))
        out.append(
            f"floated to: {got or 'versions not recorded'} (resolved at run time from "
            f"{lock.get('index_note') or lock.get('index') or 'its index'}; lock sha256 {str(lock.get('sha256'))[:19]})"
        )
    return out + unobserved_lines(cell.get("observed"))


def _lines(value: Any) -> list[str]:
    """Evidence as a list of lines: a string is split at newlines, a list is flattened, an evidence item
    ({"basis", "text", ...}) becomes one line that starts with its basis (after ``context, not judged: `` when
    the item carries ``"context": true``: shown, but it did not decide)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [ln for ln in value.splitlines() if ln.strip()]
    if isinstance(value, Mapping):
        lines = _lines(evidence_line(value))
        if value.get("context") is True and lines:  # shown, but it did not decide the verdict
            lines[0] = CONTEXT_PREFIX + lines[0]
        return lines
    out: list[str] = []
    for item in value:
        out.extend(_lines(item))
    return out


def claim_lines(claim: Mapping[str, Any]) -> list[str]:
    """A claim's evidence lines, then what a not-testable part lacked."""
    return _lines(claim.get("evidence")) + [f"missing: {m}" for m in claim.get("missing") or []]


def claim_verdict(claim: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(verdict, its qualifier, its parts): ``confirmed``, `` (CPU and static only; GPU part not run)`` from
    ``claim["partial"]`` (or ""), and ``option 1 fails on sm_120: confirmed`` for each of ``claim["parts"]``."""
    partial = claim.get("partial")
    parts = []
    for p in claim.get("parts") or []:
        if isinstance(p, Mapping):
            parts.append(f"{p.get('part', '?')}: {p.get('verdict', '?')}")
        elif isinstance(p, (list, tuple)) and len(p) == 2:  # (part, verdict), as the verdict stage holds them
            parts.append(f"{p[0]}: {p[1]}")
        else:
            parts.append(str(p))
    return str(claim.get("verdict", "?")), f" ({partial})" if partial else "", parts


def claim_basis(claim: Mapping[str, Any]) -> str:
    bases = ", ".join(claim.get("bases") or []) or "none"
    return bases + (" (cited facts only)" if claim.get("rests_on") else "")


def probe_rows(result: Mapping[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    """GPU probes (the cell suite run in an env the matrix did not build, a GPU machine's own stack), by label:
    (label, GPU, versions, one ``test: outcome`` line per test)."""
    rows = []
    for pr in sorted(result.get("probes") or [], key=lambda p: str(p.get("label"))):
        gpu = pr.get("gpu") or {}
        where = (
            f"{gpu.get('name')} (sm_{gpu.get('sm')}, driver {gpu.get('driver')})" if gpu.get("present") else "no GPU"
        )
        tests = (pr.get("suite") or {}).get("tests") or []
        versions = ", ".join(f"{k} {v}" for k, v in sorted((pr.get("versions") or {}).items()))
        rows.append((str(pr.get("label", "?")), where, versions, [f"{t['test']}: {t['outcome']}" for t in tests]))
    return rows


def _machine_text(result: Mapping[str, Any]) -> str:
    machine = result.get("machine") or {}
    text = str(machine.get("description") or "unknown machine")
    gpu = machine.get("gpu")
    if isinstance(gpu, Mapping) and gpu.get("name"):
        cc = f", sm_{str(gpu.get('compute_capability', '')).replace('.', '')}" if gpu.get("compute_capability") else ""
        drv = f", driver {gpu['driver']}" if gpu.get("driver") else ""
        text += f"; GPU {gpu['name']}{cc}{drv}"
    return text

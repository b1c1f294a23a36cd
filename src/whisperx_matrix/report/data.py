"""The report's vocabulary and the facts every rendering draws: colours, check kinds, headline, redaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import FatalError
from ..secrets import redact
from ..verdict import evidence_line, totals

SCHEMA = 1
CHECKS = ("lock", "build", "selftest", "arch", "closure", "suite")
CLAIMS_START = "<!-- claims:start -->"
CLAIMS_END = "<!-- claims:end -->"
FILES = {"png": "matrix.png", "md": "matrix.md", "html": "matrix.html", "json": "matrix.json"}  # write order

# Square colours of the PNG and verdict colours of the HTML: one palette (colour-blind safe-ish: green/blue/red/grey).
COLOURS = {"ok": "#2e9e4f", "expected-fail": "#3b6fd6", "unexpected": "#d6333f", "none": "#b9bec5"}
LEGEND = {
    "ok": "passed",
    "expected-fail": "failed as expected",
    "unexpected": "failed unexpectedly, or passed where a failure was expected",
    "none": "not run / not testable",
}
VERDICT_KIND = {
    "as-expected": "ok",
    "failed-as-expected": "expected-fail",
    "wrong-reason": "unexpected",
    "unexpected-pass": "unexpected",
    "unexpected-failure": "unexpected",
    "not-testable": "none",
}
CLAIM_KIND = {"confirmed": "ok", "contradicted": "unexpected", "not-testable": "none"}


class ReportError(FatalError):
    """A result file is unreadable or not a matrix result, or the README has no claims markers.
    (FatalError's exit code 1: errors.py owns the distinct codes.)"""


# ---------------------------------------------------------------------------------------------- redaction


def redacted(data: Any) -> Any:
    """A deep copy of ``data`` with every string (keys too) passed through the redactor."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {redact(str(k)): redacted(v) for k, v in data.items()}
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
    t = result.get("totals") or totals(result.get("cells", []))
    cells = f"{t['cells']} cell{'' if t['cells'] == 1 else 's'}"
    return (
        f"{cells}: {t['as_expected']} as expected, {t['unexpected']} unexpected, "
        f"{t['not_testable']} not testable here (target sm_{result.get('target_sm', '?')})"
    )


def _expected_text(exp: Mapping[str, Any] | None) -> tuple[str, str]:
    """(status, reason) of a cell's expectation."""
    exp = exp or {}
    return str(exp.get("status", "?")), str(exp.get("reason") or "")


def _observed_text(obs: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    obs = obs or {}
    return str(obs.get("status", "?")), [str(r) for r in obs.get("reasons") or []]


def _lines(value: Any) -> list[str]:
    """Evidence as a list of lines: a string is split at newlines, a list is flattened, an evidence item
    ({"basis", "text", ...}) becomes one line that starts with its basis."""
    if value is None:
        return []
    if isinstance(value, str):
        return [ln for ln in value.splitlines() if ln.strip()]
    if isinstance(value, Mapping):
        return _lines(evidence_line(value))
    out: list[str] = []
    for item in value:
        out.extend(_lines(item))
    return out


def claim_lines(claim: Mapping[str, Any]) -> list[str]:
    """A claim's evidence lines, then what a not-testable part lacked."""
    return _lines(claim.get("evidence")) + [f"missing: {m}" for m in claim.get("missing") or []]


def claim_basis(claim: Mapping[str, Any]) -> str:
    bases = ", ".join(claim.get("bases") or []) or "none"
    return bases + (" (cited facts only)" if claim.get("rests_on") else "")


def _machine_text(result: Mapping[str, Any]) -> str:
    machine = result.get("machine") or {}
    text = str(machine.get("description") or "unknown machine")
    gpu = machine.get("gpu")
    if isinstance(gpu, Mapping) and gpu.get("name"):
        cc = f", sm_{str(gpu.get('compute_capability', '')).replace('.', '')}" if gpu.get("compute_capability") else ""
        drv = f", driver {gpu['driver']}" if gpu.get("driver") else ""
        text += f"; GPU {gpu['name']}{cc}{drv}"
    return text

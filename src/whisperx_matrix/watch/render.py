"""The watch's result in words: plain text for a terminal or a log, Markdown for a pull request's body. Both read
only the JSON-able result, so what is printed is what ``--json`` gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import ui
from .predict import STATIC_ONLY

HEADLINE = "Predicted from static facts only (lock, fatbin arch, ELF closure): the build, self-test and cell suite did not run."


def _versions(newer: Sequence[Mapping[str, Any]], limit: int = 6) -> str:
    vs = [n["version"] for n in newer]
    if len(vs) <= limit:
        return " ".join(vs)
    return f"{' '.join(vs[:2])} ... {' '.join(vs[-2:])} ({len(vs)} releases)"


def _taken(r: Mapping[str, Any]) -> str:
    if r["candidates"]:
        return ", ".join(r["candidates"])
    if r["resolved_by"]:
        return "; ".join(f"{v} <- {', '.join(ids)}" for v, ids in r["resolved_by"].items())
    reasons = sorted(set(r["no_candidate"].values()))
    return "none: " + "; ".join(reasons) if reasons else "none"


def release_rows(result: Mapping[str, Any]) -> tuple[list[list[str]], list[str]]:
    rows, current = [], []
    for r in result["releases"]:
        if r["newer"]:
            rows.append([r["name"], r["locked"], _versions(r["newer"]), _taken(r)])
        else:
            current.append(f"{r['name']} {r['locked']}" + (f" ({r['note']})" if r["note"] else ""))
    return rows, current


def _family(c: Mapping[str, Any]) -> str:
    fam = c.get("family")
    if not fam:
        return ""
    parts = [
        f"{name} {ver}: {fam['why'][name]}" if ver else f"{name}: {fam['why'][name]}"
        for name, ver in fam["versions"].items()
    ]
    return "; ".join(parts + [f"cuda {c['cuda']}: {fam['cuda_from']}"])


def _sm_lines(c: Mapping[str, Any]) -> list[str]:
    out = []
    for sm, v in c["audit"]["per_sm"].items():
        state = "runnable" if v["runnable"] else "fails: " + ", ".join(v["reasons"])
        out.append(f"{sm}: {state}" + (f" ({v['torch']})" if v.get("torch") else ""))
    return out


def _claim_line(ch: Mapping[str, Any]) -> str:
    if ch["kind"] == "needs-suite":
        return f"{ch['claim']}: {ch['before']}; not predictable statically ({ch['why'][0]})"
    return f"{ch['claim']}: {ch['before']} -> {ch['after']} ({ch['kind']})"


def changes(result: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(claims whose verdict would change, cells whose outcome would change), one line each."""
    verdicts, outcomes = [], []
    for c in result["candidates"]:
        for ch in c["claims"]:
            if ch["kind"] == "verdict-changes":
                verdicts.append(f"{ch['claim']}: {ch['before']} -> {ch['after']} with {c['id']}")
        if c["outcome"].get("kind") == "changed":
            outcomes.append(f"{c['id']}: {c['outcome']['text']}")
    return verdicts, outcomes


def text(result: Mapping[str, Any]) -> str:
    rows, current = release_rows(result)
    lines = [
        f"watch: {len(result['releases'])} packages asked of {result['index']}; {result['dates']}",
        f"compared with: {result['results']} (claims re-judged by this version); kernels audited for "
        + ", ".join(f"sm_{sm}" for sm in result["sms"]),
        "",
    ]
    if rows:
        lines.append(ui.table(["PACKAGE", "LOCKED", "NEWER ON THE INDEX (date unknown)", "CANDIDATE"], rows))
    else:
        lines.append("nothing newer than the locks on the index")
    if current:
        lines += ["", "up to date: " + ", ".join(current)]
    lines += [f"note: {n}" for n in result["notes"]]
    if result["candidates"]:
        lines += ["", f"CANDIDATES ({HEADLINE})"]
    for c in result["candidates"]:
        lines += ["", f"{c['id']}: {c['package']} {c['version']} (locked {c['locked']}), made from {c['base']}"]
        lines.append(f"  fragment: {c['file']}")
        if fam := _family(c):
            lines.append(f"  family: {fam}")
        if c["audit"]["note"]:
            lines.append(f"  audit: {c['audit']['note']}")
        lines += [f"  {s}" for s in _sm_lines(c)]
        lines += [f"  closure: {m}" for m in c["audit"]["closure_missing"]]
        expect = c["expect"]
        lines.append(
            f"  {'predicted expect' if c['expect_predicted'] else 'expect (NOT predicted: copied from ' + c['base'] + ')'}: {expect['status']}{' (' + expect['reason'] + ')' if expect.get('reason') else ''}"
            + "".join(
                f"; sm_{sm}: {v['status']}{' (' + v['reason'] + ')' if v.get('reason') else ''}"
                for sm, v in c["expect_sm"].items()
            )
        )
        lines.append(f"  outcome [{c['outcome']['kind']}]: {c['outcome']['text']}")
        for ch in c["claims"]:
            if ch["kind"] == "unchanged":
                continue
            lines.append(f"  claim {_claim_line(ch)}")
            if ch["kind"] != "needs-suite":
                lines += [f"      {w[:220]}" for w in ch["why"]]
                lines += [f"      missing: {m[:200]}" for m in ch.get("missing", [])]
    verdicts, outcomes = changes(result)
    lines += [
        "",
        f"predicted verdict changes ({STATIC_ONLY}): " + ("; ".join(verdicts) if verdicts else "none"),
        "predicted outcome changes: " + ("; ".join(outcomes) if outcomes else "none"),
        f"written: {result['out']}/ (cells/*.toml, constraints/*.txt, watch.json, watch.md) [{result['seconds']:.0f} s]",
    ]
    return "\n".join(lines)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def markdown(result: Mapping[str, Any]) -> str:
    """The pull request's body: the releases, then per candidate its prediction and the verdict diff."""
    rows, current = release_rows(result)
    verdicts, outcomes = changes(result)
    out = [
        "Releases newer than the locks, found by `nox -s watch` (scheduled). " + HEADLINE,
        "Measure before merging: `nox -s matrix -- <cell>` builds each candidate and runs its suite.",
        "",
        f"- Predicted verdict changes: {'; '.join(verdicts) if verdicts else 'none'}",
        f"- Predicted outcome changes: {'; '.join(outcomes) if outcomes else 'none'}",
        f"- Compared with `{result['results']}`; kernels audited for {', '.join(f'sm_{s}' for s in result['sms'])}; "
        f"{result['dates']}.",
        "",
        "| package | locked | newer on the index | candidate |",
        "|---|---|---|---|",
    ]
    out += [f"| {' | '.join(_md_escape(x) for x in row)} |" for row in rows]
    if current:
        out += ["", "Up to date: " + ", ".join(current)]
    for c in result["candidates"]:
        out += ["", f"### `{c['id']}`: {c['package']} {c['version']} (from `{c['base']}`)", ""]
        if fam := _family(c):
            out.append(f"- family: {fam}")
        if c["audit"]["note"]:
            out.append(f"- audit: {c['audit']['note']}")
        out += [f"- {s}" for s in _sm_lines(c)]
        out += [f"- closure: `{m}`" for m in c["audit"]["closure_missing"]]
        out.append(f"- outcome ({c['outcome']['kind']}): {c['outcome']['text']}")
        if any(ch["kind"] != "unchanged" for ch in c["claims"]):
            out += ["", "| claim | before | after | why |", "|---|---|---|---|"]
            for ch in c["claims"]:
                if ch["kind"] == "unchanged":
                    continue
                after = ch["after"] or "not predictable statically"
                why = "<br>".join(_md_escape(w[:300]) for w in ch["why"]) or "-"
                out.append(f"| {ch['claim']} | {ch['before']} | {after} | {why} |")
        out += ["", "```toml", c["fragment"].rstrip("\n"), "```"]
    return "\n".join(out) + "\n"

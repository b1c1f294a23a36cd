"""The Markdown report and the README's claims block."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import freshness
from ..fsutil import atomic_write_bytes
from ..verdict import UNEXPECTED
from .data import (
    CLAIMS_END,
    CLAIMS_START,
    ReportError,
    _expected_text,
    _lines,
    _machine_text,
    _observed_text,
    claim_basis,
    claim_lines,
    claim_verdict,
    headline,
    observed_notes,
    platform_text,
    probe_rows,
    redacted,
)

# ---------------------------------------------------------------------------------------------- Markdown

_MD_EMPHASIS = re.compile(r"[*`~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md(text: Any) -> str:
    """Plain text for a GFM table cell: no pipe, no raw HTML, no emphasis, no line break (-> <br>)."""
    s = html.escape(str(text), quote=False).replace("|", "\\|").replace("\r", "")
    s = _MD_EMPHASIS.sub(lambda m: "\\" + m.group(0), s)
    return s.replace("\n", "<br>")


def _md_code(text: Any) -> str:
    s = str(text).replace("\n", " ").replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}" if s else ""


def _md_lines(lines: Iterable[str]) -> str:
    return "<br>".join(_md(ln) for ln in lines)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _md_verdict(verdict: str) -> str:
    return f"**{_md(verdict)}**" if verdict in UNEXPECTED else _md(verdict)


def _md_claim_verdict(claim: Mapping[str, Any]) -> str:
    """The verdict (bold when the document is contradicted, wholly or in part), its qualifier, then its parts
    one per line."""
    verdict, partial, parts = claim_verdict(claim)
    text = f"**{_md(verdict)}**" if verdict in ("contradicted", "mixed") else _md(verdict)
    return "<br>".join([text + _md(partial), *(_md(p) for p in parts)])


def cells_markdown(result: Mapping[str, Any]) -> str:
    rows = []
    for c in result.get("cells", []):
        es, er = _expected_text(c.get("expected"))
        os_, ors = _observed_text(c.get("observed"))
        rows.append(
            [
                _md_code(c.get("id", "?")),
                _md(platform_text(c)),
                _md(es) + (f" {_md_code(er)}" if er else ""),
                "<br>".join(
                    [
                        _md(os_) + (" " + ", ".join(_md_code(r) for r in ors) if ors else ""),
                        *(_md(ln) for ln in observed_notes(c)),
                    ]
                ),
                _md_verdict(str(c.get("verdict", "?"))),
                _md_lines(_lines(c.get("evidence"))),
            ]
        )
    return "\n".join(_md_table(["cell", "platform", "expected", "observed", "verdict", "evidence"], rows)) + "\n"


def claims_markdown(result: Mapping[str, Any]) -> str:
    """The claims table alone (README.md embeds it between the claims markers)."""
    result = redacted(result)
    rows = []
    for cl in result.get("claims", []):
        cells = ", ".join(_md_code(c) for c in cl.get("cells", []))
        rows.append(
            [
                _md_code(cl.get("id", "?")) + (f"<br>cells: {cells}" if cells else ""),
                "“" + _md(cl.get("quote", "")) + "”",
                _md_claim_verdict(cl),
                _md(claim_basis(cl)),
                _md_lines(claim_lines(cl)),
            ]
        )
    return "\n".join(_md_table(["claim", "the document says", "verdict", "basis", "evidence"], rows)) + "\n"


def probes_markdown(result: Mapping[str, Any]) -> str:
    """GPU probes: the cell suite run in an env the matrix did not build (a GPU machine's own stack)."""
    rows = [
        [_md_code(label), _md(where), _md(versions), _md_lines(tests)]
        for label, where, versions, tests in probe_rows(result)
    ]
    return "\n".join(_md_table(["probe", "GPU", "versions", "tests"], rows)) + "\n"


def _provenance(result: Mapping[str, Any]) -> str:
    return (
        f"Generated {result.get('generated_at', '?')} on {_machine_text(result)}; "
        f"selectors {' '.join(result.get('selectors') or ['*'])}."
    )


def render_markdown(result: Mapping[str, Any]) -> str:
    result = redacted(result)
    parts = [
        "# WhisperX matrix",
        "",
        f"**{_md(headline(result))}**",
        "",
        *(
            [
                f"{result['cached_cells']} of {len(result.get('cells', []))} cells answered from the results cache "
                "(the same key: lock, cell entry, patches, code, sm, Python and machine; `--no-cache` runs them).",
                "",
            ]
            if result.get("cached_cells")
            else []
        ),
        _md(_provenance(result)),
        "",
        *[_md(text) + "  " for text in freshness.lines(result.get("freshness"))],  # "  ": a Markdown line break
        "",
        "## Claims of the document",
        "",
        claims_markdown(result),
        "## Cells",
        "",
        cells_markdown(result),
    ]
    if result.get("probes"):
        parts += ["## GPU probes", "", probes_markdown(result)]
    return "\n".join(parts)


def update_readme(readme: Path, result: Mapping[str, Any]) -> bool:
    """Replace the text between the claims markers of ``readme`` (atomically); True if it changed."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {readme}: {exc.strerror}") from None
    start, end = text.find(CLAIMS_START), text.find(CLAIMS_END)
    if start < 0 or end < 0 or end < start:
        raise ReportError(
            f"{readme} has no {CLAIMS_START} ... {CLAIMS_END} block",
            hint="add the two marker lines where the claims table should go",
        )
    result = redacted(result)
    block = f"\n_{_md(headline(result))}. {_md(_provenance(result))}_\n\n{claims_markdown(result)}"
    new = text[: start + len(CLAIMS_START)] + block + text[end:]
    if new == text:
        return False
    atomic_write_bytes(readme, new.encode("utf-8"))
    return True

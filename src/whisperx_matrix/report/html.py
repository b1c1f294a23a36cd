"""The HTML report (one self-contained page, the PNG inlined)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .. import freshness
from .data import (
    CELL_LEGEND,
    CHECKS,
    CLAIM_KIND,
    CLAIM_LEGEND,
    COLOURS,
    LEGEND,
    LIGHT_KINDS,
    VERDICT_KIND,
    _expected_text,
    _lines,
    _observed_text,
    check_kind,
    claim_basis,
    claim_lines,
    claim_verdict,
    headline,
    observed_notes,
    platform_text,
    probe_rows,
    redacted,
)
from .markdown import _provenance

# ---------------------------------------------------------------------------------------------- HTML

# Fits a 1280 px wide window: fixed table layouts with set column widths, and every cell (code spans too) may
# break a long token (a soname, a path) anywhere rather than widen the page.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1d2125;
     max-width:1500px}
h1{font-size:1.5em;margin:0 0 .3em} h2{font-size:1.2em;margin:1.6em 0 .4em}
p.headline{font-size:1.15em;font-weight:600} p.meta{color:#555;margin-top:0}
p.meta,p.headline,p.legend{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:.4em 0 1em;font-size:.92em}
th,td{border:1px solid #cfd4da;padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef1f4} tr:nth-child(even) td{background:#fafbfc}
td.v{font-weight:600;color:#fff}
td.v div.part{font-weight:400;font-size:.92em;margin-top:4px} td.v span.partial{font-weight:400}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.95em;background:#f1f3f5;padding:0 3px;
     overflow-wrap:anywhere}
td.v code{color:#1d2125} table#checks td{font-size:.94em}
td.ev div,td.obs div{margin:0 0 2px} blockquote{margin:0;font-style:italic}
img.grid{max-width:100%;height:auto;border:1px solid #cfd4da}
p.legend{margin:.2em 0 .4em;font-size:.92em;color:#333}
span.sq{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin:0 .3em 0 .8em}
p.legend span.sq:first-child{margin-left:0}
"""
# Column widths (percent of the page), per table.
_WIDTHS = {
    "claims": (13, 20, 13, 9, 45),
    "cells": (15, 7, 14, 16, 10, 38),
    "checks": (12, 12, 12, 12, 12, 12, 12, 16),
    "probes": (15, 18, 22, 45),
}


def _css() -> str:
    """The style sheet, the verdict colours from the one palette (data.COLOURS)."""
    kinds = "".join(
        f"td.v.{kind}{{background:{colour}!important{';color:#1d2125' if kind in LIGHT_KINDS else ''}}}\n"
        for kind, colour in COLOURS.items()
    )
    return _CSS + kinds


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


_BREAK_AFTER = re.compile(r"([/:,=])(?=.)")


def _h_code(text: Any) -> str:
    """A code span that may break after ``/ : , =`` (a path, a reason token) before breaking anywhere."""
    return "<code>" + _BREAK_AFTER.sub(r"\1<wbr>", _h(text)) + "</code>" if str(text) else ""


def _h_lines(lines: Iterable[str]) -> str:
    return "".join(f"<div>{_h(ln)}</div>" for ln in lines)


def _legend(entries: Mapping[str, str], what: str) -> str:
    squares = "".join(f'<span class="sq" style="background:{COLOURS[k]}"></span>{_h(v)}' for k, v in entries.items())
    return f'<p class="legend" id="legend-{what}">{squares}</p>'


def _table_head(name: str, header: Iterable[str]) -> str:
    cols = "".join(f'<col style="width:{w}%">' for w in _WIDTHS[name])
    ths = "".join(f"<th>{_h(h)}</th>" for h in header)
    return f'<table id="{name}"><colgroup>{cols}</colgroup><thead><tr>{ths}</tr></thead><tbody>'


def _claims(result: Mapping[str, Any]) -> list[str]:
    out = [
        "<h2>Claims of the document</h2>",
        _legend(CLAIM_LEGEND, "claims"),
        _table_head("claims", ["claim", "the document says", "verdict", "basis", "evidence"]),
    ]
    for cl in result.get("claims", []):
        verdict, partial, parts = claim_verdict(cl)
        cells = " ".join(_h_code(x) for x in cl.get("cells", []))
        out.append(
            f'<tr id="claim-{_h(cl.get("id", "?"))}"><td>{_h_code(cl.get("id", "?"))}<br><small>cells: {cells}'
            f"</small></td><td><blockquote>“{_h(cl.get('quote', ''))}”</blockquote></td>"
            f'<td class="v {CLAIM_KIND.get(verdict, "none")}">{_h(verdict)}'
            + (f'<span class="partial">{_h(partial)}</span>' if partial else "")
            + "".join(f'<div class="part">{_h(part)}</div>' for part in parts)
            + f"</td><td>{_h(claim_basis(cl))}</td>"
            f'<td class="ev">{_h_lines(claim_lines(cl))}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _cells(result: Mapping[str, Any]) -> list[str]:
    out = [
        "<h2>Cells</h2>",
        _legend(CELL_LEGEND, "cells"),
        _table_head("cells", ["cell", "platform", "expected", "observed", "verdict", "evidence"]),
    ]
    for c in result.get("cells", []):
        es, er = _expected_text(c.get("expected"))
        os_, ors = _observed_text(c.get("observed"))
        verdict = str(c.get("verdict", "?"))
        out.append(
            f'<tr id="cell-{_h(c.get("id", "?"))}"><td>{_h_code(c.get("id", "?"))}<br><small>{_h(c.get("summary", ""))}'
            f"</small></td><td>{_h(platform_text(c))}</td><td>{_h(es)} {_h_code(er)}</td>"
            f'<td class="obs">{_h(os_)} {", ".join(_h_code(r) for r in ors)}'
            f"{_h_lines(observed_notes(c))}</td>"
            f'<td class="v {VERDICT_KIND.get(verdict, "none")}">{_h(verdict)}</td>'
            f'<td class="ev">{_h_lines(_lines(c.get("evidence")))}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _checks(result: Mapping[str, Any], png: bytes | None) -> list[str]:
    out = ["<h2>Checks</h2>"]
    if png:
        data = base64.b64encode(png).decode("ascii")
        out.append(
            f'<img class="grid" id="grid" alt="check grid: rows are cells, columns are checks" '
            f'src="data:image/png;base64,{data}">'
        )
    else:  # a grid draws this legend itself
        out.append(_legend(LEGEND, "checks"))
    out.append(_table_head("checks", ["cell", *CHECKS, "versions"]))
    for c in result.get("cells", []):
        checks = c.get("checks") or {}
        tds = []
        for name in CHECKS:
            ch = checks.get(name) or {}
            secs = f" ({ch['seconds']:.1f} s)" if isinstance(ch.get("seconds"), (int, float)) and ch["seconds"] else ""
            tds.append(
                f'<td class="ck {check_kind(ch)}" style="border-left:6px solid {COLOURS[check_kind(ch)]}">'
                f"<b>{_h(ch.get('status', 'not run'))}</b>{_h(secs)}<br>{_h(ch.get('detail', ''))}</td>"
            )
        versions = ", ".join(f"{k} {v}" for k, v in sorted((c.get("versions") or {}).items()))
        out.append(f"<tr><td>{_h_code(c.get('id', '?'))}</td>{''.join(tds)}<td><small>{_h(versions)}</small></td></tr>")
    out.append("</tbody></table>")
    return out


def _probes(result: Mapping[str, Any]) -> list[str]:
    rows = probe_rows(result)
    if not rows:
        return []
    out = ["<h2>GPU probes</h2>", _table_head("probes", ["probe", "GPU", "versions", "tests"])]
    for label, where, versions, tests in rows:
        out.append(
            f"<tr><td>{_h_code(label)}</td><td>{_h(where)}</td><td><small>{_h(versions)}</small></td>"
            f'<td class="ev">{_h_lines(tests)}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def render_html(result: Mapping[str, Any], png: bytes | None) -> str:
    """One self-contained page: headline and provenance, then the claims, the cells, the checks (the PNG grid
    first) and the GPU probes."""
    result = redacted(result)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>WhisperX matrix: {_h(headline(result))}</title>",
        f"<style>{_css()}</style></head><body>",
        "<h1>WhisperX matrix</h1>",
        f'<p class="headline" id="headline">{_h(headline(result))}</p>',
        f'<p class="meta">{_h(_provenance(result))}</p>',
        *(
            [
                f'<p class="meta" id="freshness">{"<br>".join(_h(t) for t in freshness.lines(result.get("freshness")))}</p>'
            ]
            if result.get("freshness")
            else []
        ),
        *_claims(result),
        *_cells(result),
        *_checks(result, png),
        *_probes(result),
        "</body></html>",
        "",
    ]
    return "\n".join(out)

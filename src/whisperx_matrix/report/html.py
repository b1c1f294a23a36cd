"""The HTML report (one self-contained page, the PNG inlined)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from typing import Any

from .data import (
    CHECKS,
    CLAIM_KIND,
    COLOURS,
    LEGEND,
    VERDICT_KIND,
    _expected_text,
    _lines,
    _observed_text,
    check_kind,
    claim_basis,
    claim_lines,
    headline,
    redacted,
)
from .markdown import _provenance

# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1d2125;
     max-width:1500px}
h1{font-size:1.5em;margin:0 0 .3em} h2{font-size:1.2em;margin:1.6em 0 .5em}
p.headline{font-size:1.15em;font-weight:600} p.meta{color:#555;margin-top:0}
table{border-collapse:collapse;width:100%;margin:.4em 0 1em;font-size:.92em}
th,td{border:1px solid #cfd4da;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4} tr:nth-child(even) td{background:#fafbfc}
td.v{font-weight:600;white-space:nowrap;color:#fff}
td.v.ok{background:#2e9e4f!important} td.v.expected-fail{background:#3b6fd6!important}
td.v.unexpected{background:#d6333f!important} td.v.none{background:#b9bec5!important;color:#1d2125}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.95em;background:#f1f3f5;padding:0 3px}
td.ev div{margin:0 0 2px} blockquote{margin:0;font-style:italic}
img.grid{max-width:100%;height:auto;border:1px solid #cfd4da}
span.sq{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin:0 .3em 0 .8em}
"""


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _h_code(text: Any) -> str:
    return f"<code>{_h(text)}</code>" if str(text) else ""


def _h_lines(lines: Iterable[str]) -> str:
    return "".join(f"<div>{_h(ln)}</div>" for ln in lines)


def render_html(result: Mapping[str, Any], png: bytes | None) -> str:
    result = redacted(result)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>WhisperX matrix: {_h(headline(result))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>WhisperX matrix</h1>",
        f'<p class="headline" id="headline">{_h(headline(result))}</p>',
        f'<p class="meta">{_h(_provenance(result))}</p>',
    ]
    if png:
        data = base64.b64encode(png).decode("ascii")
        out.append(
            f'<img class="grid" id="grid" alt="check grid: rows are cells, columns are checks" '
            f'src="data:image/png;base64,{data}">'
        )
    out.append(
        '<p class="legend">'
        + "".join(f'<span class="sq" style="background:{COLOURS[k]}"></span>{_h(v)}' for k, v in LEGEND.items())
        + "</p>"
    )

    out += [
        "<h2>Cells</h2>",
        '<table id="cells"><thead><tr><th>cell</th><th>expected</th><th>observed</th>'
        "<th>verdict</th><th>evidence</th></tr></thead><tbody>",
    ]
    for c in result.get("cells", []):
        es, er = _expected_text(c.get("expected"))
        os_, ors = _observed_text(c.get("observed"))
        verdict = str(c.get("verdict", "?"))
        out.append(
            f'<tr id="cell-{_h(c.get("id", "?"))}"><td>{_h_code(c.get("id", "?"))}<br><small>{_h(c.get("summary", ""))}'
            f"</small></td><td>{_h(es)} {_h_code(er)}</td><td>{_h(os_)} {' '.join(_h_code(r) for r in ors)}</td>"
            f'<td class="v {VERDICT_KIND.get(verdict, "none")}">{_h(verdict)}</td>'
            f'<td class="ev">{_h_lines(_lines(c.get("evidence")))}</td></tr>'
        )
    out.append("</tbody></table>")

    out += [
        "<h2>Claims of the document</h2>",
        '<table id="claims"><thead><tr><th>claim</th>'
        "<th>the document says</th><th>verdict</th><th>basis</th><th>evidence</th></tr></thead><tbody>",
    ]
    for cl in result.get("claims", []):
        verdict = str(cl.get("verdict", "?"))
        cells = " ".join(_h_code(x) for x in cl.get("cells", []))
        out.append(
            f"<tr><td>{_h_code(cl.get('id', '?'))}<br><small>cells: {cells}</small></td>"
            f"<td><blockquote>“{_h(cl.get('quote', ''))}”</blockquote></td>"
            f'<td class="v {CLAIM_KIND.get(verdict, "none")}">{_h(verdict)}</td>'
            f"<td>{_h(claim_basis(cl))}</td>"
            f'<td class="ev">{_h_lines(claim_lines(cl))}</td></tr>'
        )
    out.append("</tbody></table>")

    out += [
        "<h2>Checks</h2>",
        '<table id="checks"><thead><tr><th>cell</th>'
        + "".join(f"<th>{_h(k)}</th>" for k in CHECKS)
        + "<th>versions</th></tr></thead><tbody>",
    ]
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
    out += ["</tbody></table>", "</body></html>", ""]
    return "\n".join(out)

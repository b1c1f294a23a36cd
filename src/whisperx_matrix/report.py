"""The report stage: one matrix result (a plain dict) -> matrix.json, matrix.md, matrix.html and matrix.png.

The result is the orchestrator's (schema 1, see ``tests/data/report/sample-result.json``). This module
renders it; a merge has the claims judged again by the verdict stage on the union of the observations.

- ``write_report(result, out_dir)`` writes the four files atomically: everything is rendered in memory, each
  file goes to a temp name in ``out_dir`` (fsynced), then the temps are renamed over the old files with
  ``os.replace``, ``matrix.json`` last, so a reader who sees the new JSON sees the new files too. A failure
  before the renames leaves the previous report untouched and no temp file behind.
- ``claims_markdown(result)`` is the claims table alone; ``update_readme(readme, result)`` puts it (with one
  provenance line) between ``<!-- claims:start -->`` and ``<!-- claims:end -->``.
- ``merge_results(results)`` joins per-cell results from a CI fan-out (see its docstring for the rules).
- Every string is redacted before it is rendered: ``whisperx_matrix.secrets.redact`` when that module
  exists, and always the values of the environment variables ``HF_TOKEN`` and ``*_TOKEN``.

A check is ``{"status": "pass"|"fail"|"skip", "expected": bool, "detail": str, "seconds": float}``;
``expected`` says whether this status was the expected one (a string "pass"/"fail" is also accepted, as the
expected status). An optional ``label`` overrides the short text drawn in the PNG square.

CLI: ``python -m whisperx_matrix report RESULT.json [--out reports/]`` re-renders a result;
``python -m whisperx_matrix report --merge DIR_OR_JSON... [--out reports/]`` merges then renders.
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import io
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import ui
from .errors import FatalError, ToolMissingError
from .fsutil import atomic_write_bytes, atomic_write_many
from .secrets import redact
from .verdict import UNEXPECTED, evidence_line, totals

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


def _md_claim_verdict(verdict: str) -> str:
    return f"**{_md(verdict)}**" if verdict == "contradicted" else _md(verdict)


def cells_markdown(result: Mapping[str, Any]) -> str:
    rows = []
    for c in result.get("cells", []):
        es, er = _expected_text(c.get("expected"))
        os_, ors = _observed_text(c.get("observed"))
        rows.append(
            [
                _md_code(c.get("id", "?")),
                _md(es) + (f" {_md_code(er)}" if er else ""),
                _md(os_) + (" " + ", ".join(_md_code(r) for r in ors) if ors else ""),
                _md_verdict(str(c.get("verdict", "?"))),
                _md_lines(_lines(c.get("evidence"))),
            ]
        )
    return "\n".join(_md_table(["cell", "expected", "observed", "verdict", "evidence"], rows)) + "\n"


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
                _md_claim_verdict(str(cl.get("verdict", "?"))),
                _md(claim_basis(cl)),
                _md_lines(claim_lines(cl)),
            ]
        )
    return "\n".join(_md_table(["claim", "the document says", "verdict", "basis", "evidence"], rows)) + "\n"


def probes_markdown(result: Mapping[str, Any]) -> str:
    """GPU probes: the cell suite run in an env the matrix did not build (a GPU machine's own stack)."""
    rows = []
    for pr in sorted(result.get("probes") or [], key=lambda p: str(p.get("label"))):
        gpu = pr.get("gpu") or {}
        where = (
            f"{gpu.get('name')} (sm_{gpu.get('sm')}, driver {gpu.get('driver')})" if gpu.get("present") else "no GPU"
        )
        tests = (pr.get("suite") or {}).get("tests") or []
        rows.append(
            [
                _md_code(pr.get("label", "?")),
                _md(where),
                _md(", ".join(f"{k} {v}" for k, v in sorted((pr.get("versions") or {}).items()))),
                _md_lines(f"{t['test']}: {t['outcome']}" for t in tests),
            ]
        )
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
        _md(_provenance(result)),
        "",
        "## Cells",
        "",
        cells_markdown(result),
        "## Claims of the document",
        "",
        claims_markdown(result),
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


# ---------------------------------------------------------------------------------------------- PNG

_ARCH_RE = re.compile(r"arch-unsupported:(sm_\d+)")
_SONAME_RE = re.compile(r"missing-soname:(\S+?)(?=[\s,;)]|$)")
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_SONAME_ANY = re.compile(r"\b(lib[\w.+-]+\.so(?:\.\d+)*)")


def short_label(name: str, check: Mapping[str, Any] | None, target_sm: Any = None) -> str:
    """The few characters drawn in a square: the check's ``label``, else derived from its status and detail."""
    check = check or {}
    if check.get("label"):
        return str(check["label"])
    status = check.get("status")
    detail = str(check.get("detail") or "")
    if status not in ("pass", "fail"):
        return "not run" if status != "skip" or "unreachable" not in detail else "unreachable"
    if m := _ARCH_RE.search(detail):
        return f"{m.group(1)} ✗"
    if m := _SONAME_RE.search(detail):
        return m.group(1)
    if name == "arch" and status == "pass" and target_sm:
        return f"sm_{target_sm} ✓"
    if (status == "fail" or check_kind(check) == "unexpected") and (m := _SONAME_ANY.search(detail)):
        return m.group(1)
    if status == "pass":
        secs = check.get("seconds")
        return f"ok {secs:.0f} s" if isinstance(secs, (int, float)) and secs >= 1 else "ok"
    if m := _NO_MODULE.search(detail):
        return f"no {m.group(1)}"
    head = re.split(r"[:(]", detail, maxsplit=1)[0].strip()
    return head or "failed"


def _fit(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_png(result: Mapping[str, Any]) -> bytes:
    """The check grid as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch, Rectangle
    except ModuleNotFoundError:
        raise ToolMissingError(
            "matplotlib is needed to draw matrix.png",
            hint="pip install 'whisperx-matrix[report]' (or: pip install matplotlib)",
        ) from None
    glyph = _glyph_filter()
    cells = list(result.get("cells", []))
    n = max(len(cells), 1)
    sm = result.get("target_sm")
    top, row_h, bottom = 1.3, 0.5, 0.65  # inches: title + machine line + column names; one row; legend
    height = top + row_h * n + bottom
    fig = Figure(figsize=(13.5, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.33, bottom / height, 0.655, row_h * n / height))
    ax.set_xlim(0, len(CHECKS))
    ax.set_ylim(n, 0)
    for row, cell in enumerate(cells):
        checks = cell.get("checks") or {}
        for col, name in enumerate(CHECKS):
            ch = checks.get(name)
            kind = check_kind(ch)
            ax.add_patch(Rectangle((col + 0.03, row + 0.06), 0.94, 0.88, facecolor=COLOURS[kind], edgecolor="white"))
            ax.text(
                col + 0.5,
                row + 0.5,
                glyph(_fit(short_label(name, ch, sm))),
                ha="center",
                va="center",
                fontsize=9,
                color="#1d2125" if kind == "none" else "white",
                fontweight="bold",
            )
    ax.set_xticks([i + 0.5 for i in range(len(CHECKS))], list(CHECKS), fontsize=11)
    ax.xaxis.tick_top()
    ax.set_yticks(
        [i + 0.5 for i in range(len(cells))],
        [glyph(f"{c.get('id', '?')}   [{c.get('verdict', '?')}]") for c in cells],
        fontsize=10.5,
    )
    for tick, cell in zip(ax.get_yticklabels(), cells, strict=True):
        kind = VERDICT_KIND.get(str(cell.get("verdict")), "none")
        tick.set_color({"unexpected": COLOURS["unexpected"], "none": "#6b7178"}.get(kind, "#1d2125"))
        if kind == "unexpected":
            tick.set_fontweight("bold")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(
        glyph(f"WhisperX matrix, target sm_{sm}: {headline(result).split(' (')[0]}"),
        fontsize=14,
        fontweight="bold",
        y=1 - 0.12 / height,
        va="top",
    )
    fig.text(
        0.5,
        1 - 0.62 / height,
        glyph(_fit(f"machine: {_machine_text(result)}   generated {result.get('generated_at', '?')}", 150)),
        ha="center",
        fontsize=10,
        color="#444",
    )
    fig.legend(
        handles=[Patch(facecolor=COLOURS[k], label=v) for k, v in LEGEND.items()],
        loc="lower center",
        ncol=4,
        frameon=False,
        fontsize=10,
        bbox_to_anchor=(0.5, 0.02 / height),
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _glyph_filter() -> Callable[[str], str]:
    """Replace characters the default font lacks with '?', so matplotlib never warns about missing glyphs."""
    try:
        from matplotlib import font_manager, ft2font

        charmap = ft2font.FT2Font(font_manager.findfont("DejaVu Sans")).get_charmap()
    except (OSError, RuntimeError, ValueError):  # no such font here: let matplotlib deal with it
        return lambda s: s
    return lambda s: "".join(ch if ord(ch) in charmap or ch in "\n\t" else "?" for ch in s)


# ---------------------------------------------------------------------------------------------- writing


def write_report(result: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Render ``result`` into ``out_dir`` (matrix.json, .md, .html, .png), atomically; returns kind -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = redacted(result)
    if "totals" not in data:
        data["totals"] = totals(data.get("cells", []))
    png = render_png(data)
    rendered = {
        "png": png,
        "md": render_markdown(data).encode("utf-8"),
        "html": render_html(data, png).encode("utf-8"),
        "json": (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"),
    }
    paths = {kind: out_dir / name for kind, name in FILES.items()}
    atomic_write_many({paths[kind]: rendered[kind] for kind in FILES})  # FILES order: JSON last
    return paths


# ---------------------------------------------------------------------------------------------- merging

Judge = Callable[[Mapping[str, Mapping[str, Any]], Sequence[Mapping[str, Any]]], list[dict[str, Any]]]


def _stamp(result: Mapping[str, Any]) -> str:
    return str(result.get("generated_at", ""))


def merge_results(
    results: Sequence[Mapping[str, Any]],
    *,
    sources: Sequence[str] | None = None,
    order: Sequence[str] | None = None,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """Join results of a CI fan-out (one job per cell, plus GPU probe records) into one result, the same
    whatever order the inputs come in.

    - cells: one per id. Where two inputs hold the same cell, the later run (generated_at, then its JSON)
      wins. Sorted by ``order`` (matrix.toml's cell ids), unknown ids last by id.
    - probes: the union, one per (label, generated_at).
    - claims: re-judged by ``judge`` on the merged cells and probes (the verdict stage); never picked from an
      input. Without a judge, the merged result has no claims.
    - totals: recomputed; seconds: summed over the inputs (machine time); generated_at: the latest input's;
      selectors: the union in cell order; machine: every distinct description, sorted.
    All inputs must be schema 1 with the same target_sm.
    """
    if not results:
        raise ReportError("nothing to merge", hint="pass result JSON files or folders that hold them")
    sources = list(sources or [f"input {i + 1}" for i in range(len(results))])
    sms = {r.get("target_sm") for r in results}
    if len(sms) > 1:
        raise ReportError(
            f"results for different target compute capabilities: {sorted(map(str, sms))}",
            hint="merge only results of one matrix run (one --sm)",
        )
    rank = {cid: i for i, cid in enumerate(order or [])}

    def cell_key(cid: str) -> tuple[int, str]:
        return (rank.get(cid, len(rank)), cid)

    by_id: dict[str, tuple[tuple[str, str], dict[str, Any]]] = {}
    probes: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        for cell in r.get("cells", []):
            cid = str(cell.get("id"))
            key = (_stamp(r), json.dumps(cell, sort_keys=True))
            if cid not in by_id or key > by_id[cid][0]:
                by_id[cid] = (key, copy.deepcopy(dict(cell)))
        for probe in r.get("probes") or []:
            probes[(str(probe.get("label")), str(probe.get("generated_at")))] = copy.deepcopy(dict(probe))
    cells = [by_id[cid][1] for cid in sorted(by_id, key=cell_key)]
    probe_list = [probes[k] for k in sorted(probes)]

    seconds: dict[str, float] = {}
    for r in results:
        for k, v in (r.get("seconds") or {}).items():
            if isinstance(v, (int, float)):
                seconds[k] = seconds.get(k, 0.0) + v
    seconds = {k: round(v, 2) for k, v in sorted(seconds.items())}
    selectors = sorted({str(s) for r in results for s in r.get("selectors") or []}, key=cell_key)
    latest = max(results, key=lambda r: (_stamp(r), json.dumps(r.get("machine") or {}, sort_keys=True)))
    machine = copy.deepcopy(dict(latest.get("machine") or {}))
    descriptions = sorted({d for r in results if (d := (r.get("machine") or {}).get("description"))})
    if len(descriptions) > 1:
        machine["description"] = " / ".join(descriptions)
    by_cells = {c["id"]: c for c in cells}
    return {
        "schema": SCHEMA,
        "generated_at": max(_stamp(r) for r in results),
        "target_sm": results[0].get("target_sm"),
        "machine": machine,
        "selectors": selectors,
        "cells": cells,
        "probes": probe_list,
        "claims": judge(by_cells, probe_list) if judge else [],
        "totals": totals(cells),
        "seconds": seconds,
        "merged_from": sorted(
            (
                {"source": s, "generated_at": r.get("generated_at"), "cells": [c.get("id") for c in r.get("cells", [])]}
                for s, r in zip(sources, results, strict=True)
            ),
            key=lambda x: (str(x["source"]), str(x["generated_at"])),
        ),
    }


def matrix_judge(root: Path | None = None) -> tuple[list[str], Judge]:
    """matrix.toml's cell order and the verdict stage over claims.toml, for merging."""
    from . import matrix as matrices
    from . import verdict

    m = matrices.load(root / "matrix.toml" if root else None)
    claims = verdict.load_claims(m.root / "claims.toml", m)
    return m.ids(), lambda cells, probes: verdict.judge_claims(claims, cells, probes)


# Keys whose values may differ between two runs of the same inputs: when and how long, and whether a build was
# made or reused. Everything else in a result is a function of the inputs.
VOLATILE_KEYS = frozenset({"generated_at", "seconds", "built_at", "work", "merged_from"})


def without_volatile(data: Any) -> Any:
    """``data`` with every VOLATILE_KEYS entry removed, at any depth: what two runs must agree on byte for byte."""
    if isinstance(data, Mapping):
        return {k: without_volatile(v) for k, v in data.items() if k not in VOLATILE_KEYS}
    if isinstance(data, list):
        return [without_volatile(v) for v in data]
    return data


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def load_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not is_result(data):
        raise ReportError(
            f"{path} is not a matrix result (no 'schema'/'cells')",
            hint="pass the result JSON that the matrix run wrote",
        )
    if data["schema"] != SCHEMA:
        raise ReportError(
            f"{path}: result schema {data['schema']!r}, this version reads schema {SCHEMA}",
            hint="re-render with the whisperx-matrix version that wrote it",
        )
    return data


def is_result(data: Any) -> bool:
    return isinstance(data, dict) and "schema" in data and isinstance(data.get("cells"), list)


def collect_inputs(items: Sequence[Path], *, warn: Callable[[str], None] | None = None) -> list[Path]:
    """The result files named or found (recursively, sorted) in the folders named; other JSON is skipped."""
    found: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            for path in sorted(item.rglob("*.json")):
                try:
                    ok = is_result(json.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    ok = False
                if ok:
                    found.append(path)
                elif warn:
                    warn(f"skipping {path}: not a matrix result")
        elif item.exists():
            found.append(item)
        else:
            raise ReportError(f"no such file or folder: {item}")
    if not found:
        raise ReportError(
            f"no result JSON in {', '.join(map(str, items))}",
            hint="each CI job writes one result JSON; download them all into one folder",
        )
    return found


# ---------------------------------------------------------------------------------------------- CLI


def _run(args: argparse.Namespace) -> int:
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if bool(args.merge) == bool(args.result):
        raise ReportError(
            "give either one RESULT.json to re-render or --merge DIR_OR_JSON...",
            hint="python -m whisperx_matrix report --merge results/ --out reports/",
        )
    if args.merge:
        paths = collect_inputs([Path(p) for p in args.merge], warn=say)
        order, judge = matrix_judge()  # a merge re-judges every claim on the union of the observations
        result = merge_results(
            [load_result(p) for p in paths], sources=[p.name for p in paths], order=order, judge=judge
        )
    else:
        result = load_result(Path(args.result))
    written = write_report(result, Path(args.out))
    print(headline(result))
    print(ui.table(["KIND", "FILE"], [[kind, written[kind]] for kind in FILES], indent=2))
    if args.readme:
        changed = update_readme(Path(args.readme), result)
        print(f"  {args.readme}: claims table {'updated' if changed else 'unchanged'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a matrix result as Markdown, HTML, PNG and JSON (or merge CI results)",
        description="Re-render RESULT.json, or merge the per-cell result JSONs of a CI fan-out "
        "(a cell seen twice keeps its later run; every claim is judged again on the union) and render it.",
    )
    p.add_argument("result", nargs="?", metavar="RESULT.json", help="a result to re-render")
    p.add_argument("--merge", nargs="+", metavar="DIR_OR_JSON", help="result files, or folders searched for them")
    p.add_argument("--out", default="reports", metavar="DIR", help="output folder (default: reports)")
    p.add_argument("--readme", metavar="README.md", help="also update the claims block of this README")
    p.set_defaults(func=_run)

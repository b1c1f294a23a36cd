"""The check grid as a PNG (matplotlib's Agg canvas; no pyplot, no global state)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ToolMissingError
from .data import CHECKS, COLOURS, LEGEND, VERDICT_KIND, _machine_text, check_kind, headline

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
        tick.set_color(
            {"unexpected": COLOURS["unexpected"], "none": "#6b7178", "incomplete": "#8a6a1f"}.get(kind, "#1d2125")
        )
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

"""How a figure is written: real-time factors, seconds, sizes, links, wrapped paragraphs, and the names drawn from results."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping

from ..diskuse import gb as gb  # one way to write a size, for the disk command and the READMEs
from ..errors import FiguresError
from .results import Doc, Results

# ------------------------------------------------------------------------------------------ formatting


def x(v: float) -> str:
    """A real-time factor or a ratio: 261.81 -> 261.8x, 0.564 -> 0.56x."""
    return f"{v:.2f}x" if v < 1 else f"{v:.1f}x"


def sec(v: float) -> str:
    """Seconds with the precision their size deserves (no unit)."""
    if v < 0.1:
        return f"{v:.2g}"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def mib(v: float) -> str:
    return f"{v:.0f} MiB"


def raw(v: float) -> str:
    """A number as the file records it."""
    return f"{v:g}"


def link(doc: Doc) -> str:
    """A Markdown link to a results file, from the repository root (where README.md is)."""
    return f"[`{doc.path}`]({doc.path})"


def wrap(text: str, *, indent: str = "") -> str:
    """One paragraph (or list item, continued with ``indent``) wrapped as the READMEs are, at 115 columns; never
    inside a code span."""
    keep = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)
    filled = textwrap.fill(keep, width=115, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return filled.replace("\0", " ")


def _nvml(source: str) -> str:
    """'nvml-process (whole process: ...)' -> 'NVML, whole process: ...'."""
    m = re.fullmatch(r"nvml-process \((.*)\)", source)
    return f"NVML, {m.group(1)}" if m else source


def _minutes(name: str) -> float:
    """The length a dialogue file names: dialogue-20min-... -> 20, dialogue-0.25min-... -> 0.25."""
    found = re.search(r"(\d+(?:\.\d+)?)min", name)
    if found is None:
        raise ValueError(f"no length in the dialogue file name {name!r}")
    return float(found.group(1))


def _minutes_label(file: str) -> str:
    m = re.match(r"dialogue-(\d+(?:\.\d+)?)min", file)
    return f"{m.group(1)}-min file" if m else f"`{file}`"


def _file_name(stage: Doc) -> str:
    """A stage's file without the cache key speech.py puts in it: dialogue-5min-d5221521d767bd5f.wav -> dialogue-5min.wav."""
    return re.sub(r"-[0-9a-f]{16}(?=\.)", "", stage.text("file"))


def _gpu_short(name: str) -> str:
    words = name.removeprefix("NVIDIA ").split()
    return words[0] if words else name


def _first_word(text: str) -> str:
    return text.split()[0] if text.split() else text


def _precision(compute_type: str) -> str:
    return {"float16": "fp16", "float32": "fp32"}.get(compute_type, compute_type)


def _model(run: Doc) -> str:
    return f"{run.text('model')} ({run.text('model_weights')} weights)"


def _longest_dialogue(run: Doc) -> str:
    files = {
        s.text("file"): s.num("audio_s")
        for s in run.stages(kind="whisperx_batched")
        if s.text("file").startswith("dialogue")
    }
    if not files:
        raise run._fail(["stages"], "no whisperx_batched stage on a dialogue file in")
    return max(files, key=files.__getitem__)


def _met(flag: bool | None) -> str:
    return "met" if flag else "not measured" if flag is None else "missed"


def _runs(gpu: Doc) -> list[tuple[str, Doc]]:
    """The merged GPU file's runs (cellside results), in file order."""
    return [(k, d) for k, d in gpu.items() if isinstance(d.data, Mapping) and "stages" in d.data]


def _ctranslate2_arch(r: Results, version: str) -> tuple[str, str, str]:
    """(highest SASS, PTX, cell) of CTranslate2 ``version``'s wheel, from the matrix report's arch audit."""
    report = r["report"]
    for i in range(len(report.get("cells"))):
        c = report.sub("cells", i)
        if (
            c.has("versions", "ctranslate2")
            and c.text("versions", "ctranslate2") == version
            and c.has("arch", "packages", "ctranslate2")
        ):
            pkg = c.sub("arch", "packages", "ctranslate2")
            sass = max(pkg.get("sass"), key=lambda a: int(re.sub(r"\D", "", a) or 0))
            ptx = " and ".join(p.split(" (")[0] for p in pkg.get("ptx")) or "no"
            return sass, ptx, c.text("id")
    raise FiguresError(
        f"{report.path}: no cell with versions.ctranslate2 = {version} and arch.packages.ctranslate2",
        hint="re-run the matrix (nox -s matrix) so its report carries the arch audit",
    )

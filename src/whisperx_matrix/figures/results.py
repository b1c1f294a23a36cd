"""Reading results files: the documents' sources, and the fields inside them, with errors that name the field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FiguresError

RESULTS_DIR = "benchmarks/results"
REPORT = "reports/matrix.json"
GPU_REPORT = "reports/gpu/matrix.json"  # the merged report of the gpu-matrix workflow run on the GPU machine
UPDATE = "python -m whisperx_matrix figures --update (nox -s figures -- --update)"

# kind -> file name pattern in benchmarks/results; the newest by the date in the name is used.
KINDS = {
    "gpu": "transcribe-gpu-*.json",
    "cpu": "transcribe-cpu-*.json",
    "cublas12": "gpu-*-ctranslate2-cublas12-*.json",
    "suite": "gpu-*-cell-suite-*.json",
    "build": "build-*.json",
    "audit": "audit-*.json",
    "matrix": "matrix-*.json",
    # `nox -s bench -- workflow-cache` (#24): the GPU workflow's cell job run three times, its results cache shared
    "workflow-cache": "workflow-cache-*.json",
    "profile": "profile-diarization-*.json",
    "disk": "disk-tests-*.json",
    # `nox -s bench -- transcribe` run by the gpu-matrix workflow's bench jobs, inside a cell the product built
    "fd-tiny": "front-door-*-transcribe-tiny-en-*.json",
    "fd-large": "front-door-*-transcribe-large-v3-synthetic-*.json",
    # `nox -s bench -- pipeline` (#15): the whole pipeline, levers one at a time, equivalence, memory budgets
    "pipeline": "pipeline-gpu-*.json",
    # `nox -s bench -- trellis`: the opt-in patch 0002's piece of alignment, on the CPU where it runs
    "trellis": "trellis-*.json",
}
# The transcribe plots' name part -> the run of the merged GPU file they show (bench.plot_transcribe's suffixes).
GPU_PLOTS = {"tiny-en": "tiny_en", "large-v3-synthetic": "synthetic_large_v3"}
PLOT_SUFFIXES = ("-rtf-stage.png", "-rtf-batch.png", "-memory.png")


# ------------------------------------------------------------------------------------------ reading fields


@dataclass(frozen=True)
class Doc:
    """A results file, or a part of one: ``path`` names the file in errors, ``at`` the position inside it."""

    path: str
    data: Any
    at: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return Path(self.path).name

    def _field(self, keys: Iterable[Any]) -> str:
        return ".".join([*self.at, *(str(k) for k in keys)]) or "(top level)"

    def _fail(self, keys: Iterable[Any], what: str) -> FiguresError:
        return FiguresError(
            f"{self.path}: {what} {self._field(keys)}",
            hint="re-run the benchmark that writes this file, or change the figure in whisperx_matrix/figures.py",
        )

    def has(self, *keys: Any) -> bool:
        try:
            self.get(*keys)
        except FiguresError:
            return False
        return True

    def get(self, *keys: Any) -> Any:
        value = self.data
        for i, key in enumerate(keys):
            if isinstance(value, Mapping) and key in value:
                value = value[key]
            elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
                value = value[key]
            else:
                raise self._fail(keys[: i + 1], "no field")
        if value is None:
            raise self._fail(keys, "null field")
        return value

    def num(self, *keys: Any) -> float:
        value = self.get(*keys)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(keys, f"not a number ({value!r}) in field")
        return value

    def text(self, *keys: Any) -> str:
        value = self.get(*keys)
        if not isinstance(value, str):
            raise self._fail(keys, f"not a string ({value!r}) in field")
        return value

    def flag(self, *keys: Any) -> bool:
        value = self.get(*keys)
        if not isinstance(value, bool):
            raise self._fail(keys, f"not true/false ({value!r}) in field")
        return value

    def sub(self, *keys: Any) -> Doc:
        return Doc(self.path, self.get(*keys), (*self.at, *(str(k) for k in keys)))

    def items(self, *keys: Any) -> list[tuple[str, Doc]]:
        obj = self.sub(*keys) if keys else self
        if not isinstance(obj.data, Mapping):
            raise self._fail(keys, "not an object in field")
        return [(k, obj.sub(k)) for k in obj.data]

    def stages(self, **match: Any) -> list[Doc]:
        """This run's stages whose fields equal ``match`` (``status`` defaults to ok)."""
        match = {"status": "ok"} | match
        stages = self.get("stages")
        return [
            self.sub("stages", i)
            for i, s in enumerate(stages)
            if isinstance(s, Mapping) and all(s.get(k) == v for k, v in match.items())
        ]

    def stage(self, **match: Any) -> Doc:
        found = self.stages(**match)
        if not found:
            want = ", ".join(f"{k}={v}" for k, v in ({"status": "ok"} | match).items())
            raise self._fail(["stages"], f"no stage with {want} in")
        return found[0]


@dataclass(frozen=True)
class Results:
    """The results files by kind (``KINDS``, plus ``report``), and the file names in benchmarks/results."""

    docs: Mapping[str, Doc]
    files: frozenset[str] = field(default_factory=frozenset)

    def __getitem__(self, kind: str) -> Doc:
        if kind not in self.docs:
            where = {"report": REPORT, "gpu-report": GPU_REPORT}.get(kind, f"{RESULTS_DIR}/{KINDS.get(kind, kind)}")
            raise FiguresError(f"no results file {where}", hint="run the benchmark that writes it")
        return self.docs[kind]

    @classmethod
    def load(cls, root: Path) -> Results:
        folder = root / RESULTS_DIR
        docs = {}
        for kind, pattern in KINDS.items():
            found = sorted(folder.glob(pattern), key=lambda p: (_date(p.name), p.name))
            if found:
                docs[kind] = _read(root, found[-1])
        if (root / REPORT).is_file():
            docs["report"] = _read(root, root / REPORT)
        if (root / GPU_REPORT).is_file():
            docs["gpu-report"] = _read(root, root / GPU_REPORT)
        names = frozenset(p.name for p in folder.iterdir()) if folder.is_dir() else frozenset()
        return cls(docs, names)


def _date(name: str) -> str:
    m = re.search(r"\d{4}-\d{2}-\d{2}", name)
    return m.group(0) if m else ""


def _read(root: Path, path: Path) -> Doc:
    rel = path.relative_to(root).as_posix()
    try:
        return Doc(rel, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise FiguresError(f"{rel}: cannot read it as JSON: {exc}") from None

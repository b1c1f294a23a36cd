"""Candidate cells: a new release written as a matrix.toml ``[[cells]]`` fragment (data, never code).

- A new torch line (the newest release of each minor line newer than the locks) becomes a copy of the aliased cell
  with the newest locked torch (today stable-cu130), its torch family replaced: torchaudio, torchvision and
  torchcodec at the newest release the resolver accepts beside that torch ("unknown" where none does), and
  ``cuda`` from the CUDA runtime that torch resolves (nvidia-cuda-runtime 13.2.86 -> "cu132").
- A new release of WhisperX, pyannote-audio, CTranslate2 or faster-whisper bumps that pin of the working cell.
- torch's companions and the nvidia-* libraries get no cell of their own: they come with the torch that asks for
  them (the releases table says which candidate resolves them, if any).

Every fragment is parsed together with matrix.toml before it is used, so what is audited is exactly what
``--apply`` would add. Its ``expect`` is a prediction from the static audit and says so.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .. import paths, tools
from ..errors import NetworkError
from ..lock import lock_path, read_pins
from ..matrix import Cell, Matrix, parse
from ..releases import COMPANIONS, TORCH, Release, cuda_tag, minor_line, newest_per_line
from ..tomlfile import read_toml, tomllib

PREDICTED = "predicted from the static audit; measure before committing"
MADE_BY = "nox -s watch"
# Key order of a fragment (matrix.toml's own order); keys the base has beyond these follow them.
_ORDER = (
    "id",
    "summary",
    "channel",
    "cuda",
    "python",
    "index",
    "patches",
    "opt_in_patches",
    "pins",
    "requires",
    "overrides",
    "addons",
    "preload",
    "expect",
    "expect_sm",
)
_DROP = ("id", "extends", "aliases", "expect", "expect_sm")  # a candidate's own: never copied from its base


@dataclass
class Family:
    """torch's companions chosen for one torch release, with why, and the CUDA build that torch resolves."""

    torch: str
    versions: dict[str, str | None]  # companion -> version, None where no release accepts this torch
    why: dict[str, str]
    cuda: str | None
    cuda_from: str


@dataclass
class Candidate:
    id: str
    package: str
    version: str
    locked: str
    base: str  # the cell it is made from
    bumps: dict[str, str]  # distribution -> version set in the fragment
    raw: dict[str, Any]  # the [[cells]] table, without expect until the audit predicts it
    notes: list[str] = field(default_factory=list)  # the fragment's comment lines
    family: Family | None = None
    expect: dict[str, Any] = field(default_factory=lambda: {"status": "pass"})
    expect_sm: dict[int, dict[str, Any]] = field(default_factory=dict)
    expect_note: str = ""  # what the prediction rests on (one line)
    predicted: bool = True  # False: no static audit, so ``expect`` is the base cell's, copied

    def table(self) -> dict[str, Any]:
        out = dict(self.raw, expect=self.expect)
        if self.expect_sm:
            out["expect_sm"] = {str(k): v for k, v in sorted(self.expect_sm.items())}
        return out

    def fragment(self) -> str:
        """The ``[[cells]]`` fragment: comments saying where it came from, then the table, expect predicted."""
        lines = []
        for note in self.notes:
            indent = " " * (len(note) - len(note.lstrip(" ")))
            wrapped = textwrap.wrap(note.strip(), 114, initial_indent=indent, subsequent_indent=indent + "  ") or [""]
            lines += [f"# {w}".rstrip() for w in wrapped]
        lines.append("[[cells]]")
        table = self.table()
        for key in (*_ORDER, *sorted(set(table) - set(_ORDER))):
            if key not in table:
                continue
            if key == "expect":
                lines.append(
                    f"# expect: {PREDICTED}"
                    if self.predicted
                    else f"# expect: NOT predicted, copied from {self.base}; measure before committing"
                )
                if self.expect_note:
                    lines += [f"# {w}" for w in textwrap.wrap(f"({self.expect_note})", 114)]
            lines.append(f"{key} = {toml_value(table[key])}")
        return "\n".join(lines) + "\n"


# --- TOML as data ---------------------------------------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """One TOML value: strings (JSON's escapes are TOML's), integers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{k if _BARE.match(str(k)) else json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def raw_cell(matrix: Matrix, cell_id: str) -> dict[str, Any]:
    """A cell's table as matrix.toml writes it, its ``extends`` chain merged in (the fragment stands alone)."""
    data, _ = read_toml(matrix.path, missing_hint="matrix.toml sits at the project's root")
    by_id = {t.get("id"): t for t in data.get("cells", [])}
    chain, table = [], by_id[cell_id]
    while True:
        chain.append(table)
        parent = table.get("extends")
        if parent is None or parent not in by_id:
            break
        table = by_id[parent]
    merged: dict[str, Any] = {}
    for t in reversed(chain):
        merged.update({k: v for k, v in t.items() if k not in _DROP})
    return merged


def with_fragments(matrix: Matrix, fragments: Sequence[str]) -> Matrix:
    """matrix.toml with the fragments appended, parsed: the candidate cells as the matrix itself would read them
    (ConfigError, with the line, for a fragment it would reject)."""
    text = matrix.path.read_text(encoding="utf-8").rstrip("\n") + "\n" + "".join("\n" + f for f in fragments)
    return parse(tomllib.loads(text), path=matrix.path, text=text)


# --- what the locks and the index say -------------------------------------------------------------------


def locked_pins(matrix: Matrix, cell: Cell) -> dict[str, str]:
    """name -> version of a cell's committed lock ({} where it has none)."""
    path = lock_path(matrix, cell)
    return {p.name: p.version for p in read_pins(path.read_text(encoding="utf-8"))} if path.is_file() else {}


def torch_base(matrix: Matrix) -> Cell | None:
    """The aliased, locked cell with the newest torch: the one a new torch line would replace."""
    best: tuple[Any, Cell] | None = None
    from packaging.version import Version

    for cell in matrix.cells:
        if not cell.aliases or cell.floating or cell.arch != "x86_64":  # a platform variant is not a base
            continue
        torch = locked_pins(matrix, cell).get(TORCH)
        if torch and (best is None or Version(torch) > best[0]):
            best = (Version(torch), cell)
    return best[1] if best else None


def resolve(lines: Sequence[str], *, python: str, platform: str) -> tuple[dict[str, str] | None, str]:
    """uv's resolution of some requirement lines (metadata only, nothing installed): (pins, "") or (None, uv's
    line saying why not). NetworkError when the index cannot be reached."""
    with tempfile.TemporaryDirectory(prefix="wxm-watch-") as tmp:
        work = Path(tmp)
        (work / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = [tools.uv_bin(), "pip", "compile", "--quiet", "--no-header", "--python-version", python]
        args += ["--python-platform", platform, "in.txt", "-o", "out.txt"]
        proc = tools.run(args, cwd=work, env=tools.uv_env())
        if not proc.ok:
            if proc.infra_cause() is not None:
                raise NetworkError(
                    f"the package index could not be reached (uv pip compile): {proc.last_error_line()}",
                    hint="check the connection and run nox -s watch again; nothing was written",
                )
            return None, proc.last_error_line()
        return {p.name: p.version for p in read_pins((work / "out.txt").read_text(encoding="utf-8"))}, ""


def requirement_on(name: str, version: str, dep: str, *, python: str, platform: str) -> str:
    """What one release's metadata says about ``dep`` ("requires torch==2.15.0", "declares no requirement on
    torch"), read from its wheel (installed once, without dependencies, into our cache)."""
    site = paths.cache_dir() / "watch" / "metadata" / f"{canonicalize_name(name)}-{version}"
    if not any(site.glob("*.dist-info")):
        args = [tools.uv_bin(), "pip", "install", "--quiet", "--no-deps", "--python", sys.executable]
        args += ["--python-version", python, "--python-platform", platform, "--target", str(site)]
        proc = tools.run([*args, f"{name}=={version}"], env=tools.uv_env())
        if not proc.ok:
            return f"its metadata could not be read: {proc.last_error_line()[:120]}"
    dist = next(iter(metadata.distributions(path=[str(site)])), None)
    if dist is None:
        return "its metadata could not be read"
    wanted = []
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == canonicalize_name(dep) and not req.marker:
            wanted.append(f"{dep}{req.specifier}" if str(req.specifier) else dep)
    return f"requires {', '.join(wanted)}" if wanted else f"declares no requirement on {dep}"


def _exact(raw: Mapping[str, Any], name: str) -> str | None:
    """The version a cell's table pins ``name`` to, in ``pins`` or an ``==`` override."""
    pins = raw.get("pins") or {}
    if name in pins:
        return str(pins[name])
    for line in raw.get("overrides") or []:
        req = Requirement(line)
        if canonicalize_name(req.name) == name:
            exact = [s.version for s in req.specifier if s.operator == "=="]
            return exact[0] if exact else None
    return None


def torch_family(torch: str, raw: Mapping[str, Any], *, python: str, platform: str) -> Family:
    """The companions the base cell names, each at the newest release the resolver accepts beside ``torch``
    (never below the base's own), and the CUDA build torch resolves."""
    alone, why_not = resolve([f"{TORCH}=={torch}"], python=python, platform=platform)
    cuda = cuda_tag(alone or {})
    runtime = next(((n, v) for n, v in (alone or {}).items() if n.startswith("nvidia-cuda-runtime")), None)
    cuda_from = (
        f"torch {torch} resolves {runtime[0]} {runtime[1]}"
        if runtime
        else f"torch {torch} resolves no nvidia-cuda-runtime{': ' + why_not if why_not else ''}"
    )
    versions: dict[str, str | None] = {}
    why: dict[str, str] = {}
    for companion in COMPANIONS:
        low = _exact(raw, companion)
        if low is None:
            continue  # the base does not name it: neither does the candidate
        pins, err = resolve([f"{TORCH}=={torch}", f"{companion}>={low}"], python=python, platform=platform)
        got = (pins or {}).get(companion)
        versions[companion] = got
        if got is None:
            why[companion] = f"unknown: no release >= {low} accepts torch {torch} ({err[:160] or 'no resolution'})"
        else:
            said = requirement_on(companion, got, TORCH, python=python, platform=platform)
            why[companion] = f"the newest release >= {low} the resolver accepts beside torch {torch}; it {said}"
    return Family(torch, versions, why, cuda, cuda_from)


def _set_version(raw: dict[str, Any], name: str, version: str | None, *, prefer: str) -> None:
    """Set (or, for None, drop) ``name``'s exact version where the table names it; else add it to ``prefer``."""
    pins = dict(raw.get("pins") or {})
    overrides = list(raw.get("overrides") or [])
    idx = next((i for i, o in enumerate(overrides) if canonicalize_name(Requirement(o).name) == name), None)
    if name in pins:
        if version is None:
            del pins[name]
        else:
            pins[name] = version
    elif idx is not None:
        if version is None:
            overrides.pop(idx)
        else:
            overrides[idx] = f"{name}=={version}"
    elif version is not None:
        if prefer == "overrides":
            overrides.append(f"{name}=={version}")
        else:
            pins[name] = version
    raw["pins"] = pins
    if overrides or "overrides" in raw:
        raw["overrides"] = overrides


def _unique(matrix: Matrix, cid: str) -> str | None:
    return None if cid in {n for c in matrix.cells for n in (c.id, *c.aliases)} else cid


def torch_candidates(matrix: Matrix, release: Release, *, today: str) -> tuple[list[Candidate], list[str]]:
    """One candidate per new torch line (its newest release), made from the torch base cell; and notes."""
    base = torch_base(matrix)
    if base is None:
        return [], ["no torch candidate: no aliased, locked cell holds torch"] if release.newer else []
    if not release.newer:
        return [], []
    lines = newest_per_line(release.newer)
    for version in release.newer:
        if lines[minor_line(version)] != version:
            release.covered[version] = f"superseded by {lines[minor_line(version)]} (the newest of its line)"
    out: list[Candidate] = []
    notes: list[str] = []
    raw_base = raw_cell(matrix, base.id)
    uses_overrides = any(canonicalize_name(Requirement(o).name) == TORCH for o in raw_base.get("overrides") or [])
    for version in lines.values():
        family = torch_family(version, raw_base, python=base.python, platform=base.platform)
        cuda = family.cuda or base.cuda
        major, minor = minor_line(version).split(".")
        cid = _unique(matrix, f"stable-torch{major}{minor}-{cuda}")
        if cid is None:
            release.covered[version] = "a cell of that id is already in matrix.toml"
            continue
        raw = dict(raw_base, id=cid)
        prefer = "overrides" if uses_overrides else "pins"
        _set_version(raw, TORCH, version, prefer=prefer)
        for companion, got in family.versions.items():
            _set_version(raw, companion, got, prefer=prefer)
        wx = (raw.get("pins") or {}).get("whisperx", "?")
        raw.update(
            summary=f"Stable PyTorch {version} ({cuda}) under WhisperX {wx}: a candidate from {MADE_BY}, made "
            f"from {base.id}",
            channel="stable",
            cuda=cuda,
        )
        notes_ = [
            f"torch {version} is newer than the locks ({release.locked}: {', '.join(release.locks)}). A candidate",
            f"from `{MADE_BY}` ({today}), made from {base.id} with the torch family the index has for it:",
            *(f"  {c} {family.versions[c] or '(left out)'}: {family.why[c]}" for c in family.versions),
            f'  cuda = "{cuda}": {family.cuda_from}' + ("" if family.cuda else f" (unknown: {base.id}'s kept)"),
        ]
        bumps = {TORCH: version} | {c: v for c, v in family.versions.items() if v}
        out.append(Candidate(cid, TORCH, version, release.locked, base.id, bumps, raw, notes_, family))
    return out, notes


def bump_candidate(matrix: Matrix, release: Release, base: Cell, *, today: str) -> Candidate | None:
    """The working cell with one pin bumped to the newest release of ``release``."""
    version = release.newest
    if version is None:
        return None
    for older in release.newer[:-1]:
        release.covered[older] = f"superseded by {version}"
    old = locked_pins(matrix, base).get(release.name)
    if old is None:
        release.covered[version] = f"{base.id}'s lock does not hold {release.name}"
        return None
    cid = _unique(matrix, f"{base.id}-{release.name}-{version}")
    if cid is None:
        release.covered[version] = "a cell of that id is already in matrix.toml"
        return None
    raw = dict(raw_cell(matrix, base.id), id=cid)
    _set_version(raw, release.name, version, prefer="pins")
    raw["summary"] = f"{base.id} with {release.name} {version} (its lock: {old}): a candidate from {MADE_BY}"
    notes = [
        f"{release.name} {version} is newer than the locks ({release.locked}: {', '.join(release.locks)}).",
        f"A candidate from `{MADE_BY}` ({today}): {base.id} with {release.name} pinned to {version}.",
    ]
    return Candidate(cid, release.name, version, release.locked, base.id, {release.name: version}, raw, notes)

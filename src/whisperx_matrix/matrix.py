"""matrix.toml: load, validate and select the cells.

A cell is a frozen value. Selection works as cibuildwheel's build selector does: whitespace-separated
fnmatch patterns with brace expansion, matched against each cell's id and aliases.
"""

from __future__ import annotations

import fnmatch
import os
import platform as _platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from .cudafacts import CUDA_DRIVERS
from .errors import ConfigError, UnknownCellError, did_you_mean
from .tomlfile import TomlLocator, entry_id, read_toml

SCHEMA = 1
# stable: locked and committed. nightly: floats on a named [indexes] entry (PyTorch's nightlies). latest: floats on
# the default package index to the newest release the cell's constraints allow (what a user installs today).
CHANNELS = ("stable", "nightly", "latest")
FLOATING_CHANNELS = ("nightly", "latest")
# The variables uv reads for its default index; reports say one is in force, never its value (they are committed).
DEFAULT_INDEX_ENVS = ("UV_DEFAULT_INDEX", "UV_INDEX_URL")
STATUSES = ("pass", "fail")
_CUDA_RE = re.compile(r"^cu(\d{2})(\d)$")

# Fields a cell may set, and whether they feed the lock (a cell that `extends` another shares its lock
# when none of the lock fields differ).
_LOCK_FIELDS = ("python", "platform", "requirements", "pins", "requires", "overrides", "addons", "index")
_CELL_FIELDS = {
    "id",
    "extends",
    "summary",
    "channel",
    "cuda",
    "aliases",
    "patches",
    "opt_in_patches",
    "preload",
    "expect",
    "expect_sm",
    "expect_platform",
    *_LOCK_FIELDS,
}


@dataclass(frozen=True)
class Index:
    name: str
    default_url: str
    env: str

    @property
    def url(self) -> str:
        """The URL in force: the environment variable named in matrix.toml wins."""
        return os.environ.get(self.env) or self.default_url

    def describe(self) -> str:
        """How reports name the index: by its matrix.toml name, never by host (reports are committed)."""
        where = "overridden by " + self.env if os.environ.get(self.env) else "set " + self.env + " to use a mirror"
        return f"PyTorch index '{self.name}' ({where})"


def describe_default_index() -> str:
    """How reports name the default package index that a latest cell floats on: never by host."""
    env = next((name for name in DEFAULT_INDEX_ENVS if os.environ.get(name)), None)
    return "the default package index" + (f" (overridden by {env})" if env else "")


@dataclass(frozen=True)
class Expectation:
    status: str
    reason: str | None = None
    # Other failures this cell is known to show beside ``reason`` (measured): they are expected in the report's
    # checks, but only ``reason`` decides the verdict.
    also: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.status if self.reason is None else f"{self.status} ({self.reason})"


@dataclass(frozen=True)
class Cell:
    id: str
    summary: str
    channel: str
    cuda: str
    python: str
    platform: str
    requirements: tuple[str, ...]
    pins: Mapping[str, str]
    requires: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    addons: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    index: Index | None = None
    patches: bool = True
    opt_in_patches: tuple[str, ...] = ()  # opt-in patches of the series (speed patches) this cell turns on
    aliases: tuple[str, ...] = ()
    expect: Expectation = Expectation("pass")
    expect_sm: Mapping[int, Expectation] = field(default_factory=dict)
    lock_id: str = ""

    @property
    def arch(self) -> str:
        """The machine the cell's wheels are for: ``x86_64`` or ``aarch64``."""
        return platform_arch(self.platform)

    @property
    def floating(self) -> bool:
        """Nightly and latest cells float: resolved at run time (nightly from its index, latest from the default
        one); their locks are never committed, and the result keeps the lock each run resolved."""
        return self.channel in FLOATING_CHANNELS

    def describe_index(self) -> str:
        """The index the cell resolves from, as reports name it (by name or role, never by host)."""
        return self.index.describe() if self.index is not None else describe_default_index()

    @property
    def whisperx_version(self) -> Version | None:
        """The pinned WhisperX, or None for a latest cell that lets it float."""
        return Version(self.pins["whisperx"]) if "whisperx" in self.pins else None

    def expected(self, sm: int | None) -> Expectation:
        """The outcome required of this cell when judged for compute capability ``sm`` (e.g. 120)."""
        if sm is not None and sm in self.expect_sm:
            return self.expect_sm[sm]
        return self.expect

    def lock_inputs(self) -> dict[str, Any]:
        """What goes into this cell's lock, as plain data (hashed into the lock's header)."""
        return {
            "python": self.python,
            "platform": self.platform,
            "requirements": list(self.requirements),
            "pins": dict(sorted(self.pins.items())),
            "requires": list(self.requires),
            "overrides": list(self.overrides),
            "addons": list(self.addons),
            "index": self.index.url if self.index else None,
        }

    def requirement_lines(self) -> list[str]:
        """The cell's own requirement lines: exact pins, extra requirements and add-ons."""
        return [f"{name}=={ver}" for name, ver in sorted(self.pins.items())] + list(self.requires) + list(self.addons)


@dataclass(frozen=True)
class Matrix:
    path: Path
    cells: tuple[Cell, ...]
    indexes: Mapping[str, Index]
    target_sm: int

    @property
    def root(self) -> Path:
        return self.path.parent

    def ids(self) -> list[str]:
        return [c.id for c in self.cells]

    def get(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell_id == cell.id or cell_id in cell.aliases:
                return cell
        raise UnknownCellError(
            f"unknown cell {cell_id!r}{did_you_mean(cell_id, self._names())}",
            hint=f"known cells: {', '.join(self.ids())}",
        )

    def _names(self) -> list[str]:
        return [n for c in self.cells for n in (c.id, *c.aliases)]

    def select(self, selectors: Iterable[str] | str | None) -> list[Cell]:
        """Cells matching any selector, in matrix order. None or empty selects every cell."""
        if isinstance(selectors, str):
            selectors = [selectors]
        patterns = [p for s in (selectors or ()) for p in s.split()]
        if not patterns:
            return list(self.cells)
        selector = Selector(tuple(patterns))
        chosen = [c for c in self.cells if selector(c)]
        unmatched = [p for p in patterns if not any(Selector((p,))(c) for c in self.cells)]
        if unmatched:
            bad = unmatched[0]
            raise UnknownCellError(
                f"selector {bad!r} matches no cell{did_you_mean(bad, self._names())}",
                hint=f"known cells: {', '.join(self.ids())} (globs like 'stable-*' or '*-cu130' work)",
            )
        return chosen


def expand_braces(pattern: str) -> list[str]:
    """``stable-cu{128,130}`` -> ``['stable-cu128', 'stable-cu130']`` (nested braces too)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    # Innermost braces first; dict.fromkeys drops the repeats that nesting produces, keeping order.
    return list(dict.fromkeys(x for option in match.group(1).split(",") for x in expand_braces(head + option + tail)))


@dataclass(frozen=True)
class Selector:
    """Callable: does a cell match any of the fnmatch patterns (after brace expansion)?"""

    patterns: tuple[str, ...]

    def __call__(self, cell: Cell) -> bool:
        return self.matches(cell.id, *cell.aliases)

    def matches(self, *names: str) -> bool:
        return any(
            fnmatch.fnmatchcase(name, pat) for raw in self.patterns for pat in expand_braces(raw) for name in names
        )


# --- loading -------------------------------------------------------------------------------------------


def find_matrix(start: Path | None = None) -> Path:
    """matrix.toml from $WXM_MATRIX, else the nearest one at or above ``start`` (default: cwd)."""
    env = os.environ.get("WXM_MATRIX")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "matrix.toml").is_file():
            return folder / "matrix.toml"
    raise ConfigError(f"no matrix.toml in {here} or above", hint="run from the project's checkout, or set WXM_MATRIX")


def load(path: Path | None = None) -> Matrix:
    path = path or find_matrix()
    data, text = read_toml(path, missing_hint="check the path (or WXM_MATRIX)")
    return parse(data, path=path, text=text)


def parse(data: Mapping[str, Any], *, path: Path, text: str = "") -> Matrix:
    loc = TomlLocator(text, "cells")

    def fail(msg: str, cell_id: object | None = None, key: str | None = None, hint: str | None = None) -> ConfigError:
        return ConfigError(
            f"{path.name}:{loc.line(cell_id, key)}: {msg}", hint=hint or f"edit {path.name} (see its header)"
        )

    if data.get("schema") != SCHEMA:
        raise fail(f"'schema' must be {SCHEMA}, got {data.get('schema')!r}", key="schema")
    defaults = data.get("defaults", {})
    indexes = {
        name: Index(name=name, default_url=_str(tbl, "url", fail), env=_str(tbl, "env", fail))
        for name, tbl in data.get("indexes", {}).items()
    }
    raw_cells = data.get("cells")
    if not isinstance(raw_cells, list) or not raw_cells:
        raise fail("no [[cells]] defined", key="cells")

    by_id: dict[str, dict[str, Any]] = {}
    for raw in raw_cells:
        by_id[entry_id(raw, what="cell", fields=_CELL_FIELDS, seen=by_id, fail=fail)] = raw

    amends = _amends(data.get("amend", []), fail)
    cells: list[Cell] = []
    built: dict[str, Cell] = {}
    for cell_id in by_id:
        merged, lock_id = _resolve_extends(cell_id, by_id, fail)
        # A list of Pythons is an axis: the first keeps the cell's id, each other one is the cell `<id>-pyXY`
        # with its own lock (the cibuildwheel way: identifiers carry the interpreter). A list of platforms is
        # another, crossed with it: each platform after the first adds `-<arch>` (`stable-cu132-py312-aarch64`).
        variants = [
            (python, platform, ("" if i == 0 else f"-py{python.replace('.', '')}") + ("" if j == 0 else f"-{arch}"))
            for j, (platform, arch) in enumerate(_platforms(merged, defaults, fail, cell_id))
            for i, python in enumerate(_pythons(merged, defaults, fail, cell_id))
        ]
        for python, platform, suffix in variants:
            vid, vlock = cell_id + suffix, lock_id + suffix
            fields = dict(
                merged,
                python=python,
                platform=platform,
                expect=_platform_expect(merged, platform, fail, cell_id),
                aliases=[a + suffix for a in merged.get("aliases", [])],
            )
            variant = _amended(fields, vid, amends)
            cell = _make_cell(vid, variant, defaults, indexes, fail)
            if vlock != vid:
                parent = built.get(vlock)
                if parent is None or parent.lock_inputs() != cell.lock_inputs():
                    vlock = vid
            cell = replace(cell, lock_id=vlock)
            built[vid] = cell
            cells.append(cell)

    names: dict[str, str] = {}
    for cell in cells:
        for name in (cell.id, *cell.aliases):
            if name in names:
                raise fail(f"name {name!r} is used by both {names[name]!r} and {cell.id!r}", cell.id, "aliases")
            names[name] = cell.id
    target_sm = defaults.get("target_sm", 120)
    if not isinstance(target_sm, int):
        raise fail("'target_sm' must be an integer like 120", key="target_sm")
    return Matrix(path=path, cells=tuple(cells), indexes=indexes, target_sm=target_sm)


def _pythons(raw: Mapping[str, Any], defaults: Mapping[str, Any], fail: Any, cell_id: str) -> list[str]:
    value = raw.get("python", defaults.get("python", "3.11"))
    versions = value if isinstance(value, list) else [value]
    if not versions or not all(isinstance(v, str) and re.fullmatch(r"3\.\d+", v) for v in versions):
        raise fail(f'python must be a version like "3.12" or a list of them, got {value!r}', cell_id, "python")
    if len(set(versions)) != len(versions):
        raise fail(f"python lists a version twice: {value!r}", cell_id, "python")
    return list(versions)


PLATFORM_RE = re.compile(r"(x86_64|aarch64)-manylinux_2_\d+")


def platform_arch(platform: str) -> str:
    """The machine part of a uv platform (``aarch64-manylinux_2_28`` -> ``aarch64``)."""
    return platform.split("-", 1)[0]


def native_arch() -> str:
    """This machine's architecture as the platforms name it (``x86_64``, ``aarch64``)."""
    machine = _platform.machine().lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def _platforms(raw: Mapping[str, Any], defaults: Mapping[str, Any], fail: Any, cell_id: str) -> list[tuple[str, str]]:
    """(platform, arch) for each platform of the cell: one, or a list whose first keeps the cell's id."""
    value = raw.get("platform", defaults.get("platform", "x86_64-manylinux_2_28"))
    platforms = value if isinstance(value, list) else [value]
    if not platforms or not all(isinstance(p, str) and PLATFORM_RE.fullmatch(p) for p in platforms):
        raise fail(
            f'platform must be a uv platform like "aarch64-manylinux_2_28" or a list of them, got {value!r}',
            cell_id,
            "platform",
        )
    arches = [platform_arch(p) for p in platforms]
    if len(set(arches)) != len(arches):
        raise fail(f"platform lists a machine twice: {value!r}", cell_id, "platform")
    return list(zip(platforms, arches, strict=True))


def _platform_expect(raw: Mapping[str, Any], platform: str, fail: Any, cell_id: str) -> Any:
    """The cell's ``expect`` for this platform: ``expect_platform.<arch>`` where given (the outcome measured there),
    else the cell's own (a pass where it has none)."""
    table = raw.get("expect_platform", {})
    if not isinstance(table, Mapping) or not all(k in ("x86_64", "aarch64") for k in table):
        raise fail("expect_platform must be a table keyed by machine (x86_64, aarch64)", cell_id, "expect_platform")
    return table.get(platform_arch(platform), raw.get("expect", {"status": "pass"}))


@dataclass(frozen=True)
class Amend:
    """An [[amend]] table: extra requirement lines for every cell its selector matches (per-Python pins)."""

    select: Selector
    requires: tuple[str, ...]
    reason: str


def _amends(raw: Any, fail: Any) -> list[Amend]:
    if not isinstance(raw, list):
        raise fail("[[amend]] must be an array of tables", key="amend")
    out = []
    for tbl in raw:
        select, reason = tbl.get("select"), tbl.get("reason")
        if not isinstance(select, str) or not select or not isinstance(reason, str) or not reason:
            raise fail("each [[amend]] needs a `select` pattern and the `reason` for it", key="amend")
        unknown = set(tbl) - {"select", "requires", "reason"}
        if unknown:
            raise fail(f"unknown field {sorted(unknown)[0]!r} in [[amend]] (select, requires, reason)", key="amend")
        out.append(Amend(Selector(tuple(select.split())), tuple(_str_list(tbl, "requires", fail, None)), reason))
    return out


def _amended(raw: dict[str, Any], cell_id: str, amends: list[Amend]) -> dict[str, Any]:
    for amend in amends:
        if amend.select.matches(cell_id, *raw.get("aliases", ())):
            raw = dict(raw, requires=list(raw.get("requires", [])) + list(amend.requires))
    return raw


def _resolve_extends(cell_id: str, by_id: Mapping[str, dict[str, Any]], fail: Any) -> tuple[dict[str, Any], str]:
    """The cell's table merged over its ancestors', and the root ancestor (whose lock it may share)."""
    chain = [cell_id]
    raw = by_id[cell_id]
    while "extends" in raw:
        parent = raw["extends"]
        if parent not in by_id:
            raise fail(
                f"cell {chain[-1]!r} extends unknown cell {parent!r}{did_you_mean(str(parent), by_id)}",
                chain[-1],
                "extends",
            )
        if parent in chain:
            raise fail(f"cells extend each other in a loop: {' -> '.join(chain + [parent])}", cell_id, "extends")
        chain.append(parent)
        raw = by_id[parent]
    merged: dict[str, Any] = {}
    for name in reversed(chain):
        merged.update({k: v for k, v in by_id[name].items() if k not in ("id", "extends")})
    return merged, chain[-1] if len(chain) > 1 else cell_id


def _str(tbl: Mapping[str, Any], key: str, fail: Any, cell_id: str | None = None, **_: Any) -> str:
    value = tbl.get(key)
    if not isinstance(value, str) or not value:
        raise fail(f"{key!r} must be a non-empty string", cell_id, key)
    return value


def _str_list(tbl: Mapping[str, Any], key: str, fail: Any, cell_id: str | None) -> tuple[str, ...]:
    value = tbl.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{key!r} must be a list of strings", cell_id, key)
    return tuple(value)


def _requirements(lines: tuple[str, ...], key: str, fail: Any, cell_id: str) -> tuple[str, ...]:
    for line in lines:
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise fail(f"{key}: {line!r} is not a valid requirement ({exc})", cell_id, key) from None
    return lines


def _expectation(value: Any, fail: Any, cell_id: str, key: str) -> Expectation:
    if not isinstance(value, Mapping):
        raise fail(f'{key!r} must be a table like {{ status = "pass" }}', cell_id, key)
    status = value.get("status")
    if status not in STATUSES:
        raise fail(f"{key}.status must be one of {', '.join(STATUSES)}, got {status!r}", cell_id, key)
    reason = value.get("reason")
    if status == "fail" and not (isinstance(reason, str) and ":" in reason):
        raise fail(f"{key}: an expected failure needs a reason like 'missing-soname:libcublas.so.12'", cell_id, key)
    if status == "pass" and reason is not None:
        raise fail(f"{key}: an expected pass takes no reason", cell_id, key)
    also = value.get("also", [])
    if not (isinstance(also, list) and all(isinstance(r, str) and ":" in r for r in also)) or (
        also and status != "fail"
    ):
        raise fail(f"{key}.also: a list of further expected failure reasons, only with status fail", cell_id, key)
    return Expectation(status=status, reason=reason, also=tuple(also))


def _make_cell(
    cell_id: str, raw: Mapping[str, Any], defaults: Mapping[str, Any], indexes: Mapping[str, Index], fail: Any
) -> Cell:
    channel = raw.get("channel")
    if channel not in CHANNELS:
        raise fail(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}", cell_id, "channel")
    cuda = _str(raw, "cuda", fail, cell_id)
    if not (match := _CUDA_RE.match(cuda)):
        raise fail(f"cuda must look like 'cu128', got {cuda!r}", cell_id, "cuda")
    if cuda not in CUDA_DRIVERS:
        # The doctor and the verdicts judge a machine's driver by this floor: a cell without one is unjudgeable.
        raise fail(
            f"cell {cell_id!r}: cuda {cuda!r} has no cited driver floor (known: {', '.join(CUDA_DRIVERS)})",
            cell_id,
            "cuda",
            hint=f"add CUDA {match.group(1)}.{match.group(2)}'s driver floor, with its source, to "
            "cudafacts.CUDA_DRIVERS (src/whisperx_matrix/cudafacts.py)",
        )
    pins = raw.get("pins", {})
    if not isinstance(pins, Mapping) or ("whisperx" not in pins and channel != "latest"):
        raise fail(
            "pins must be a table that pins at least whisperx (only a latest cell may float it)", cell_id, "pins"
        )
    for name, ver in pins.items():
        try:
            Version(str(ver))
        except InvalidVersion:
            raise fail(f"pins.{name}: {ver!r} is not a version", cell_id, "pins") from None
    index = None
    if "index" in raw:
        name = raw["index"]
        if name not in indexes:
            raise fail(
                f"index {name!r} is not defined under [indexes]{did_you_mean(str(name), indexes)}", cell_id, "index"
            )
        index = indexes[name]
    if channel == "nightly" and index is None:
        raise fail("a nightly cell needs an index (PyPI carries no torch nightlies)", cell_id, "channel")
    if channel == "latest" and index is not None:
        raise fail(
            f"a latest cell floats on the default index and takes no index (got {index.name!r}; a cell on another "
            "index is a nightly one)",
            cell_id,
            "index",
        )
    python = str(raw["python"])
    requirements = raw.get("requirements", defaults.get("requirements", []))
    expect = _expectation(raw.get("expect", {"status": "pass"}), fail, cell_id, "expect")
    expect_sm_raw = raw.get("expect_sm", {})
    if not isinstance(expect_sm_raw, Mapping):
        raise fail("expect_sm must be a table keyed by compute capability", cell_id, "expect_sm")
    expect_sm: dict[int, Expectation] = {}
    for sm, value in expect_sm_raw.items():
        if not str(sm).isdigit():
            raise fail(f"expect_sm key {sm!r} must be a compute capability like 120", cell_id, "expect_sm")
        expect_sm[int(sm)] = _expectation(value, fail, cell_id, "expect_sm")
    patches = raw.get("patches", True)
    if not isinstance(patches, bool):
        raise fail("patches must be true or false", cell_id, "patches")
    if patches and "whisperx" not in pins:
        raise fail(
            "a cell that lets whisperx float takes no patches (the series is chosen by whisperx's version; "
            "what a user installs has none): set patches = false",
            cell_id,
            "patches",
        )
    opt_in_patches = _str_list(raw, "opt_in_patches", fail, cell_id)
    if opt_in_patches and not patches:
        raise fail("opt_in_patches needs patches = true (this cell takes no patch)", cell_id, "opt_in_patches")
    return Cell(
        id=cell_id,
        summary=str(raw.get("summary", "")),
        channel=channel,
        cuda=cuda,
        python=python,
        platform=str(raw.get("platform", defaults.get("platform", "x86_64-manylinux_2_28"))),
        requirements=tuple(requirements),
        pins={str(k): str(v) for k, v in pins.items()},
        requires=_requirements(_str_list(raw, "requires", fail, cell_id), "requires", fail, cell_id),
        overrides=_requirements(_str_list(raw, "overrides", fail, cell_id), "overrides", fail, cell_id),
        addons=_requirements(_str_list(raw, "addons", fail, cell_id), "addons", fail, cell_id),
        preload=_str_list(raw, "preload", fail, cell_id),
        index=index,
        patches=patches,
        opt_in_patches=opt_in_patches,
        aliases=_str_list(raw, "aliases", fail, cell_id),
        expect=expect,
        expect_sm=expect_sm,
        lock_id=cell_id,
    )

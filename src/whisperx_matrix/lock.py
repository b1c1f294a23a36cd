"""Hashed locks: ``uv pip compile --generate-hashes`` -> constraints/<cell>.txt, with the hash of its inputs.

The header records what went in (per-file hashes, pins, overrides, python, platform, index), so
``--check`` can say *what* changed, not only that something did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from . import tools, ui
from .cli import add_selectors
from .errors import LockError, NetworkError
from .fsutil import atomic_write_text
from .matrix import Cell, Matrix
from .matrix import load as load_matrix

LOCK_FORMAT = 1
REGENERATE = "nox -s lock"
_INPUTS_PREFIX = "# inputs: "
_HASH_PREFIX = "# input-hash: "


def lock_path(matrix: Matrix, cell: Cell) -> Path:
    return matrix.root / "constraints" / f"{cell.lock_id}.txt"


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def lock_inputs(matrix: Matrix, cell: Cell) -> dict[str, Any]:
    """Everything that decides the resolution, as plain data; requirement files by content hash."""
    data = cell.lock_inputs()
    files = {}
    for name in cell.requirements:
        path = matrix.root / name
        try:
            files[name] = sha256_bytes(path.read_bytes())
        except OSError as exc:
            raise LockError(
                f"cell {cell.id}: cannot read {name}: {exc.strerror}",
                hint="check [defaults].requirements in matrix.toml",
            ) from None
    data["requirements"] = files
    data["format"] = LOCK_FORMAT
    return data


def input_hash(inputs: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class LockHeader:
    cell: str
    input_hash: str
    inputs: dict[str, Any]


def read_header(path: Path) -> LockHeader | None:
    """The header of an existing lock, or None if the file is missing or was not written by us."""
    try:
        with path.open(encoding="utf-8") as fh:
            head = [next(fh, "") for _ in range(12)]
    except OSError:
        return None
    return _parse_header(head)


def read_header_text(text: str) -> LockHeader | None:
    """read_header on a lock's text."""
    return _parse_header(text.splitlines()[:12])


def _parse_header(head: list[str]) -> LockHeader | None:
    cell = digest = None
    inputs: dict[str, Any] | None = None
    for line in head:
        if line.startswith("# cell: "):
            cell = line[len("# cell: ") :].strip()
        elif line.startswith(_HASH_PREFIX):
            digest = line[len(_HASH_PREFIX) :].strip()
        elif line.startswith(_INPUTS_PREFIX):
            try:
                inputs = json.loads(line[len(_INPUTS_PREFIX) :])
            except json.JSONDecodeError:
                return None
    if cell is None or digest is None or inputs is None:
        return None
    return LockHeader(cell=cell, input_hash=digest, inputs=inputs)


@dataclass(frozen=True)
class Pin:
    """One locked distribution: ``six==1.16.0`` and the sha256 digests the lock allows."""

    name: NormalizedName
    version: str
    hashes: frozenset[str]  # hex digests

    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def read_pins(text: str, marker_env: Mapping[str, str] | None = None) -> list[Pin]:
    """The exact pins of a lock's text, in its order. ``marker_env``: keep only the pins whose marker holds
    there (a lock's target, which is not the machine reading it); None keeps every pin."""
    pins: list[Pin] = []
    for entry in _logical_lines(text):
        req_part, *hash_parts = entry.split("--hash=")
        try:
            req = Requirement(req_part.strip())
        except InvalidRequirement:
            continue  # an option line (--index-url ...) carries no distribution
        if marker_env is not None and req.marker is not None and not req.marker.evaluate(dict(marker_env)):
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if not exact:
            continue
        hashes = frozenset(h.strip().split(":", 1)[1] for h in hash_parts if h.strip().startswith("sha256:"))
        pins.append(Pin(canonicalize_name(req.name), exact[0], hashes))
    return pins


def _logical_lines(text: str) -> Iterable[str]:
    """Lines with backslash continuations joined, comments dropped."""
    buf = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf.strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def diff_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two input records: ``pins.torch: 2.8.0 -> 2.8.1``."""
    changes: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    if key == "requirements":
                        what = "added" if sub not in a else "removed" if sub not in b else "changed"
                        changes.append(f"{sub} {what}")
                    else:
                        changes.append(f"{key}.{sub}: {a.get(sub, '(none)')} -> {b.get(sub, '(none)')}")
        else:
            changes.append(f"{key}: {a!r} -> {b!r}")
    return changes


@dataclass(frozen=True)
class LockStatus:
    """One lock's state. ``state``: fresh, stale, missing, floating (a nightly or latest cell: resolved at run time,
    never committed), unreachable, written, failed. ``infra`` names an infrastructure cause (the index or the network
    could not be reached): that says nothing about the stack, unlike a resolver conflict."""

    lock_id: str
    cells: tuple[str, ...]
    state: str
    detail: str = ""
    infra: str | None = None

    @property
    def problem(self) -> bool:
        return self.state in ("stale", "missing", "failed")

    @property
    def who(self) -> str:
        """The lock, and the cells it serves where they are more than the one it is named after."""
        return self.lock_id if self.cells == (self.lock_id,) else f"{self.lock_id} (for {', '.join(self.cells)})"


def lock_groups(cells: Iterable[Cell]) -> dict[str, list[Cell]]:
    """Cells grouped by the lock they share (a cell that `extends` another may reuse its lock)."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.lock_id, []).append(cell)
    return groups


def index_reachable(url: str, timeout: float = 8.0) -> str | None:
    """None if the index answers, else a one-line reason. A ``file://`` index (a mirror on disk) answers when its
    folder exists."""
    if url.startswith("file:"):
        folder = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        return None if folder.is_dir() else f"no such folder: {folder}"
    req = urllib.request.Request(url.rstrip("/") + "/", method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        # The index answered, so the host is reachable; a 404 on the root is still an answer.
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason) or type(exc).__name__


def check(matrix: Matrix, cells: Iterable[Cell]) -> list[LockStatus]:
    """Compare every selected lock's header with its current inputs. Needs no network, except to tell
    an unlocked nightly cell ('unreachable') from a forgotten one ('missing')."""
    results = []
    for lock_id, group in lock_groups(cells).items():
        cell = group[0]
        ids = tuple(c.id for c in group)
        path = lock_path(matrix, cell)
        if cell.floating:
            note = " (a committed one is ignored: delete it)" if path.exists() else ""
            results.append(
                LockStatus(
                    lock_id,
                    ids,
                    "floating",
                    f"resolved at run time from {cell.describe_index()}{note}",
                )
            )
            continue
        inputs = lock_inputs(matrix, cell)
        header = read_header(path)
        if header is None:
            if path.exists():
                results.append(
                    LockStatus(lock_id, ids, "stale", f"{path.name} has no whisperx-matrix header; regenerate it")
                )
            elif cell.index is not None and (why := index_reachable(cell.index.url)) is not None:
                results.append(
                    LockStatus(
                        lock_id, ids, "unreachable", f"{cell.index.describe()} unreachable: {why}; not testable here"
                    )
                )
            else:
                results.append(LockStatus(lock_id, ids, "missing", f"no {path.relative_to(matrix.root)}"))
        elif header.input_hash != input_hash(inputs):
            results.append(
                LockStatus(lock_id, ids, "stale", "; ".join(diff_inputs(header.inputs, inputs)) or "inputs changed")
            )
        else:
            results.append(LockStatus(lock_id, ids, "fresh"))
    return results


def ensure_fresh(matrix: Matrix, cell: Cell) -> Path:
    """The cell's lock path, or LockError saying why it cannot be used (missing, stale, unreachable)."""
    status = check(matrix, [cell])[0]
    path = lock_path(matrix, cell)
    if status.state == "fresh":
        if (why := unresolvable(path.read_text(encoding="utf-8"))) is not None:
            raise LockError(
                f"cell {cell.id} does not resolve for {cell.platform}: {why}",
                hint="pick another cell (nox -s cells), or change its pins in matrix.toml and run nox -s lock",
            )
        return path
    if status.state == "floating":
        raise LockError(
            f"cell {cell.id} floats: its lock is resolved at run time, never committed",
            hint=f"nox -s env-{cell.id} resolves and builds it; -- --lock-from RESULT.json rebuilds a run's env",
        )
    if status.state == "unreachable":
        raise NetworkError(
            f"cell {cell.id} has no lock and its index is unreachable: {status.detail}",
            hint=f"run where the PyTorch index is reachable, or point {cell.index.env if cell.index else 'the index'} at a mirror",
        )
    raise LockError(
        f"lock for {cell.id} is {status.state}: {status.detail}", hint=f"regenerate it: {REGENERATE} -- {cell.id}"
    )


UNRESOLVABLE_PREFIX = "# unresolvable: "
_NO_WHEEL_RE = re.compile(r"Because ([\w.\-]+==[\w.+\-!]+) has no wheels with a matching platform tag")


def unresolvable(text: str) -> str | None:
    """What uv said when the lock's inputs did not resolve (a lock may record that, as the resolver's answer for
    these inputs: the working cell's pins on linux-aarch64), or None for an ordinary lock."""
    for line in text.splitlines():
        if line.startswith(UNRESOLVABLE_PREFIX):
            return line[len(UNRESOLVABLE_PREFIX) :]
    return None


def unresolvable_reason(why: str, lock_id: str) -> str:
    """The reason token of an unresolvable lock: ``no-wheel-for-platform:torchcodec==0.7.0`` where uv says a pin
    has no wheel for the platform, else ``unresolvable:<lock>``."""
    m = _NO_WHEEL_RE.search(why)
    return f"no-wheel-for-platform:{m.group(1)}" if m else f"unresolvable:{lock_id}"


def _uv_cause(stderr: str) -> str:
    """uv's explanation of a failed resolution on one line, without its box-drawing marks or hints."""
    lines = [ln.strip().lstrip("×╰─▶│ ").strip().removeprefix("cause:").strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("hint:") and "No solution found" not in ln]
    return " ".join(" ".join(lines).split())


def compile_lock(matrix: Matrix, cell: Cell, *, upgrade: bool = False, dest: Path | None = None) -> LockStatus:
    """Resolve one cell with uv and write its lock atomically (to ``dest``, else constraints/). Outcomes are
    data, never exceptions, except for a missing uv. A floating cell is written only to a ``dest``."""
    group_ids = (cell.id,)
    if cell.floating and dest is None:
        return LockStatus(cell.lock_id, group_ids, "floating", "resolved at run time, never committed")
    path = dest or lock_path(matrix, cell)
    inputs = lock_inputs(matrix, cell)
    digest = input_hash(inputs)
    header = read_header(path)
    if header is not None and header.input_hash == digest and not upgrade:
        return LockStatus(cell.lock_id, group_ids, "fresh", "inputs unchanged")
    if cell.index is not None and (why := index_reachable(cell.index.url)) is not None:
        return LockStatus(
            cell.lock_id,
            group_ids,
            "unreachable",
            f"{cell.index.describe()} unreachable: {why}",
            infra="index unreachable",
        )

    with tempfile.TemporaryDirectory(prefix="wxm-lock-") as tmp:
        work = Path(tmp)
        # uv annotates each pin with the file that asked for it; compiling in a scratch folder with
        # short names keeps machine paths out of the committed lock.
        args = [
            tools.uv_bin(),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--generate-hashes",
            "--python-version",
            cell.python,
            "--python-platform",
            cell.platform,
            "-o",
            "out.txt",
        ]
        for name in cell.requirements:
            shutil.copyfile(matrix.root / name, work / Path(name).name)
            args.append(Path(name).name)
        (work / "cell.in").write_text(
            f"# pins of cell {cell.id} (matrix.toml)\n" + "\n".join(cell.requirement_lines()) + "\n"
        )
        args.append("cell.in")
        if cell.overrides:
            (work / "overrides.txt").write_text("\n".join(cell.overrides) + "\n")
            args += ["--override", "overrides.txt"]
        if cell.index is not None:
            args += ["--index", cell.index.url, "--prerelease", "allow"]
        proc = tools.run(args, cwd=work, env=tools.uv_env())
        if not proc.ok:
            if (cause := proc.infra_cause()) is not None:
                what = "package index unreachable" if cause == "network" else "disk full"
                return LockStatus(cell.lock_id, group_ids, "failed", f"{what}: {proc.last_error_line()}", infra=cause)
            why = _uv_cause(proc.stderr)
            if dest is not None or not _NO_WHEEL_RE.search(why):  # conflicting pins: matrix.toml's mistake, loud
                return LockStatus(cell.lock_id, group_ids, "failed", f"uv could not resolve: {proc.last_error_line()}")
            # A committed cell whose pins have no wheel for its platform (the working cell on linux-aarch64): the
            # resolver's answer is recorded as its lock, so the matrix judges it and `lock --check` stays fresh
            # until the inputs change.
            body = f"{UNRESOLVABLE_PREFIX}{why}\n"
        else:
            body = (work / "out.txt").read_text(encoding="utf-8")
            why = None
    header_lines = [
        "# Generated by whisperx-matrix from matrix.toml; do not edit.",
        f"#    {REGENERATE}",
        f"# cell: {cell.lock_id}",
        f"# python: {cell.python}  platform: {cell.platform}",
        f"{_HASH_PREFIX}{digest}",
        _INPUTS_PREFIX + json.dumps(inputs, sort_keys=True, separators=(",", ":")),
    ]
    atomic_write_text(path, "\n".join(header_lines) + "\n" + body)
    if why is not None:
        return LockStatus(cell.lock_id, group_ids, "unresolvable", unresolvable_reason(why, cell.lock_id))
    return LockStatus(cell.lock_id, group_ids, "written", f"{len(read_pins(body))} packages")


def resolve_floating(matrix: Matrix, cell: Cell, dest: Path) -> LockStatus:
    """Resolve a floating cell now into ``dest``: the lock its env is built from. A nightly cell resolves from its
    index (pre-releases allowed), a latest one from the default index alone, to the newest releases its
    constraints allow (no pre-releases unless a requirement names one)."""
    return compile_lock(matrix, cell, upgrade=True, dest=dest)


def lock_from(matrix: Matrix, cell: Cell, source: Path, dest_dir: Path) -> Path:
    """A lock for ``cell`` taken from a lock file or from a matrix result JSON (whose cell record keeps the lock
    it was built from), written under ``dest_dir``; LockError if the source has none for this cell."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise LockError(
            f"cannot read {source}: {exc.strerror}", hint="pass a lock file or a matrix result JSON"
        ) from None
    if source.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LockError(
                f"{source} is not JSON: {exc.msg}", hint="pass a lock file or a matrix result JSON"
            ) from None
        rec = (
            next((c for c in data.get("cells", []) if c.get("id") == cell.id), None) if isinstance(data, dict) else None
        )
        text = ((rec or {}).get("lock") or {}).get("text") or ""
        if not text:
            raise LockError(
                f"{source} holds no resolved lock for {cell.id}",
                hint="a matrix result keeps the lock of each floating cell it built; pick the run that built it",
            )
    header = read_header_text(text)
    if header is None or header.cell != cell.lock_id:
        found = header.cell if header else "no whisperx-matrix header"
        raise LockError(
            f"{source}: not a lock of {cell.lock_id} ({found})", hint="pass the lock this cell was built from"
        )
    dest = dest_dir / f"{cell.lock_id}-{sha256_bytes(text.encode())[7:19]}.txt"
    atomic_write_text(dest, text)
    return dest


def lock_all(matrix: Matrix, cells: Iterable[Cell], *, upgrade: bool = False, progress: Any = None) -> list[LockStatus]:
    """Lock every selected cell; an unreachable index or a failed resolution does not stop the others."""
    results = []
    groups = lock_groups(cells)
    with ui.progress(len(groups), "locking") as bar:
        for n, (lock_id, group) in enumerate(groups.items(), 1):
            if progress:
                progress(f"[{n}/{len(groups)}] locking {lock_id}")
            bar.note(lock_id)
            root = matrix.get(lock_id) if lock_id != group[0].id else group[0]
            status = compile_lock(matrix, root, upgrade=upgrade)
            results.append(replace(status, cells=tuple(c.id for c in group)))
            bar.advance()
    return results


# --- command line -------------------------------------------------------------------------------------


def _lock_table(results: list[LockStatus]) -> str:
    return ui.table(["STATE", "LOCK", "DETAIL"], [[r.state, r.who, r.detail or "-"] for r in results])


def cmd_lock(args: argparse.Namespace) -> int:
    m = load_matrix()
    cells = m.select(args.selectors)
    if args.check:
        results = check(m, cells)
        print(_lock_table(results))
        stale = [r for r in results if r.problem]
        if stale:
            raise LockError(
                f"{len(stale)} lock(s) out of date: {', '.join(r.lock_id for r in stale)}",
                hint=f"regenerate: {REGENERATE}",
            )
        return 0
    results = lock_all(m, cells, upgrade=args.upgrade, progress=ui.say)
    print(_lock_table(results))
    failed = [r for r in results if r.state == "failed"]
    if failed:
        raise LockError(f"could not lock {', '.join(r.lock_id for r in failed)}", hint="see the lines above")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lock", help="write hashed locks constraints/<cell>.txt (or --check them)")
    add_selectors(p)
    p.add_argument("--check", action="store_true", help="exit non-zero naming each stale lock and what changed")
    p.add_argument("--upgrade", action="store_true", help="re-resolve even if the inputs are unchanged")
    p.set_defaults(func=cmd_lock)

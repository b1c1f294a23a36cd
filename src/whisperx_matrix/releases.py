"""What the locks hold and what the index has: the releases of the watched packages newer than the locks.

The index is read through pip's own index client (``pip index versions``), so it is whatever pip is configured
to use: the default index, or ``PIP_INDEX_URL`` (the tests point it at a ``file://`` simple index). pip's client
gives no upload dates, so every release says "date unknown". A network failure is one NetworkError with a way
out; a package the index does not have is a note, never evidence.
"""

from __future__ import annotations

import concurrent.futures
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import tools
from .errors import NetworkError, ToolMissingError
from .lock import read_pins

# The packages whose releases are watched, besides every nvidia-* library the locks hold.
TORCH = "torch"
COMPANIONS = ("torchaudio", "torchvision", "torchcodec")  # released in step with torch: they follow its candidates
ENGINES = ("whisperx", "pyannote-audio", "ctranslate2", "faster-whisper")
WATCHED = (TORCH, *COMPANIONS, *ENGINES)
NVIDIA_PREFIX = "nvidia-"

DATE_UNKNOWN = "date unknown"
DATE_NOTE = "upload dates unknown: pip's index client (pip index versions) does not report them"

# pip's words for "the index could not be reached" (urllib3 and requests under pip), as opposed to "no such project".
_NETWORK_MARKERS = (
    "newconnectionerror",
    "failed to establish a new connection",
    "max retries exceeded",
    "temporary failure in name resolution",
    "name or service not known",
    "connection refused",
    "connecttimeouterror",
    "readtimeouterror",
    "could not fetch url",
    "sslerror",
    "proxyerror",
    "network is unreachable",
)

Runner = Callable[[Sequence[str]], tools.Completed]


@dataclass(frozen=True)
class Locked:
    """The highest version of one distribution across the committed locks, and the locks that hold it."""

    name: str
    version: str
    locks: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    """One watched package: what the locks hold, and the releases on the index newer than that (oldest first)."""

    name: str
    locked: str
    locks: tuple[str, ...]
    newer: tuple[str, ...] = ()
    note: str = ""  # "not on the index", "2.13.0+cpu ignored: a local version", ...
    candidates: list[str] = field(default_factory=list)  # ids of the candidate cells that take a release of it
    covered: dict[str, str] = field(default_factory=dict)  # version -> why it has no candidate of its own
    taken: dict[str, list[str]] = field(default_factory=dict)  # version -> candidates whose locks resolve it

    @property
    def newest(self) -> str | None:
        return self.newer[-1] if self.newer else None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "locked": self.locked,
            "locks": list(self.locks),
            "newer": [{"version": v, "date": None} for v in self.newer],
            "note": self.note,
            "candidates": list(self.candidates),
            "no_candidate": dict(self.covered),
            "resolved_by": {v: list(ids) for v, ids in self.taken.items()},
        }


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def locked_versions(constraints: Path) -> dict[str, Locked]:
    """Every distribution of constraints/*.txt at its highest locked version, with the locks holding that one."""
    seen: dict[str, dict[str, list[str]]] = {}
    for path in sorted(constraints.glob("*.txt")):
        for pin in read_pins(path.read_text(encoding="utf-8")):
            seen.setdefault(pin.name, {}).setdefault(pin.version, []).append(path.stem)
    out = {}
    for name, versions in seen.items():
        top = max(versions, key=lambda v: _version(v) or Version("0"))
        out[name] = Locked(name, top, tuple(versions[top]))
    return out


def watched_names(locked: Mapping[str, Locked], only: Iterable[str] = ()) -> list[str]:
    """The watched packages the locks hold (nvidia-* libraries by distribution name), or the ``only`` ones."""
    names = [n for n in WATCHED if n in locked] + sorted(n for n in locked if n.startswith(NVIDIA_PREFIX))
    wanted = {canonicalize_name(n) for n in only}
    return [n for n in names if n in wanted] if wanted else names


def parse_pip_versions(stdout: str) -> list[str] | None:
    """The versions in ``pip index versions`` output (its "Available versions:" line), None if it has none."""
    for line in stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
    return None


def _is_network_failure(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _NETWORK_MARKERS)


def pip_versions(name: str, *, pre: bool = False, run: Runner | None = None) -> list[str] | None:
    """The releases of ``name`` on the index pip is configured with (yanked ones are not listed; pre-releases
    only with ``pre``); None when the index has no such project. NetworkError when the index cannot be reached."""
    args = [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"]
    args += ["--retries", "1", "--timeout", "30"] + (["--pre"] if pre else [])
    try:
        proc = (run or tools.run)(args)
    except OSError as exc:
        raise ToolMissingError(f"cannot run pip: {exc}", hint="pip install pip (nox -s watch installs it)") from None
    found = parse_pip_versions(proc.stdout)
    if found is not None:
        return found
    text = proc.stderr + proc.stdout
    if "no module named pip" in text.lower():
        raise ToolMissingError("pip is not installed in this Python", hint="run it through nox: nox -s watch")
    if _is_network_failure(text):
        line = next((ln.strip() for ln in reversed(text.splitlines()) if _is_network_failure(ln)), "no answer")
        raise NetworkError(
            f"the package index could not be reached (pip index versions {name}): {line[:200]}",
            hint="check the connection (or PIP_INDEX_URL for a mirror) and run nox -s watch again; nothing was written",
        )
    if "no matching distribution" in text.lower():
        return None
    raise NetworkError(
        f"pip index versions {name} failed: {proc.last_error_line()[:200]}",
        hint="run it by hand to see pip's whole message",
    )


def newer_than(locked: str, versions: Iterable[str], *, pre: bool = False) -> tuple[list[str], list[str]]:
    """(releases newer than ``locked``, oldest first; ignored ones with why). Local versions (``2.13.0+cpu``) are
    not index releases (a find-links folder's wheels); pre-releases count only with ``pre``."""
    base = _version(locked) or Version("0")
    newer, ignored = [], []
    for text in versions:
        v = _version(text)
        if v is None:
            ignored.append(f"{text}: not a version")
        elif v <= base:
            continue
        elif v.local:
            ignored.append(f"{text}: a local version, not an index release")
        elif v.is_prerelease and not pre:
            continue
        else:
            newer.append(text)
    return sorted(set(newer), key=Version), ignored


def find_releases(
    locked: Mapping[str, Locked],
    names: Sequence[str],
    *,
    pre: bool = False,
    run: Runner | None = None,
    jobs: int = 8,
) -> list[Release]:
    """Ask the index about every name (a few at a time) and keep what is newer than the locks. The first network
    failure stops the run with its one-line error (after the questions already asked have come back)."""

    def ask(name: str) -> list[str] | None:
        return pip_versions(name, pre=pre, run=run)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {name: pool.submit(ask, name) for name in names}
        answers = {}
        for name, fut in futures.items():
            answers[name] = fut.result()  # raises the first NetworkError, in the order asked
    out = []
    for name in names:
        have = locked[name]
        found = answers[name]
        if found is None:
            out.append(Release(name, have.version, have.locks, note="not on the index"))
            continue
        newer, ignored = newer_than(have.version, found, pre=pre)
        out.append(Release(name, have.version, have.locks, tuple(newer), note="; ".join(ignored)))
    return out


def minor_line(version: str) -> str:
    """ "2.12" for 2.12.1: the release line a candidate stands for."""
    v = Version(version)
    return ".".join(str(p) for p in v.release[:2])


def newest_per_line(versions: Iterable[str]) -> dict[str, str]:
    """The newest release of each minor line, keyed by the line: {"2.12": "2.12.1", ...}, oldest line first."""
    lines: dict[str, str] = {}
    for text in sorted(versions, key=Version):
        lines[minor_line(text)] = text
    return lines


_CUDA_RUNTIME = re.compile(r"^nvidia-cuda-runtime(-cu\d+)?$")


def cuda_tag(pins: Mapping[str, str]) -> str | None:
    """ "cu132" from a resolution's nvidia-cuda-runtime (13.2.86) or nvidia-cuda-runtime-cu12 (12.8.90) pin."""
    for name, version in pins.items():
        if _CUDA_RUNTIME.match(name) and (v := _version(version)) is not None and len(v.release) >= 2:
            major, minor = v.release[:2]
            return f"cu{major}{minor}"
    return None

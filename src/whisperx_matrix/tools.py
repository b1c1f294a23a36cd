"""External programs: uv, ffmpeg, espeak-ng. Found once, with a clear way out when absent."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolMissingError

# Substrings of uv's stderr that mean the index could not be reached (as opposed to a resolution error).
_NETWORK_MARKERS = (
    "dns error",
    "failed to lookup address",
    "connection refused",
    "could not connect",
    "error sending request",
    "tcp connect error",
    "operation timed out",
    "network is unreachable",
    "failed to fetch",
    "client error (connect)",
)

_DISK_MARKERS = ("no space left on device", "disk quota exceeded", "read-only file system")

# System programs the sessions need: Debian/Ubuntu package and why. Checked together, before any download.
SYSTEM_PROGRAMS = {
    "ffmpeg": ("ffmpeg", "WhisperX decodes audio with it; torchcodec needs its libraries"),
    "espeak-ng": ("espeak-ng", "speaks the test audio"),
    "patch": ("patch", "applies the WhisperX patch series"),
    "chromium": ("chromium", "renders the HTML report in a test"),
}
NEEDS = {  # what each kind of work needs; chromium only warns (its test skips without it)
    "build": ("ffmpeg", "espeak-ng", "patch"),
    "matrix": ("ffmpeg", "espeak-ng", "patch"),
    "bench": ("ffmpeg", "espeak-ng"),
    "tests": ("ffmpeg", "espeak-ng", "patch", "chromium"),
}
OPTIONAL = frozenset({"chromium"})


def install_line(programs: Sequence[str]) -> str:
    return "sudo apt-get install -y " + " ".join(SYSTEM_PROGRAMS[p][0] for p in programs)


def preflight(work: str, *, satisfied: Mapping[str, bool] | None = None) -> list[str]:
    """Check every system program ``work`` needs at once. Raises ToolMissingError naming all the missing required
    ones with one install line; returns the missing optional ones. ``satisfied`` marks programs whose work is
    already done (espeak-ng where the test speech is cached)."""
    satisfied = satisfied or {}
    missing = [p for p in NEEDS[work] if shutil.which(p) is None and not satisfied.get(p)]
    required = [p for p in missing if p not in OPTIONAL]
    if required:
        why = "; ".join(f"{p} ({SYSTEM_PROGRAMS[p][1]})" for p in required)
        raise ToolMissingError(
            f"missing system programs for {work}: {why}",
            hint=f"{install_line(missing)}  (Debian/Ubuntu), then run this again",
        )
    return missing


@functools.cache
def uv_bin() -> str:
    """The uv executable: the one on PATH, else the one the `uv` Python package ships."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        raise ToolMissingError(
            "uv is not installed", hint="pip install uv (nox sessions install it for you: nox -s env-cu128)"
        ) from None


@functools.cache
def find_python(version: str) -> str | None:
    """What to pass uv as --python for ``version``: the version itself where uv finds one, else a pyenv install
    of it (pyenv's shims refuse a version that is not selected, so uv's discovery misses those); None if neither."""
    if run([uv_bin(), "python", "find", version], env=uv_env()).ok:
        return version
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = [p for p in (root / "versions").glob(f"{version}.*/bin/python{version}") if os.access(p, os.X_OK)]
    if found:
        return str(max(found, key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()]))
    return None


def python_available(version: str) -> bool:
    return find_python(version) is not None


def require(program: str) -> str:
    found = shutil.which(program)
    if not found:
        package, why = SYSTEM_PROGRAMS.get(program, (program, "it is needed"))
        raise ToolMissingError(
            f"{program} not found on PATH", hint=f"install {package} (Debian/Ubuntu: apt-get install {package}): {why}"
        )
    return found


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_error_line(self) -> str:
        """The most telling line of stderr (uv puts the cause last), for one-line messages."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for line in reversed(lines):
            if "error" in line.lower() or "×" in line or line.startswith("╰"):
                return line.lstrip("╰─▶ ").strip()
        return lines[-1] if lines else f"exit code {self.returncode}"

    def is_network_failure(self) -> bool:
        text = self.stderr.lower()
        return any(marker in text for marker in _NETWORK_MARKERS)

    def infra_cause(self) -> str | None:
        """ "network" or "disk" when the failure is the machine's, not the stack's; None otherwise."""
        text = self.stderr.lower()
        if any(marker in text for marker in _DISK_MARKERS):
            return "disk"
        return "network" if self.is_network_failure() else None


def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    live_stderr: bool = False,
) -> Completed:
    """Run a program (``input`` on its stdin), capture its output, never raise on a non-zero exit.
    ``live_stderr``: let the program's stderr through as it comes (a long benchmark's progress); ``stderr`` is
    then empty.

    Raises what subprocess does when the program cannot start (OSError) or outlives ``timeout``
    (subprocess.TimeoutExpired): callers decide whether that is fatal."""
    proc = subprocess.run(
        list(args),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=None if live_stderr else subprocess.PIPE,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    return Completed(tuple(args), proc.returncode, proc.stdout, proc.stderr or "")


def uv_env() -> dict[str, str]:
    """The environment uv runs with: never download a Python (these machines can't), no colour codes."""
    env = dict(os.environ)
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env["NO_COLOR"] = "1"
    return env

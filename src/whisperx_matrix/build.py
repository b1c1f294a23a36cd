"""Build a cell's venv from its lock: atomically, hash-checked, patched, stamped, self-tested.

Layout under envs/ (see paths.envs_dir):
    envs/<cell>                       symlink to the build in force (replaced atomically)
    envs/.builds/<cell>-<key>/        one finished build; <key> hashes the stamp (lock, patches, preload)
    envs/.builds/.tmp-<cell>-<pid>-*  a build in progress; a killed one is swept up by the next build

The symlink is only ever swapped with rename(2), so a killed or failed build leaves the previous
good env in place and usable. A build that fails its self-test is kept for inspection, never linked.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import lock as locks
from . import paths, preflight, tools, ui
from .cli import add_selectors
from .errors import BuildError, LockError, NetworkError, NotBuiltError, SelfTestError
from .matrix import Cell, Matrix
from .matrix import load as load_matrix
from .paths import PRELOAD_MODULE

STAMP = "whisperx-matrix-stamp.json"
SELFTEST = "whisperx-matrix-selftest.json"
BUILD_FORMAT = 1
SELFTEST_MAX_WER = 0.35

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class BuildResult:
    cell: str
    env: Path
    state: str  # "built", "up-to-date", "relinked"
    seconds: dict[str, float] = field(default_factory=dict)
    patches: str = ""
    selftest: dict[str, Any] | None = None

    def usage(self) -> str:
        py = self.env / "bin" / "python"
        return (
            f"env {self.cell}: {self.env}\n"
            f"  python:   {py}\n"
            f"  activate: source {self.env / 'bin' / 'activate'}\n"
            f"  no LD_LIBRARY_PATH or ~/.bashrc edit needed"
        )


def env_link(matrix: Matrix, cell: Cell) -> Path:
    return paths.envs_dir(matrix.root) / cell.id


def built_env(matrix: Matrix, cell: Cell) -> Path:
    """The env in force for a cell, or NotBuiltError with the command that builds it."""
    link = env_link(matrix, cell)
    if not (link / STAMP).is_file():
        raise NotBuiltError(f"cell {cell.id} is not built (no {link})", hint=f"build it: nox -s env-{cell.id}")
    return link


def _series(matrix: Matrix) -> Any:
    from . import patches

    return patches.load_series(matrix.root / "patches")


def expected_stamp(matrix: Matrix, cell: Cell, *, use_patches: bool, lock_file: Path | None = None) -> dict[str, Any]:
    """What a build of this cell must record to count as current. Cheap: reads the lock and the patches.
    ``lock_file`` replaces the committed lock (a floating cell's resolved lock)."""
    lock_path = lock_file or locks.ensure_fresh(matrix, cell)
    return {
        "format": BUILD_FORMAT,
        "cell": cell.id,
        "python": cell.python,
        # Named by the cell's lock id, so a floating cell's lock gives the same stamp wherever it was saved.
        "lock": f"{cell.lock_id}.txt {locks.sha256_bytes(lock_path.read_bytes())}",
        "patches": _series(matrix).fingerprint() if use_patches else None,
        "preload": list(cell.preload),
        **({"opt_in_patches": list(cell.opt_in_patches)} if use_patches and cell.opt_in_patches else {}),
    }


def _key(stamp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_selftest(path: Path) -> dict[str, Any] | None:
    """A build's recorded self-test, or None where there is none or it is incomplete (the self-test was
    interrupted before it judged: no ``passed``): then it runs again rather than being reported as a result."""
    st = _read_json(path)
    return st if st is not None and "passed" in st and (st["passed"] or "failure" in st) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(builds: Path, cell: Cell, keep: set[Path]) -> None:
    """Remove this cell's killed temp builds and superseded builds (never the linked one)."""
    if not builds.is_dir():
        return
    for entry in builds.iterdir():
        name = entry.name
        if name.startswith(f".tmp-{cell.id}-"):
            pid = name[len(f".tmp-{cell.id}-") :].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
        elif re.fullmatch(rf"{re.escape(cell.id)}-[0-9a-f]{{12}}(-\d+)?", name) and entry not in keep:
            shutil.rmtree(entry, ignore_errors=True)


def _relink(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` with one rename(2): readers see the old env or the new, never neither."""
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    if link.exists() and not link.is_symlink():
        tmp.unlink()
        raise BuildError(f"{link} is a real folder, not a link to a build", hint="move it away, then rebuild")
    os.replace(tmp, link)


def _preload_files(site: Path, cell: Cell) -> None:
    """A .pth that loads the cell's `preload` libraries at interpreter start, so the env needs no
    LD_LIBRARY_PATH: a later dlopen of the same soname (ctranslate2's libcublas.so.12) finds it loaded."""
    missing = [rel for rel in cell.preload if not (site / rel).exists()]
    if missing:
        raise BuildError(
            f"cell {cell.id}: preload {missing[0]} is not in the env",
            hint="fix `preload` in matrix.toml (paths are relative to site-packages)",
        )
    (site / f"{PRELOAD_MODULE}.py").write_text(
        '"""Written by whisperx-matrix: loads libraries this env needs, so nobody sets LD_LIBRARY_PATH."""\n'
        "import ctypes, os\n"
        "LOADED, ERRORS = [], {}\n"
        f"for _rel in {list(cell.preload)!r}:\n"
        "    _path = os.path.join(os.path.dirname(os.path.abspath(__file__)), _rel)\n"
        "    try:\n"
        "        ctypes.CDLL(_path, mode=ctypes.RTLD_GLOBAL)\n"
        "        LOADED.append(_path)\n"
        "    except OSError as _exc:  # reported by the audit and the cell tests, never fatal at start-up\n"
        "        ERRORS[_path] = str(_exc)\n",
        encoding="utf-8",
    )
    (site / f"{PRELOAD_MODULE}.pth").write_text(f"import {PRELOAD_MODULE}\n", encoding="utf-8")


def selftest_script() -> Path:
    return Path(__file__).parent / "cellside" / "selftest.py"


# What a cell process may see of ours: what a program needs to run, caches, and CPU/GPU knobs. An allow-list, so a
# token (HF_TOKEN, a CI's *_TOKEN, a cloud key) never reaches the third-party code of a cell; nothing in a cell
# needs one (the hubs are offline). LD_LIBRARY_PATH is not on it: a cell built right needs none.
CELL_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TERM",
        "TZ",
        "TMPDIR",
        "XDG_CACHE_HOME",
        "WXM_CACHE",
        "HF_HOME",
        "HF_HUB_CACHE",
        "TORCH_HOME",
        "NLTK_DATA",
        "PYTHONHASHSEED",
        "PYTHONUNBUFFERED",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_CACHE_PATH",
        "CUDA_CACHE_DISABLE",
        "NVIDIA_VISIBLE_DEVICES",
    }
)
CELL_ENV_PREFIXES = ("LC_", "OPENBLAS_")


def clean_env() -> dict[str, str]:
    """The environment a cell runs with: the allow-list above, and offline hubs."""
    env = {k: v for k, v in os.environ.items() if k in CELL_ENV_NAMES or k.startswith(CELL_ENV_PREFIXES)}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYANNOTE_METRICS_ENABLED="false")
    return env


def run_selftest(env_dir: Path) -> dict[str, Any]:
    """Imports + a CPU transcription of known speech, in the cell's own python, LD_LIBRARY_PATH unset."""
    from . import speech

    tools.require("ffmpeg")
    sample = speech.selftest_speech()
    out = env_dir / SELFTEST
    ref = env_dir / "whisperx-matrix-selftest-reference.txt"
    ref.write_text(sample.text, encoding="utf-8")
    t0 = time.perf_counter()
    proc = tools.run(
        [str(env_dir / "bin" / "python"), "-I", str(selftest_script()), str(sample.wav), str(ref), str(out)],
        env=clean_env(),
        timeout=900,
    )
    data = _read_json(out) or {"transcription": {"ok": False, "error": f"self-test crashed: {proc.last_error_line()}"}}
    data["seconds"] = round(time.perf_counter() - t0, 2)
    data["audio_seconds"] = round(sample.seconds, 2)
    data["passed"], data["failure"] = _judge_selftest(data)
    out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def _late_selftest(cell: Cell, final: Path, seconds: dict[str, float], progress: Progress) -> dict[str, Any]:
    """Run the self-test in ``final`` and record it there; raise SelfTestError if it fails."""
    progress(f"{cell.id}: self-test (imports, CPU transcription of known speech)")
    t0 = time.perf_counter()
    st = run_selftest(final)
    seconds["selftest"] = round(time.perf_counter() - t0, 3)
    if not st["passed"]:
        raise SelfTestError(
            f"cell {cell.id} failed its self-test: {st['failure']}",
            hint=f"the build is kept for inspection at {final}; an env in force stays linked",
            record={**st, "env": str(final)},
        )
    return st


def _judge_selftest(data: dict[str, Any]) -> tuple[bool, str | None]:
    for mod, rec in data.get("imports", {}).items():
        if not rec.get("ok"):
            return False, f"import {mod} failed: {rec.get('error')} ({rec.get('where')})"
    tr = data.get("transcription") or {}
    if not tr.get("ok"):
        return False, f"transcription failed: {tr.get('error')} ({tr.get('where', '')})"
    if tr.get("wer", 1.0) > SELFTEST_MAX_WER:
        return False, f"transcript is wrong: WER {tr['wer']:.0%} > {SELFTEST_MAX_WER:.0%}: {tr.get('text', '')[:120]!r}"
    return True, None


@contextlib.contextmanager
def _cell_lock(builds: Path, cell: Cell) -> Iterator[None]:
    """One build of a cell at a time (parallel matrix runs, pytest-xdist); released if the process dies."""
    builds.mkdir(parents=True, exist_ok=True)
    with open(builds / f".{cell.id}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(
    matrix: Matrix,
    cell: Cell,
    *,
    use_patches: bool | None = None,
    selftest: bool = True,
    offline: bool = False,
    wheelhouse: Path | None = None,
    force: bool = False,
    lock_file: Path | None = None,
    progress: Progress = _quiet,
) -> BuildResult:
    """Build (or reuse) the cell's env. Raises BuildError/SelfTestError; the old env always survives.
    ``lock_file`` builds from that lock instead of constraints/ (floating cells)."""
    with _cell_lock(paths.envs_dir(matrix.root) / ".builds", cell), ui.progress(None, f"build {cell.id}") as bar:

        def step(msg: str) -> None:  # the bar shows the step under way; the caller still gets every line
            bar.note(msg.removeprefix(f"{cell.id}: "))
            progress(msg)

        return _build_locked(
            matrix,
            cell,
            use_patches=use_patches,
            selftest=selftest,
            offline=offline,
            wheelhouse=wheelhouse,
            force=force,
            lock_file=lock_file,
            progress=step,
        )


def resolve_and_build(
    matrix: Matrix, cell: Cell, *, lock_from: Path | None = None, progress: Progress = _quiet, **kwargs: Any
) -> BuildResult:
    """Build a cell; a floating cell first gets its lock, resolved now from its index or taken from
    ``lock_from`` (a lock file or a matrix result that kept it). Raises LockError/NetworkError/BuildError."""
    if not cell.floating and lock_from is None:
        return build(matrix, cell, progress=progress, **kwargs)
    folder = paths.envs_dir(matrix.root) / ".locks"
    if lock_from is not None:
        lock_file = locks.lock_from(matrix, cell, lock_from, folder)
    else:
        lock_file = folder / f"{cell.lock_id}-resolved.txt"
        progress(f"{cell.id}: resolving from {cell.index.describe() if cell.index else 'its index'} (floating cell)")
        with ui.progress(None, f"resolve {cell.id}"):
            status = locks.resolve_floating(matrix, cell, lock_file)
        if status.infra is not None:
            raise NetworkError(
                f"cell {cell.id}: {status.detail}",
                hint=f"run where the index answers, or point {cell.index.env if cell.index else 'it'} at a mirror",
            )
        if status.state not in ("written", "fresh"):
            raise LockError(f"cell {cell.id}: {status.detail}", hint="the stack does not resolve: see uv's reason")
    return build(matrix, cell, lock_file=lock_file, progress=progress, **kwargs)


def _build_locked(
    matrix: Matrix,
    cell: Cell,
    *,
    use_patches: bool | None,
    selftest: bool,
    offline: bool,
    wheelhouse: Path | None,
    force: bool,
    lock_file: Path | None,
    progress: Progress,
) -> BuildResult:
    use_patches = cell.patches if use_patches is None else use_patches
    if use_patches:  # an unknown or non-opt-in id stops here, before anything is installed
        _series(matrix).check_opted(
            cell.opt_in_patches, f"cell {cell.id}: opt_in_patches", whisperx_version=cell.pins.get("whisperx")
        )
    t_start = time.perf_counter()
    stamp = expected_stamp(matrix, cell, use_patches=use_patches, lock_file=lock_file)
    lock_path = lock_file or locks.lock_path(matrix, cell)
    key = _key(stamp)
    envs = paths.envs_dir(matrix.root)
    builds = envs / ".builds"
    link = envs / cell.id
    final = builds / f"{cell.id}-{key}"

    current = _read_json(link / STAMP) if link.is_symlink() else None
    if current is not None and current.get("key") == key and not force:
        st = _read_selftest(final / SELFTEST)
        checked = {"check": round(time.perf_counter() - t_start, 3)}
        if selftest and st is None:  # built with --no-selftest: the caller wants one, so it runs now
            st = _late_selftest(cell, final, checked, progress)
        # The patch summary is the one recorded at build time, so a reused build reports what a fresh one does.
        return BuildResult(cell.id, link, "up-to-date", checked, patches=current.get("patch_summary", ""), selftest=st)

    finished = _read_json(final / STAMP)
    if finished is not None and finished.get("key") == key and not force:
        # Built before with the same inputs: reuse it. A recorded self-test failure is deterministic for
        # the same lock and patches, so it is reported again rather than rebuilt (--force rebuilds).
        st = _read_selftest(final / SELFTEST)
        if st is not None and not st.get("passed") and selftest:
            raise SelfTestError(
                f"cell {cell.id} failed its self-test: {st['failure']}",
                hint=f"recorded in {final / SELFTEST}; the env in force is unchanged (--force rebuilds)",
                record={**st, "env": str(final), "reused": True},
            )
        if not selftest or st is not None:
            _relink(link, final)
            _sweep(builds, cell, keep={final})
            return BuildResult(
                cell.id,
                link,
                "relinked",
                {"check": round(time.perf_counter() - t_start, 3)},
                patches=finished.get("patch_summary", ""),
                selftest=st,
            )
    if final.exists():
        if link.is_symlink() and link.resolve() == final.resolve():
            # --force on the env in force: build beside it, so a failure still leaves it usable.
            final = final.with_name(f"{final.name}-{int(time.time())}")
        else:
            shutil.rmtree(final)  # an unlinked build of the same inputs, being forced again

    if wheelhouse is not None:
        from .wheelhouse import verify

        verify(lock_path, wheelhouse)  # names the missing wheel; uv would only say "not found"
    builds.mkdir(parents=True, exist_ok=True)
    _sweep(builds, cell, keep={link.resolve()} if link.is_symlink() else set())
    tmp = builds / f".tmp-{cell.id}-{os.getpid()}-{int(time.time())}"
    seconds: dict[str, float] = {"check": round(time.perf_counter() - t_start, 3)}
    try:
        t0 = time.perf_counter()
        progress(f"{cell.id}: creating venv (python {cell.python})")
        proc = tools.run(
            [
                tools.uv_bin(),
                "venv",
                "--quiet",
                "--relocatable",
                "--python",
                tools.find_python(cell.python) or cell.python,
                str(tmp),
            ],
            env=tools.uv_env(),
        )
        if not proc.ok:
            raise BuildError(
                f"cell {cell.id}: uv venv failed: {proc.last_error_line()}",
                hint=f"install Python {cell.python} (uv will not download one here)",
                infra=proc.infra_cause() or f"no python {cell.python}",
            )
        seconds["venv"] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        progress(f"{cell.id}: installing {stamp['lock'].split()[0]} (hashes required)")
        sync = [
            tools.uv_bin(),
            "pip",
            "sync",
            "--quiet",
            "--require-hashes",
            "--python",
            str(tmp / "bin" / "python"),
            str(lock_path),
        ]
        if wheelhouse is not None:
            sync += ["--no-index", "--find-links", str(wheelhouse)]
        if offline:
            sync.append("--offline")
        if cell.index is not None and wheelhouse is None:
            sync += ["--index", cell.index.url]
        proc = tools.run(sync, env=tools.uv_env())
        if not proc.ok:
            cause = proc.infra_cause()
            what = {"network": "package index unreachable", "disk": "disk full"}.get(cause or "", "install failed")
            raise BuildError(
                f"cell {cell.id}: {what}: {proc.last_error_line()}",
                hint="the previous env (if any) is untouched; check the network, the disk, or the wheelhouse",
                infra=cause,
            )
        seconds["install"] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        site = paths.site_packages(tmp)
        if cell.preload:
            _preload_files(site, cell)
        patch_summary = ""
        if use_patches:
            from . import patches

            result = patches.apply_series(_series(matrix), site, cell.pins["whisperx"], cell.opt_in_patches)
            patch_summary = result.summary
            progress(f"{cell.id}: patches: {patch_summary}")
        seconds["patch"] = round(time.perf_counter() - t0, 3)

        record = dict(
            stamp,
            key=key,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            patch_summary=patch_summary,
            uv=tools.run([tools.uv_bin(), "--version"]).stdout.strip(),
        )
        (tmp / STAMP).write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildError(
                f"cell {cell.id}: disk full: {exc}", hint="free some space (envs/ and uv's cache)", infra="disk"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds["build_total"] = round(time.perf_counter() - t_start, 3)

    st = _late_selftest(cell, final, seconds, progress) if selftest else None
    _relink(link, final)
    _sweep(builds, cell, keep={final})
    return BuildResult(cell.id, link, "built", seconds, patches=patch_summary, selftest=st)


# --- command line -------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    m = load_matrix()
    if args.for_this_machine:
        from . import doctor

        if args.selectors:
            raise LockError(
                "--for-this-machine picks the cell itself", hint="name cells, or pass --for-this-machine alone"
            )
        cell, why = doctor.choose_cell(m, doctor.collect(), python_ok=tools.python_available)
        ui.say(f"building {cell.id}: {why}")
        cells = [cell]
    else:
        if not args.selectors:
            raise LockError(
                "build needs cells (ids, aliases or globs) or --for-this-machine",
                hint="nox -s env picks the cell for this GPU; nox -s env-cu128 builds the working cell",
            )
        cells = m.select(args.selectors)
    if not args.no_selftest:
        preflight.check_system("build")
    wheelhouse = Path(args.wheelhouse).resolve() if args.wheelhouse else None
    lock_from = Path(args.lock_from).resolve() if args.lock_from else None
    if lock_from is not None and len(cells) != 1:
        raise LockError("--lock-from takes one cell", hint="name the one cell whose lock the file holds")
    for cell in cells:
        result = resolve_and_build(
            m,
            cell,
            lock_from=lock_from,
            use_patches=False if args.no_patches else None,
            selftest=not args.no_selftest,
            offline=args.offline,
            wheelhouse=wheelhouse,
            force=args.force,
            progress=ui.say,
        )
        if result.state == "up-to-date":
            print(
                f"{cell.id}: up to date (lock and patches unchanged), nothing to do [{result.seconds['check']:.2f} s]"
            )
        else:
            times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
            print(f"{cell.id}: {result.state} [{times}]")
            if result.patches:
                print(f"  patches: {result.patches}")
        st = result.selftest
        if st and st.get("passed"):
            tr = st["transcription"]
            print(
                f"  self-test: imports ok; transcribed {st['audio_seconds']:.0f} s of speech on the CPU, "
                f"WER {tr['wer']:.0%}: {tr['text'][:70]!r}..."
            )
        print(result.usage())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build cell venvs from their locks (atomic, hash-checked, self-tested)")
    add_selectors(p)
    p.add_argument(
        "--for-this-machine",
        action="store_true",
        help="let the doctor pick the cell for this GPU and driver (the working cell where there is no GPU)",
    )
    p.add_argument("--no-patches", action="store_true", help="build without the WhisperX patch series")
    p.add_argument("--no-selftest", action="store_true", help="skip the import and transcription self-test")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.add_argument("--offline", action="store_true", help="no network at all (uv cache or --wheelhouse only)")
    p.add_argument("--wheelhouse", metavar="DIR", help="install from this folder of wheels instead of the index")
    p.add_argument(
        "--lock-from",
        metavar="FILE",
        help="build from this lock, or from the lock a matrix result JSON kept "
        "for the cell (rebuilds a floating nightly cell exactly as that run had it)",
    )
    p.set_defaults(func=cmd_build)

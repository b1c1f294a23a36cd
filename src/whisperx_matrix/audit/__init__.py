"""Audits that need no GPU (issue #4): which GPUs a cell's CUDA code can run on, and whether the dynamic
loader finds every library the cell's code asks for.

For the verdict stage::

    report = audit_target("stable-cu130", sm=120)      # a cell id, a venv or a site-packages folder
    report.runnable, report.reason, report.reasons      # False, "missing-soname:libcublas.so.12", (...)
    report.to_dict()                                    # JSON-able

``audit_site(site, sm, ...)`` does the same for a folder the caller already has. The arch audit alone is
:func:`audit_arch`, the closure audit alone :func:`audit_closure`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import tools
from ..errors import ConfigError, NotBuiltError
from ..fsutil import atomic_write_text
from . import elf
from .arch import ArchAudit, LibraryArch, PackageArch, audit_arch, judge_library
from .closure import ClosureAudit, ProcessImage, audit_closure, default_entries, read_preload, simulate
from .fatbin import Arch, ptx_jits_on, sass_runs_on, scan
from .loader import Missing, SearchEnv
from .report import format_arch, format_closure

__all__ = [
    "Arch",
    "ArchAudit",
    "AuditReport",
    "ClosureAudit",
    "LibraryArch",
    "Missing",
    "PackageArch",
    "ProcessImage",
    "SearchEnv",
    "Target",
    "audit_arch",
    "audit_closure",
    "audit_site",
    "audit_target",
    "bench_audit",
    "format_report",
    "ptx_jits_on",
    "register",
    "resolve_target",
    "sass_runs_on",
    "scan",
]

KINDS = ("arch", "closure", "all")


@dataclass(frozen=True)
class Target:
    """What to audit: a site-packages folder, and the venv's python and cell when known."""

    site: Path
    python: Path | None = None
    cell: str | None = None


@dataclass(frozen=True)
class AuditReport:
    target: str  # the cell id or the path given
    site: str
    sm: str  # "sm_120"
    runnable: bool
    reason: str | None  # the first of ``reasons``: what the verdict compares with the expected reason
    reasons: tuple[str, ...]  # "arch-unsupported:sm_120", "missing-soname:libcublas.so.12", ...
    arch: ArchAudit | None
    closure: ClosureAudit | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def resolve_target(target: str | Path, *, matrix_path: Path | None = None) -> Target:
    """A cell id (through matrix.toml and the envs folder), a venv, or a site-packages folder."""
    path = Path(target)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder", hint="give a cell id, a venv or a site-packages folder")
        return _from_path(path)
    from .. import matrix as matrix_mod
    from ..paths import envs_dir

    mx = matrix_mod.load(matrix_path)
    cell = mx.get(str(target))  # UnknownCellError, with did-you-mean, for a typo
    env = envs_dir(mx.root) / cell.id
    if not env.exists():
        raise NotBuiltError(f"cell {cell.id} is not built (no {env})", hint=f"build it: nox -s env-{cell.id}")
    found = _from_path(env)
    return Target(site=found.site, python=found.python, cell=cell.id)


def _from_path(path: Path) -> Target:
    from ..paths import site_packages

    if (path / "pyvenv.cfg").is_file() or list(path.glob("lib/python3*/site-packages")):
        try:
            site = site_packages(path)
        except FileNotFoundError as exc:
            raise NotBuiltError(str(exc), hint="the venv is incomplete: rebuild it") from exc
        python = path / "bin" / "python"
        return Target(site=site, python=python if python.exists() else None)
    return Target(site=path)


def audit_site(
    site: Path,
    sm: int | str = 120,
    *,
    kind: str = "all",
    python: Path | None = None,
    preload: list[Path] | None = None,
    entries: list[Path] | None = None,
    ld_library_path: str | None = None,
    torch_archs: bool = True,
    progress: bool | None = None,
    label: str | None = None,
    env: SearchEnv | None = None,
) -> AuditReport:
    """Run the audits on one site-packages folder. Never raises for what it finds: findings are data. ``env``: the
    loader's system side (default: this machine's; ``SearchEnv.foreign("aarch64")`` for another platform's wheels)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown audit kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    found = _from_path(Path(site))  # a venv is accepted too
    site, python = found.site, python or found.python
    target = Arch.parse(sm)
    files = list(elf.iter_files(site))
    arch = closure = None
    reasons: list[str] = []
    image = None
    if kind in ("closure", "all"):
        closure = audit_closure(
            site,
            entries=entries,
            preload=preload,
            ld_library_path=ld_library_path,
            python=python,
            files=files,
            env=env,
            progress=progress,
        )
        image = closure.process
    if kind in ("arch", "all"):
        if image is None:
            # The arch verdict is about what the process loads; the process model alone costs well under
            # a second (no per-file closure).
            image = simulate(
                site,
                entries if entries is not None else default_entries(site),
                env=env or SearchEnv.system(None, python=python),
                preload=preload if preload is not None else read_preload(site),
            )
        used = {item.path for item in image.loaded} if image.entries else None
        arch = audit_arch(
            site, target, files=files, python=python if torch_archs else None, progress=progress, used=used
        )
        if arch.reason:
            reasons.append(arch.reason)
        reasons.extend(f"no-cuda-build:{name}" for name in arch.cpu_only)
    if closure is not None:
        reasons.extend(f"missing-soname:{name}" for name in closure.missing)
    return AuditReport(
        target=label or str(site),
        site=str(site),
        sm=target.sm(),
        runnable=not reasons,
        reason=reasons[0] if reasons else None,
        reasons=tuple(reasons),
        arch=arch,
        closure=closure,
    )


def audit_target(target: str | Path, sm: int | str = 120, **kwargs: Any) -> AuditReport:
    """:func:`audit_site` for a cell id, venv or site-packages folder (NotBuiltError for an unbuilt cell)."""
    found = resolve_target(target, matrix_path=kwargs.pop("matrix_path", None))
    kwargs.setdefault("python", found.python)
    return audit_site(found.site, sm, label=found.cell or str(target), **kwargs)


def format_report(report: AuditReport, *, all_rows: bool = False) -> str:
    parts = []
    if report.arch is not None:
        parts.append(format_arch(report.arch, all_libraries=all_rows))
    if report.closure is not None:
        parts.append(format_closure(report.closure, all_objects=all_rows))
    verdict = "runnable" if report.runnable else f"NOT runnable: {', '.join(report.reasons)}"
    parts.append(f"{report.target} on {report.sm}: {verdict}")
    return "\n\n".join(parts)


# --- benchmark -----------------------------------------------------------------------------------------


def find_cuobjdump(site: Path | None = None) -> Path | None:
    """cuobjdump on PATH, else from an nvidia-cuda-cuobjdump wheel installed under ``site``, else one that
    the tests installed into the shared cache (``cache_dir()/sites``)."""
    from ..paths import cache_dir

    found = shutil.which("cuobjdump")
    if found:
        return Path(found)
    roots = [Path(site)] if site is not None else []
    roots += sorted((cache_dir() / "sites").glob("nvidia-cuda-cuobjdump*"))
    for root in roots:
        for hit in sorted(root.glob("nvidia/*/bin/cuobjdump")):
            if os.access(hit, os.X_OK):
                return hit
    return None


def bench_audit(
    site: Path | None = None,
    *,
    library: Path | None = None,
    cuobjdump: Path | None = None,
    sm: int | str = 120,
    repeat: int = 3,
    warmup: bool = True,
) -> dict[str, Any]:
    """Time the arch audit of a site-packages folder, and of one library against ``cuobjdump``.

    ``library`` defaults to ``<site>/torch/lib/libtorch_cuda.so``. Each timing is the best of ``repeat``
    runs after one warm-up (page cache warm for both tools, so the comparison is of the work done).
    cuobjdump reads and decompresses the whole file: about 10 s and 5 GB of memory for a 1 GB
    libtorch_cuda.so, so ``warmup=False`` and ``repeat=1`` keep a test short.
    """
    target = Arch.parse(sm)
    out: dict[str, Any] = {"sm": target.sm(), "repeat": repeat}
    if site is not None:
        site = Path(site)
        if warmup:
            audit_arch(site, target, progress=False)
        best = float("inf")
        result = None
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = audit_arch(site, target, progress=False)
            best = min(best, time.perf_counter() - t0)
        assert result is not None
        size = sum((site / lib.path).stat().st_size for lib in result.libraries)
        out["site"] = {
            "path": str(site),
            "elf_files": result.files,
            "elf_bytes": size,
            "gpu_libraries": sum(1 for lib in result.libraries if lib.containers),
            "audit_s": round(best, 4),
            # Every library counted (no process model here): a timing, not a verdict.
            "all_libraries_runnable": result.runnable,
        }
        library = library or (site / "torch" / "lib" / "libtorch_cuda.so")
    if library is not None and Path(library).is_file():
        library = Path(library)
        scan(library)

        def once() -> float:
            t0 = time.perf_counter()
            judge_library(scan(library), target, rel=library.name, package="")
            return time.perf_counter() - t0

        lib_s = min(once() for _ in range(repeat))
        entry: dict[str, Any] = {"path": str(library), "bytes": library.stat().st_size, "audit_s": round(lib_s, 4)}
        tool = cuobjdump or find_cuobjdump(site)
        if tool is not None:
            cmd = [str(tool), "--list-elf", "--list-ptx", str(library)]
            if warmup:
                tools.run(cmd)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                tools.run(cmd)
                times.append(time.perf_counter() - t0)
            entry["cuobjdump"] = str(tool)
            entry["cuobjdump_s"] = round(min(times), 4)
            entry["speedup"] = round(min(times) / lib_s, 1) if lib_s > 0 else None
        out["library"] = entry
    return out


# --- CLI -----------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audit",
        help="static audits (no GPU): CUDA archs in the fatbins, shared-library closure",
        description="Audit a cell, a venv or a site-packages folder: can its CUDA code run on compute "
        "capability --sm, and does the dynamic loader find every library (DT_NEEDED and dlopen'ed)?",
    )
    p.add_argument("target", help="cell id (see matrix.toml), venv folder, or site-packages folder")
    p.add_argument(
        "--sm",
        default=None,
        help="target compute capability: 120, sm_90, 8.9 (default: matrix.toml's target_sm, else 120)",
    )
    p.add_argument("--kind", choices=KINDS, default="all")
    p.add_argument("--json", metavar="FILE", type=Path, help="write the full report as JSON ('-' for stdout)")
    p.add_argument(
        "--entry",
        action="append",
        type=Path,
        metavar="SO",
        help="entry module(s) of the simulated process (default: torch's and ctranslate2's extensions)",
    )
    p.add_argument(
        "--preload",
        action="append",
        type=Path,
        metavar="SO",
        help="libraries loaded first (default: the cell's preload .pth)",
    )
    p.add_argument(
        "--ld-library-path",
        default=os.environ.get("LD_LIBRARY_PATH"),
        help="compare with this LD_LIBRARY_PATH (default: yours)",
    )
    p.add_argument("--no-torch", action="store_true", help="do not import torch in the cell to compare its arch list")
    p.add_argument("--all", action="store_true", help="list every library, not only the notable ones")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (none is drawn anyway when stderr is not a terminal, or in CI)",
    )
    p.set_defaults(func=_run)


DEFAULT_SM = 120  # the guide's GPU (RTX 50), where no matrix.toml names a target


def _default_sm() -> int:
    """matrix.toml's target where there is one (a broken one stops with its error); else DEFAULT_SM, said aloud."""
    from .. import matrix as matrix_mod

    try:
        path = matrix_mod.find_matrix()
    except ConfigError:  # auditing a plain path outside a checkout
        print(f"audit: no matrix.toml here or above; judging for sm_{DEFAULT_SM} (--sm to choose)", file=sys.stderr)
        return DEFAULT_SM
    return matrix_mod.load(path).target_sm


def _run(args: argparse.Namespace) -> int:
    sm = args.sm if args.sm is not None else _default_sm()
    try:
        Arch.parse(sm)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="e.g. --sm 120 (RTX 50), --sm 90 (H100), --sm 89 (RTX 40)") from None
    report = audit_target(
        args.target,
        sm,
        kind=args.kind,
        entries=args.entry,
        preload=args.preload,
        ld_library_path=args.ld_library_path or None,
        torch_archs=not args.no_torch,
        progress=False if args.no_progress else None,
    )
    if args.json is not None and str(args.json) == "-":
        print(report.to_json())
        return 0
    print(format_report(report, all_rows=args.all))
    if args.json is not None:
        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


__all__ += ["find_cuobjdump", "read_preload"]

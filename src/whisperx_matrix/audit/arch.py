"""The arch audit of a tree: per library and per distribution, can its GPU code run on a target GPU?

A library is judged module by module (one fatbin container per compiled translation unit): it is runnable
when every container has an image the target can load (compatible SASS, or PTX the driver can JIT).
Containers that carry code for one GPU family only (only "a" code, or only SASS of one major version) are
left out of that count when the library has other containers, because such a library picks the module
for the GPU it finds (cuBLASLt's Hopper-only GEMMs). If it has nothing else, all containers count.
A library where some containers are covered and some are not is "partial" (still judged runnable; the
count of uncovered modules is evidence): kernels in those modules would fail with "no kernel image is
available" unless the library dispatches around them.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import tools, ui
from . import elf
from .fatbin import Arch, FileFatbins, scan
from .records import Owners

RUNNABLE, PARTIAL, NOT_RUNNABLE, NO_GPU_CODE = "runnable", "partial", "not-runnable", "no-gpu-code"


@dataclass(frozen=True)
class LibraryArch:
    path: str  # relative to the audited root
    package: str  # "torch 2.8.0", or "(no distribution)"
    status: str  # runnable | partial | not-runnable | no-gpu-code
    runnable: bool
    sass: tuple[str, ...]  # distinct SASS archs, e.g. ("sm_80", "sm_90", "sm_90a")
    ptx: tuple[str, ...]  # distinct PTX archs with ISA version, e.g. ("compute_86 (PTX 8.7)",)
    containers: int
    uncovered: int  # containers (not arch-specific-only) with no image for the target
    via: str  # how the target runs it: "sass", "ptx-jit" (part needs the driver's JIT), or ""
    compressed: bool
    reason: str | None  # "arch-unsupported:sm_120" when not runnable
    in_process: bool | None = None  # loaded by the simulated WhisperX process (None: not known)


@dataclass(frozen=True)
class PackageArch:
    package: str
    status: str
    runnable: bool
    libraries: tuple[str, ...]  # the package's libraries that carry GPU code
    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    via: str
    reason: str | None
    in_process: bool | None = None  # some of its GPU libraries are loaded by the simulated process
    # Where each arch tag comes from: groups of (libraries, tags they all carry), so a package total that
    # mixes a bundled library's PTX with the package's own SASS reads as such.
    origins: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    profiling_only: bool = False  # its GPU code is a profiler's (CUPTI): it never decides whether a cell runs


@dataclass(frozen=True)
class ArchAudit:
    root: str
    target: str  # "sm_120"
    runnable: bool  # every package with GPU code (that the process loads, when known) can run on the target
    reason: str | None
    packages: tuple[PackageArch, ...]
    libraries: tuple[LibraryArch, ...]
    warnings: tuple[str, ...]
    files: int
    seconds: float
    torch_arch_list: tuple[str, ...] | None = None  # torch._C._cuda_getArchFlags() in the cell's python
    notes: tuple[str, ...] = ()
    # Packages of the GPU stack that are installed but carry no GPU code at all: a CPU-only build (PyPI's torch
    # 2.8.0 for linux-aarch64, CTranslate2 4.8.5's aarch64 wheel). Each is a reason "no-cuda-build:<name>".
    cpu_only: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


_TAG_KINDS = ("sm_", "compute_", "lto_")


def _arch_key(tag: str) -> tuple[int, str, int, tuple[int, ...], str]:
    """A total order on arch tags: by compute capability, variant, then kind (SASS, PTX, LTO IR), then PTX
    ISA version, then the tag itself. ``compute_50`` and ``lto_50`` (or two PTX versions of one arch) must
    not tie: the tags come from sets, whose iteration order changes with PYTHONHASHSEED, so a tie would
    reorder the audit's lists from run to run.
    """
    name, _, rest = tag.partition(" ")
    arch = Arch.parse(name)
    kind = next((i for i, prefix in enumerate(_TAG_KINDS) if name.startswith(prefix)), len(_TAG_KINDS))
    isa = tuple(int(n) for n in re.findall(r"\d+", rest))  # "(PTX 8.7)" -> (8, 7)
    return (arch.cc, arch.variant, kind, isa, tag)


def judge_library(found: FileFatbins, target: Arch, *, rel: str, package: str) -> LibraryArch:
    entries = found.entries
    sass = sorted({e.tag for e in entries if e.kind == "sass"}, key=_arch_key)
    ptx = sorted(
        {f"{e.tag} (PTX {e.ptx_version})" if e.kind == "ptx" else e.tag for e in entries if e.kind != "sass"},
        key=_arch_key,
    )
    compressed = any(e.compressed for e in entries)
    if not any(c.loadable for c in found.containers):
        # Nothing a module load can use (none at all, or LTO IR only): no GPU code to judge.
        return LibraryArch(
            rel, package, NO_GPU_CODE, True, tuple(sass), tuple(ptx), len(found.containers), 0, "", compressed, None
        )
    # Per-family modules are picked by their library at run time; judge the portable modules, or all of
    # them when the library has nothing else (an extension built for one GPU only).
    with_code = [c for c in found.containers if c.loadable]
    relevant = [c for c in with_code if not c.one_family] or with_code
    uncovered = [c for c in relevant if not c.runs_on(target)]
    jit = any(
        c.runs_on(target) and not any(e.kind == "sass" and e.runs_on(target) for e in c.entries) for c in relevant
    )
    if not uncovered:
        status, reason = RUNNABLE, None
    elif len(uncovered) < len(relevant):
        # Some modules only: per-GPU dispatch inside the library (cuBLAS) looks like this too, so it is
        # flagged, not failed; the count is in the evidence.
        status, reason = PARTIAL, None
    else:
        status, reason = NOT_RUNNABLE, f"arch-unsupported:{target.sm()}"
    via = "" if status == NOT_RUNNABLE else "ptx-jit" if jit else "sass"
    return LibraryArch(
        path=rel,
        package=package,
        status=status,
        runnable=status != NOT_RUNNABLE,
        sass=tuple(sass),
        ptx=tuple(ptx),
        containers=len(found.containers),
        uncovered=len(uncovered),
        via=via,
        compressed=compressed,
        reason=reason,
    )


def _package_status(libs: list[LibraryArch]) -> str:
    statuses = {lib.status for lib in libs}
    for status in (NOT_RUNNABLE, PARTIAL, RUNNABLE):
        if status in statuses:
            return status
    return NO_GPU_CODE


# Libraries whose kernels run only under a profiler (CUPTI and the libraries it ships beside it: nvperf, PC
# sampling, the checkpoint API; whether from nvidia-cuda-cupti or bundled in triton): torch loads CUPTI at
# start, but a missing sm_120 image there never stops a transcription.
PROFILING_LIBRARIES = ("libcupti", "libnvperf", "libpcsamplingutil", "libcheckpoint")  # CUPTI's, all four


def is_profiling_library(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(PROFILING_LIBRARIES)


def judge_packages(libs: Iterable[LibraryArch], target: Arch) -> list[PackageArch]:
    by_pkg: dict[str, list[LibraryArch]] = {}
    for lib in libs:
        by_pkg.setdefault(lib.package, []).append(lib)
    out = []
    for pkg in sorted(by_pkg):
        members = by_pkg[pkg]
        gpu = [m for m in members if m.status != NO_GPU_CODE]
        known = any(m.in_process is not None for m in members)
        used = [m for m in gpu if m.in_process]
        if used:
            # Judge a package by what the process loads (cuFFT's libcufftw, never loaded, has sm_52 only).
            members = gpu = used
        profiling_only = bool(gpu) and all(is_profiling_library(m.path) for m in gpu)
        # A package's own GPU code decides its status; a profiler it bundles does not (triton ships CUPTI).
        # A package that is only a profiler keeps its true status, and is left out of the cell's verdict.
        status = _package_status(
            members if profiling_only else [m for m in members if not is_profiling_library(m.path)]
        )
        via = "ptx-jit" if any(m.via == "ptx-jit" for m in gpu) else "sass" if gpu and status != NOT_RUNNABLE else ""
        out.append(
            PackageArch(
                package=pkg,
                status=status,
                runnable=status != NOT_RUNNABLE,
                libraries=tuple(m.path for m in gpu),
                sass=tuple(sorted({s for m in gpu for s in m.sass}, key=_arch_key)),
                ptx=tuple(sorted({s for m in gpu for s in m.ptx}, key=_arch_key)),
                via=via,
                reason=None if status != NOT_RUNNABLE else f"arch-unsupported:{target.sm()}",
                in_process=bool(used) if known else None,
                origins=arch_origins(gpu),
                profiling_only=profiling_only,
            )
        )
    return out


def arch_origins(libs: Iterable[LibraryArch]) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """Each SASS/PTX tag of ``libs`` grouped by the exact set of libraries that carry it, in arch order."""
    carriers: dict[str, list[str]] = {}
    for lib in libs:
        for tag in (*lib.sass, *lib.ptx):
            carriers.setdefault(tag, []).append(lib.path)
    groups: dict[tuple[str, ...], list[str]] = {}
    for tag in sorted(carriers, key=_arch_key):
        groups.setdefault(tuple(sorted(carriers[tag])), []).append(tag)
    return tuple(sorted(((k, tuple(v)) for k, v in groups.items()), key=lambda g: (_arch_key(g[1][0]), g[0])))


# What WhisperX runs on the GPU: torch (alignment, diarization, VAD) and CTranslate2 (faster-whisper's ASR).
GPU_STACK = ("torch", "ctranslate2")


# A CUDA library a GPU build links or opens, even one with no kernels of its own (it may only call cuBLAS).
_CUDA_LIBRARY = re.compile(r"^lib(cudart|cublas|cublasLt|cudnn)\.so(\.\d+)*$")


def _names_cuda(path: Path) -> bool:
    """Whether an object needs or names (a dlopen string) a CUDA library."""
    try:
        names = set(elf.dynamic(path).needed) | elf.soname_strings(path)
    except (OSError, elf.NotElfError):
        return False
    return any(_CUDA_LIBRARY.match(n) for n in names)


def cpu_only_packages(root: Path, packages: Iterable[PackageArch], libs: Iterable[LibraryArch]) -> tuple[str, ...]:
    """The GPU stack's packages installed under ``root`` (a dist-info of that name) that are CPU-only builds: no GPU
    code in any of their libraries, and none of them needs or opens a CUDA library. ``device="cuda"`` cannot work
    with them, whatever the GPU (PyPI's torch 2.8.0 and CTranslate2 4.8.5 for linux-aarch64)."""
    with_gpu = {p.package.split()[0] for p in packages if p.status != NO_GPU_CODE}
    installed = {name for name in GPU_STACK if any(root.glob(f"{name}-*.dist-info"))}
    suspects = [name for name in GPU_STACK if name in installed and name not in with_gpu]
    return tuple(
        name
        for name in suspects
        if not any(_names_cuda(root / lib.path) for lib in libs if lib.package.split()[0] == name)
    )


def audit_arch(
    root: Path,
    sm: int | str | Arch = 120,
    *,
    files: Iterable[Path] | None = None,
    python: Path | None = None,
    progress: bool | None = None,
    embedded: bool = True,
    used: Collection[str] | None = None,
) -> ArchAudit:
    """Audit every ELF file under ``root`` (a site-packages folder, or any tree) for GPU ``sm``.

    ``python``: the cell's interpreter; when given, torch's own arch list is read from it and compared.
    ``used``: paths (relative to ``root``) of the libraries the simulated process loads; when given, only
    packages with GPU code in that process decide ``runnable`` (every library is still listed).
    """
    start = time.perf_counter()
    root = Path(root)
    target = sm if isinstance(sm, Arch) else Arch.parse(sm)
    paths = sorted(files) if files is not None else list(elf.iter_files(root))
    owners = Owners(root)
    libs: list[LibraryArch] = []
    warnings: list[str] = []
    with ui.progress(len(paths), f"arch audit {target.sm()}", enabled=progress is not False) as bar:
        for path in paths:
            found = scan(path, embedded=embedded)
            warnings.extend(found.warnings)
            if found.is_elf:
                rel = _rel(path, root)
                lib = judge_library(found, target, rel=rel, package=owners.name(path))
                if used is not None:
                    lib = replace(lib, in_process=rel in used)
                libs.append(lib)
            bar.advance(note=path.name)
    packages = judge_packages(libs, target)
    bad = [p for p in packages if not p.runnable and p.in_process is not False and not p.profiling_only]
    notes: list[str] = []
    torch_list = torch_arch_list(python) if python else None
    if torch_list is not None:
        notes.extend(compare_torch(torch_list, libs))
    return ArchAudit(
        root=str(root),
        target=target.sm(),
        runnable=not bad,
        reason=bad[0].reason if bad else None,
        packages=tuple(packages),
        libraries=tuple(libs),
        warnings=tuple(warnings),
        files=len(paths),
        seconds=round(time.perf_counter() - start, 3),
        torch_arch_list=tuple(torch_list) if torch_list is not None else None,
        notes=tuple(notes),
        cpu_only=cpu_only_packages(root, packages, libs),
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# torch.cuda.get_arch_list() answers [] where no GPU is present; the flags it is built from do not.
_TORCH_ARCHS = (
    "import json, torch\n"
    "flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, '_cuda_getArchFlags') else None\n"
    "print(json.dumps((flags or '').split()))\n"
)


def torch_arch_list(python: Path, timeout: float = 120) -> list[str] | None:
    """``torch._C._cuda_getArchFlags()`` (what ``torch.cuda.get_arch_list()`` reports on a GPU machine), run
    in the cell's python. None when torch does not import there; [] for a CPU build.
    """
    try:
        proc = tools.run([str(python), "-c", _TORCH_ARCHS], timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):  # no such python, or torch hangs on import: not known
        return None
    if not proc.ok:
        return None
    try:
        return [str(x) for x in json.loads(proc.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError):
        return None


def compare_torch(arch_list: list[str], libs: Iterable[LibraryArch]) -> list[str]:
    """Differences between torch's declared arch list and what libtorch_cuda.so really carries."""
    cuda = [lib for lib in libs if lib.path.endswith("torch/lib/libtorch_cuda.so")]
    if not cuda or not arch_list:
        return [f"torch._C._cuda_getArchFlags(): {' '.join(arch_list) or '(none: a CPU build)'}"] if cuda else []
    lib = cuda[0]
    declared = set(arch_list)
    carried = set(lib.sass) | {p.split()[0] for p in lib.ptx}
    # torch lists only the archs it was asked to build (TORCH_CUDA_ARCH_LIST); "a" variants come from
    # individual kernels (FlashAttention, CUTLASS) and are expected extras.
    missing = sorted(declared - carried)
    extra = sorted(a for a in carried - declared if not a.endswith("a"))
    notes = [f"torch._C._cuda_getArchFlags(): {' '.join(arch_list) or '(none: a CPU build)'}"]
    if missing:
        notes.append(f"declared by torch but absent from {lib.path}: {' '.join(missing)}")
    if extra:
        notes.append(f"in {lib.path} but not declared by torch: {' '.join(extra)}")
    return notes

"""doctor: read this machine's NVIDIA GPUs and driver, and name the cell of matrix.toml to use here.

Three steps, as torch's collect_env does: collect (NVML through ``pynvml``, else ``nvidia-smi``; every probe
takes an injected loader or runner and returns None on failure, never raises), judge (per cell: the driver
against the CUDA build, the cell's kernels against the compute capability, matrix.toml's expectation, the
channel), present (text or JSON). With no GPU, ``--sm`` and ``--driver`` stand in for the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from packaging.version import InvalidVersion, Version

from . import lock as locks
from . import paths, tools, ui
from .cudafacts import CUDA_DRIVERS, CUDA_DRIVERS_SOURCE, GPU_DRIVER_BRANCH, KNOWN_GPUS, TORCH_ARCHS, CudaDriver
from .errors import ConfigError
from .matrix import Cell, Matrix, native_arch

# --- kernels per cell ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernels:
    """The GPU code a cell's torch carries: SASS archs and PTX archs, and where we know it from."""

    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    source: str  # "audit of envs/<cell>" or "table (torch 2.8.0+cu128)"


# --- collection ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    sm: int | None  # 120 for compute capability 12.0; None if unknown


@dataclass(frozen=True)
class Machine:
    """What the probes found (or what the command line said, with no GPU)."""

    gpus: tuple[Gpu, ...]
    driver: str | None
    cuda: str | None  # the highest CUDA version the driver supports, "12.8"
    source: str  # "nvml", "nvidia-smi", "command line", "none"
    notes: tuple[str, ...] = ()


Loader = Callable[[], ModuleType]
Runner = Callable[[Sequence[str]], "tools.Completed | None"]


def _load_pynvml() -> ModuleType:
    import pynvml  # nvidia-ml-py

    return pynvml


def run_quietly(args: Sequence[str]) -> tools.Completed | None:
    """tools.run that answers None when the program is missing or hangs (a wedged driver can)."""
    try:
        return tools.run(args, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_from_int(value: int) -> str:
    """nvmlSystemGetCudaDriverVersion: 12080 -> "12.8"."""
    return f"{value // 1000}.{value % 1000 // 10}"


def _sm(major: int, minor: int) -> int:
    return major * 10 + minor


def nvml_error(exc: BaseException) -> str:
    """A one-line name for an NVML failure, with what to do for the common ones."""
    kind = type(exc).__name__
    text = str(exc) or kind
    if kind == "NVMLError_LibRmVersionMismatch" or "version mismatch" in text.lower():
        return (
            f"NVML failed: {text} ({kind}): the loaded kernel module and the user-space driver differ, "
            "usual after a driver upgrade without a reboot; reboot (or reload the nvidia modules)"
        )
    if kind == "NVMLError_LibraryNotFound":
        return f"NVML failed: {text} ({kind}): libnvidia-ml.so.1 is not installed (no NVIDIA driver?)"
    if kind == "NVMLError_DriverNotLoaded":
        return f"NVML failed: {text} ({kind}): the nvidia kernel module is not loaded"
    return f"NVML failed: {text} ({kind})"


def probe_nvml(loader: Loader = _load_pynvml) -> tuple[Machine | None, str | None]:
    """GPUs through NVML. (None, why) on any failure: no pynvml, no library, a driver mismatch."""
    try:
        nv = loader()
    except ImportError as exc:
        return None, f"NVML not used: pynvml is not importable ({exc}); pip install nvidia-ml-py"
    try:
        nv.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - not hidden: the note names it, and nvidia-smi is tried next
        return None, nvml_error(exc)
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
        try:
            cuda = _cuda_from_int(int(nv.nvmlSystemGetCudaDriverVersion()))
        except nv.NVMLError:  # drivers before R410 have no such query: the CUDA version stays unknown
            cuda = None
        gpus = []
        for i in range(int(nv.nvmlDeviceGetCount())):
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            name = _text(nv.nvmlDeviceGetName(handle))
            try:
                major, minor = nv.nvmlDeviceGetCudaComputeCapability(handle)
                sm: int | None = _sm(int(major), int(minor))
            except nv.NVMLError:  # unknown here; KNOWN_GPUS or nvidia-smi may still tell
                sm = None
            gpus.append(Gpu(i, name, sm))
        return Machine(tuple(gpus), driver, cuda, "nvml"), None
    except Exception as exc:  # noqa: BLE001 - as above: named in the note, never a silent default
        return None, nvml_error(exc)
    finally:
        with contextlib.suppress(nv.NVMLError):  # a failed shutdown changes nothing we report
            nv.nvmlShutdown()


SMI_QUERY = ("nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
_SMI_CUDA = re.compile(r"CUDA Version:\s*([0-9]+\.[0-9]+)")


def parse_smi_query(text: str) -> list[tuple[str, int | None, str]]:
    """Lines ``NVIDIA GeForce RTX 5070, 12.0, 570.133.07`` -> (name, 120, driver)."""
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[2] or not parts[2][0].isdigit():
            continue
        name, cap, driver = parts
        sm = None
        if re.fullmatch(r"\d+\.\d+", cap):
            major, minor = cap.split(".")
            sm = _sm(int(major), int(minor))
        rows.append((name, sm, driver))
    return rows


def parse_smi_cuda(text: str) -> str | None:
    """The ``CUDA Version: 12.8`` of nvidia-smi's header: the highest CUDA the driver supports."""
    match = _SMI_CUDA.search(text)
    return match.group(1) if match else None


def probe_smi(runner: Runner = run_quietly) -> tuple[Machine | None, str | None]:
    """GPUs through ``nvidia-smi``. (None, why) when it is missing or fails."""
    proc = runner(SMI_QUERY)
    if proc is None:
        return None, "nvidia-smi not found"
    if not proc.ok:
        out = (proc.stdout + proc.stderr).strip().splitlines()
        return None, f"nvidia-smi failed: {out[0] if out else f'exit code {proc.returncode}'}"
    rows = parse_smi_query(proc.stdout)
    if not rows:
        return None, "nvidia-smi lists no GPU"
    header = runner(("nvidia-smi",))
    cuda = parse_smi_cuda(header.stdout) if header is not None and header.ok else None
    gpus = tuple(Gpu(i, name, sm if sm is not None else known_sm(name)) for i, (name, sm, _) in enumerate(rows))
    return Machine(gpus, rows[0][2], cuda, "nvidia-smi"), None


def known_sm(name: str) -> int | None:
    """Compute capability from the GPU's name (longest matching entry of KNOWN_GPUS)."""
    hits = [k for k in KNOWN_GPUS if k.lower() in name.lower()]
    return KNOWN_GPUS[max(hits, key=len)] if hits else None


def device_signs() -> list[str]:
    """The driver's own signs of a GPU that need no working driver stack (gpuseen: the cell suite asks the same)."""
    from .cellside import gpuseen

    return gpuseen.driver_signs()


def collect(
    loader: Loader = _load_pynvml, runner: Runner = run_quietly, signs: Callable[[], list[str]] = device_signs
) -> Machine:
    """NVML first; nvidia-smi where NVML is missing or failing; where both fail, whether the machine still shows
    GPU device nodes (a GPU the driver stack cannot use: torch will fail to initialise CUDA). Never raises."""
    machine, why_nvml = probe_nvml(loader)
    if machine is not None and machine.gpus:
        return machine
    notes = [why_nvml] if why_nvml else ["NVML lists no GPU"]
    machine, why_smi = probe_smi(runner)
    if machine is not None:
        return Machine(machine.gpus, machine.driver, machine.cuda, machine.source, tuple(notes) + ("used nvidia-smi",))
    notes += [why_smi] if why_smi else []
    shown = signs()
    if shown:
        notes.append(
            f"cuda-init-failed: the machine shows a GPU ({'; '.join(shown)}) but neither NVML nor nvidia-smi can "
            "use it, so torch cannot initialise CUDA either: reinstall or reload the NVIDIA driver (570 or later "
            "for an RTX 50)"
        )
    return Machine((), None, None, "none", tuple(notes))


TORCH_CUDA_CHECK = (
    "import sys; sys.path.insert(0, sys.argv[1]); import gpuseen, torch; "
    "print('OK' if torch.cuda.is_available() else 'ERR ' + gpuseen.torch_init_error(torch))"
)


def torch_cuda_problem(python: Path, runner: Runner = run_quietly) -> str | None:
    """Whether the torch in a built cell initialises CUDA on this machine: None if it does, else the
    ``cuda-init-failed:...`` reason with torch's own error (a GPU the driver lists can still be one torch
    cannot use, e.g. a driver too old for the torch build)."""
    from .cellside import gpuseen

    proc = runner((str(python), "-c", TORCH_CUDA_CHECK, str(Path(gpuseen.__file__).parent)))
    out = proc.stdout.strip() if proc is not None else ""
    if out == "OK":
        return None
    error = out.removeprefix("ERR ") or (
        "the check did not run" if proc is None else (proc.stderr.strip().splitlines() or ["no output"])[-1]
    )
    return f"{gpuseen.init_failed_reason(error)}: torch in {python.parent.parent.name} cannot initialise CUDA: {error}"


def record(dest: Path, loader: Loader = _load_pynvml, runner: Runner = run_quietly) -> list[Path]:
    """Write what the probes see, raw, as test data: ``<dest>-nvml.json``, ``<dest>-smi-query.txt``,
    ``<dest>-smi.txt`` (the replay in tests/unit/test_doctor.py reads these names)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = []
    nvml: dict[str, Any]
    try:
        nv = loader()
    except ImportError as exc:  # recorded as data: the doctor's tests replay it
        nvml = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    else:
        try:
            nv.nvmlInit()
            try:
                devices = []
                for i in range(int(nv.nvmlDeviceGetCount())):
                    h = nv.nvmlDeviceGetHandleByIndex(i)
                    devices.append(
                        {
                            "name": _text(nv.nvmlDeviceGetName(h)),
                            "compute_capability": list(nv.nvmlDeviceGetCudaComputeCapability(h)),
                        }
                    )
                nvml = {
                    "driver_version": _text(nv.nvmlSystemGetDriverVersion()),
                    "cuda_driver_version": int(nv.nvmlSystemGetCudaDriverVersion()),
                    "devices": devices,
                }
            finally:
                nv.nvmlShutdown()
        except (nv.NVMLError, OSError) as exc:
            nvml = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    for suffix, content in (
        ("-nvml.json", json.dumps(nvml, indent=2) + "\n"),
        ("-smi-query.txt", _stdout(runner(SMI_QUERY))),
        ("-smi.txt", _stdout(runner(("nvidia-smi",)))),
    ):
        path = dest.with_name(dest.name + suffix)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def _stdout(proc: tools.Completed | None) -> str:
    if proc is None:
        return "# nvidia-smi not found\n"
    return proc.stdout if proc.ok else f"# nvidia-smi exit {proc.returncode}\n{proc.stdout}{proc.stderr}"


# --- judgement -----------------------------------------------------------------------------------------

OK, LIMITED, OUT = "ok", "limited", "out"


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


class UnknownCudaError(ConfigError):
    """A cell bundles a CUDA release whose driver floor cudafacts does not cite: the doctor cannot judge it, and
    says so instead of passing it."""


def _cuda_release(cuda: str) -> str:
    """ "cu132" -> "13.2" (the form NVIDIA's tables use)."""
    digits = cuda[2:]
    return f"{digits[:-1]}.{digits[-1:]}" if len(digits) > 1 else cuda


def cuda_floor(cuda: str, cell: str | None = None) -> CudaDriver:
    """The cited driver floors of a cell's CUDA build; UnknownCudaError where cudafacts has none."""
    req = CUDA_DRIVERS.get(cuda)
    if req is not None:
        return req
    who = f"cell {cell} has cuda = {cuda!r}" if cell else f"cuda = {cuda!r}"
    raise UnknownCudaError(
        f"{who}, and cudafacts.CUDA_DRIVERS cites no driver floor for CUDA {_cuda_release(cuda)}: "
        "the doctor cannot say which drivers run it",
        hint=f"add CUDA {_cuda_release(cuda)}'s row to cudafacts.CUDA_DRIVERS: the Linux x86_64 Toolkit Driver "
        "Version of its GA release and its minor-version-compatibility floor, from NVIDIA's CUDA Toolkit Release "
        "Notes (Tables 3 and 2), with the source in the comment above the table",
    )


def driver_fit(cuda: str, driver: str | None, *, cell: str | None = None) -> tuple[str, str]:
    """("full" | "minor-compat" | "too-old" | "unknown", why) for a cell's CUDA build on this driver ("unknown":
    the driver is). UnknownCudaError for a CUDA build with no cited driver floor."""
    req = cuda_floor(cuda, cell)
    have = _version(driver)
    if have is None:
        return "unknown", f"driver unknown (CUDA {req.cuda} needs >= {req.toolkit_driver}; give --driver)"
    if have >= Version(req.toolkit_driver):
        return "full", f"driver {driver} >= {req.toolkit_driver} (CUDA {req.cuda} GA)"
    if have >= Version(req.minor_compat_driver):
        return "minor-compat", (
            f"driver {driver} < {req.toolkit_driver} (CUDA {req.cuda} GA): runs through CUDA "
            f"minor-version compatibility (>= {req.minor_compat_driver}), with limits"
        )
    return "too-old", (
        f"driver {driver} is too old for CUDA {req.cuda}: needs >= {req.toolkit_driver} "
        f"(or >= {req.minor_compat_driver} with minor-version compatibility)"
    )


def gpu_driver_problem(sm: int | None, driver: str | None) -> str | None:
    """A reason no cell can run: the driver branch predates the GPU family (565 on an RTX 5070)."""
    have = _version(driver)
    if sm is None or have is None or sm // 10 not in GPU_DRIVER_BRANCH:
        return None
    branch, why = GPU_DRIVER_BRANCH[sm // 10]
    if have.release[0] < branch:
        return f"driver {driver} predates sm_{sm}: {why}"
    return None


@dataclass(frozen=True)
class DriverRuns:
    """Which CUDA releases of cudafacts.CUDA_DRIVERS a driver runs: fully (>= the release's toolkit driver),
    only through minor-version compatibility (>= its major's floor), or not at all."""

    driver: str
    full: tuple[str, ...]  # "12.4", "12.6", ...
    minor_compat: tuple[str, ...]
    none: tuple[str, ...]
    summary: str  # "driver 575.51.03 runs CUDA 12.4-12.9 fully; 13.x not at all (13.x needs >= 580)"
    source: str = CUDA_DRIVERS_SOURCE


def _span(releases: Sequence[str]) -> str:
    return releases[0] if len(releases) == 1 else f"{releases[0]}-{releases[-1]}"


def driver_runs(driver: str | None) -> DriverRuns | None:
    """What ``driver`` runs of the CUDA releases with a cited floor; None where the driver is unknown."""
    have = _version(driver)
    if driver is None or have is None:
        return None
    rows = sorted(CUDA_DRIVERS.values(), key=lambda d: Version(d.cuda))
    full = [d for d in rows if have >= Version(d.toolkit_driver)]
    minor = [d for d in rows if d not in full and have >= Version(d.minor_compat_driver)]
    none = [d for d in rows if d not in full and d not in minor]
    parts = [f"runs CUDA {_span([d.cuda for d in full])} fully" if full else "runs no CUDA release fully"]
    if minor:
        needs = ", ".join(f"{d.cuda} >= {d.toolkit_driver}" for d in minor)
        parts.append(
            f"{_span([d.cuda for d in minor])} only through minor-version compatibility, with limits (fully: {needs})"
        )
    majors: dict[str, list[CudaDriver]] = {}
    for d in none:
        majors.setdefault(d.cuda.split(".")[0], []).append(d)
    for major, group in majors.items():
        whole = len(group) == sum(1 for d in rows if d.cuda.split(".")[0] == major)
        floors = sorted({d.minor_compat_driver for d in group}, key=Version)
        name = f"{major}.x" if whole else _span([d.cuda for d in group])
        parts.append(f"{name} not at all ({name} needs >= {' / '.join(floors)})")
    return DriverRuns(
        driver,
        tuple(d.cuda for d in full),
        tuple(d.cuda for d in minor),
        tuple(d.cuda for d in none),
        f"driver {driver} " + "; ".join(parts),
    )


def _parse_arch(tag: str) -> Any:
    from .audit.fatbin import Arch

    return Arch.parse(tag.split()[0])


def kernel_fit(kernels: Kernels | None, sm: int | None) -> tuple[str, str]:
    """("sass" | "ptx" | "none" | "unknown", why): can the cell's torch run on compute capability ``sm``?
    The compatibility rule is the audit's (CUDA C++ Programming Guide, binary/PTX compatibility)."""
    from .audit.fatbin import ptx_jits_on, sass_runs_on

    if kernels is None:
        return "unknown", "its torch's arch list is unknown (build the cell: the audit reads it)"
    if sm is None:
        return "unknown", f"compute capability unknown; torch carries {' '.join(kernels.sass)} ({kernels.source})"
    target = _parse_arch(str(sm))
    sass = [a for a in kernels.sass if sass_runs_on(_parse_arch(a), target)]
    if sass:
        # Name a plain arch where there is one: "a" variants run only on exactly that compute capability.
        shown = next((a for a in reversed(sass) if not a.endswith(("a", "f"))), sass[-1])
        return "sass", f"kernels for sm_{sm}: {shown} SASS ({kernels.source})"
    ptx = [a for a in kernels.ptx if ptx_jits_on(_parse_arch(a), target)]
    if ptx:
        return "ptx", f"no sm_{sm} SASS, only {ptx[-1]} PTX to JIT at first use ({kernels.source})"
    have = " ".join(kernels.sass) or "none"
    return "none", f"no kernels for sm_{sm}: torch carries {have} ({kernels.source})"


def locked_versions(matrix: Matrix, cell: Cell) -> dict[str, str]:
    """``name -> version`` from the cell's lock, or {} when it has none."""
    try:
        text = locks.lock_path(matrix, cell).read_text(encoding="utf-8")
    except OSError:
        return {}
    return {pin.name: pin.version for pin in locks.read_pins(text)}


def torch_version(matrix: Matrix, cell: Cell) -> str | None:
    """The cell's torch: its lock, else its pin, else an exact override."""
    locked = locked_versions(matrix, cell).get("torch")
    if locked:
        return locked.split("+")[0]
    if "torch" in cell.pins:
        return cell.pins["torch"]
    for line in cell.overrides:
        m = re.match(r"^torch\s*==\s*([^\s;]+)$", line)
        if m:
            return m.group(1)
    return None


def audit_kernels(matrix: Matrix, cell: Cell, sm: int) -> Kernels | None:
    """The SASS/PTX of the built cell's libtorch_cuda.so, read by the audit package (no GPU needed)."""
    from .audit.arch import audit_arch

    env = paths.envs_dir(matrix.root) / cell.id
    try:
        site = paths.site_packages(env)
    except FileNotFoundError:  # a dangling envs/<cell> link: not built here
        return None
    lib = site / "torch" / "lib" / "libtorch_cuda.so"
    if not lib.is_file():
        return None
    result = audit_arch(site, sm, files=[lib], progress=False)  # an unreadable library is an error, not a default
    libs = [x for x in result.libraries if x.path.endswith("libtorch_cuda.so")]
    if not libs:
        return None
    return Kernels(tuple(libs[0].sass), tuple(p.split()[0] for p in libs[0].ptx), f"audit of envs/{cell.id}")


# The committed matrix report: for a cell of another platform (aarch64), the static audit of its own wheels.
MATRIX_REPORT = Path("reports") / "matrix.json"


@functools.lru_cache(maxsize=4)
def _report_cells(path: Path, mtime_ns: int) -> dict[str, Any]:
    """The cell records of a matrix report by id, read once per version of the file (the doctor asks per cell)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    cells = data.get("cells", []) if isinstance(data, dict) else []
    return {str(c.get("id")): c for c in cells if isinstance(c, dict)}


def report_kernels(matrix: Matrix, cell: Cell) -> Kernels | None:
    """torch's kernels as the committed matrix report's static audit read them from the cell's own wheels, or None
    (no report, no record of the cell, or a torch without GPU code)."""
    path = matrix.root / MATRIX_REPORT
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    rec = _report_cells(path, mtime).get(cell.id)
    torch = (((rec or {}).get("arch") or {}).get("packages") or {}).get("torch") or {}
    if not torch.get("sass") and not torch.get("ptx"):
        return None
    ptx = tuple(p.split()[0] for p in torch.get("ptx") or [])
    return Kernels(tuple(torch.get("sass") or []), ptx, f"static audit of its {cell.arch} wheels ({MATRIX_REPORT})")


def cell_kernels(matrix: Matrix, cell: Cell, sm: int | None, *, use_audit: bool = True) -> Kernels | None:
    """The built env's audit where there is one; else the table of measured torch builds, saying so. A cell of
    another platform is never built here: the committed report's static audit of its wheels speaks for it (the
    table's rows are x86_64 wheels; torch's aarch64 builds carry other kernels)."""
    if cell.arch != native_arch():
        return report_kernels(matrix, cell)
    note = ""
    if use_audit and sm is not None and (paths.envs_dir(matrix.root) / cell.id).exists():
        try:
            found = audit_kernels(matrix, cell, sm)
        except ImportError as exc:  # nox's bare Python (`nox -s env`) has no pyelftools
            found, note = None, f"; not audited here: {exc.name} is not installed"
        if found is not None:
            return found
    version = torch_version(matrix, cell)
    entry = TORCH_ARCHS.get((version or "", cell.cuda))
    if entry is None:
        return None
    return Kernels(entry[0], entry[1], f"table (torch {version}+{cell.cuda}){note}")


@dataclass(frozen=True)
class CellFit:
    cell: str
    verdict: str  # ok | limited | out
    driver: str  # full | minor-compat | too-old | unknown
    kernels: str  # sass | ptx | none | unknown
    reasons: tuple[str, ...]  # why out or limited (first is the main one)
    details: tuple[str, ...]  # what was checked
    rank: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Report:
    machine: Machine
    sm: int | None
    driver: str | None
    cuda: str | None
    gpu_problem: str | None
    cells: tuple[CellFit, ...]
    recommended: str | None
    why: str
    driver_runs: DriverRuns | None = None  # which CUDA releases the judged driver runs

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for c in data["cells"]:
            c.pop("rank", None)
        return data


def _workarounds(cell: Cell) -> int:
    """Each kind of fix a cell carries (overrides, add-ons, preloads) makes it a worse default."""
    return int(bool(cell.overrides)) + int(bool(cell.addons)) + int(bool(cell.preload))


def _cuda_number(cuda: str) -> int:
    return int(cuda[2:])


def fit_cell(
    matrix: Matrix,
    cell: Cell,
    sm: int | None,
    driver: str | None,
    gpu_problem: str | None,
    *,
    use_audit: bool = True,
    order: int = 0,
) -> CellFit:
    reasons: list[str] = []
    details: list[str] = []
    limited: list[str] = []
    has_lock = locks.lock_path(matrix, cell).is_file()
    if cell.channel == "nightly" and not has_lock:
        where = cell.index.describe() if cell.index else "the PyTorch nightly index"
        reasons.append(f"nightly unreachable: needs {where}, which could not be locked from here")
    if gpu_problem:
        reasons.append(f"driver {driver} predates sm_{sm} (see above)")
    dfit, dwhy = driver_fit(cell.cuda, driver, cell=cell.id)
    details.append(dwhy)
    if dfit == "too-old":
        reasons.append(dwhy)
    elif dfit == "minor-compat":
        limited.append(dwhy)
    kernels = cell_kernels(matrix, cell, sm, use_audit=use_audit)
    kfit, kwhy = kernel_fit(kernels, sm)
    if kernels is None and cell.arch != native_arch():  # never built here: only its wheels' static audit can say
        kwhy = f"its torch's kernels are unknown: no static audit of its {cell.arch} wheels in {MATRIX_REPORT} (a lock that does not install has none; else nox -s matrix -- {cell.id})"
    details.append(kwhy)
    if kfit == "none":
        reasons.append(kwhy)
    elif kfit == "ptx":
        limited.append(kwhy)
    elif kfit == "unknown" and sm is not None and not cell.floating:
        limited.append(kwhy)
    expect = cell.expected(sm)
    if expect.status == "fail":
        reasons.append(f"expected to fail per matrix.toml: {expect.reason}")
    if not has_lock and not cell.floating:
        details.append(f"not locked yet: nox -s lock -- {cell.id}")
    verdict = OUT if reasons else LIMITED if limited else OK
    rank = (dfit != "full", kfit != "sass", _workarounds(cell), -_cuda_number(cell.cuda), order)
    return CellFit(cell.id, verdict, dfit, kfit, tuple(reasons or limited), tuple(details), rank)


# The GPU workflow's committed run (the cells it built on a real GPU, with their suites' outcomes).
GPU_REPORT = Path("reports") / "gpu" / "matrix.json"


def gpu_measurements(path: Path) -> dict[str, list[str]]:
    """What a recorded GPU run measured, per cell of matrix.toml (a Python variant counts for its cell):
    ``measured on NVIDIA H200 (sm_90, driver 580.159.04): stable-cu132-cublas12-py312 as-expected``. Empty where
    there is no such file; an unreadable one is skipped (it is evidence for the report, not needed here)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, list[str]] = {}
    for rec in data.get("cells", []) if isinstance(data, dict) else []:
        gpu = rec.get("gpu") or {}
        if not gpu.get("present"):
            continue
        why = ", ".join((rec.get("observed") or {}).get("reasons") or [])
        line = (
            f"measured on {gpu.get('name')} (sm_{gpu.get('sm')}, driver {gpu.get('driver')}, "
            f"torch CUDA {gpu.get('torch_cuda')}): {rec.get('id')} {rec.get('verdict')}{f' ({why})' if why else ''}"
        )
        for cid in {str(rec.get("id")), re.sub(r"-py\d+$", "", str(rec.get("id")))}:
            out.setdefault(cid, []).append(line)
    return out


def _with_measured(fit: CellFit, measured: Mapping[str, list[str]]) -> CellFit:
    lines = measured.get(fit.cell, [])
    return replace(fit, details=fit.details + tuple(lines)) if lines else fit


def diagnose(
    matrix: Matrix,
    machine: Machine,
    *,
    sm: int | None = None,
    driver: str | None = None,
    use_audit: bool = True,
    platform: str | None = None,
) -> Report:
    """Judge every cell of this machine's platform (``platform``: another one, e.g. ``aarch64`` for a GH200 or a
    DGX Spark) for this machine; ``sm``/``driver`` override what was probed (or stand in for it).
    UnknownCudaError where a cell's CUDA release has no cited driver floor (never a silent pass)."""
    arch = platform or native_arch()
    cells = [c for c in matrix.cells if c.arch == arch]
    for c in cells:
        cuda_floor(c.cuda, c.id)
    probed_sm = next((g.sm for g in machine.gpus if g.sm is not None), None)
    sm = sm if sm is not None else probed_sm
    driver = driver or machine.driver
    cuda = machine.cuda
    gpu_problem = gpu_driver_problem(sm, driver)
    measured = gpu_measurements(matrix.root / GPU_REPORT)
    fits = [
        _with_measured(fit_cell(matrix, c, sm, driver, gpu_problem, use_audit=use_audit, order=i), measured)
        for i, c in enumerate(cells)
    ]
    usable = sorted((f for f in fits if f.verdict != OUT), key=lambda f: f.rank)
    runs = driver_runs(driver)
    if sm is None and driver is None:
        return Report(
            machine,
            sm,
            driver,
            cuda,
            gpu_problem,
            tuple(fits),
            None,
            "no GPU found and none described: give --sm (e.g. 120) and --driver (e.g. 575.51.03)",
            runs,
        )
    if not usable:
        why = gpu_problem or (
            f"no {arch} cell of matrix.toml can run here: "
            + "; ".join(f"{f.cell}: {f.reasons[0]}" for f in fits if f.reasons)
            if fits
            else f"matrix.toml has no {arch} cell"
        )
        if gpu_problem:
            why += f"; upgrade the driver to the {GPU_DRIVER_BRANCH[(sm or 0) // 10][0]} series or later"
        return Report(machine, sm, driver, cuda, gpu_problem, tuple(fits), None, why, runs)
    best = usable[0]
    why = "; ".join(d for d in best.details if not d.startswith("not locked"))
    if best.verdict == LIMITED:
        why += f" (limited: {best.reasons[0]})"
    others = [f.cell for f in usable[1:]]
    if others:
        why += f"; also usable: {', '.join(others)}"
    return Report(machine, sm, driver, cuda, gpu_problem, tuple(fits), best.cell, why, runs)


WORKING_ALIAS = "cu128"  # the working cell, built where no GPU is found (its self-test runs on the CPU)


def choose_cell(
    matrix: Matrix, machine: Machine, *, python_ok: Callable[[str], bool] | None = None, use_audit: bool = False
) -> tuple[Cell, str]:
    """The cell `nox -s env` builds here, and why: the doctor's recommendation for this GPU and driver, or the
    working cell where there is no GPU. A cell whose Python this machine lacks gives way to its variant on a
    Python it has (stable-cu128 -> stable-cu128-py312 on a Python 3.12 machine). FatalError if none can run."""
    from .errors import FatalError

    if not machine.gpus:
        cell = matrix.get(WORKING_ALIAS)
        notes = f" ({'; '.join(machine.notes)})" if machine.notes else ""
        why = f"no NVIDIA GPU found here{notes}: building the working cell, whose self-test runs on the CPU"
    else:
        report = diagnose(matrix, machine, use_audit=use_audit)
        if report.recommended is None:
            raise FatalError(
                f"no cell can run on this machine: {report.why}",
                hint="nox -s doctor shows each cell's reason; nox -s env-<cell> builds one anyway",
            )
        cell = matrix.get(report.recommended)
        why = f"the doctor recommends it for {machine.gpus[0].name} (sm_{machine.gpus[0].sm}), driver {machine.driver}: {report.why}"
    if python_ok is not None and not python_ok(cell.python):
        variants = [c for c in matrix.cells if c.id.startswith(cell.id + "-py") and python_ok(c.python)]
        if variants:
            why += f"; Python {cell.python} is not here, so its Python {variants[0].python} variant"
            cell = variants[0]
    return cell, why


# --- presentation --------------------------------------------------------------------------------------


def _or_unknown(value: Any) -> str:
    return "could not collect" if value is None else str(value)


def format_report(report: Report) -> str:
    m = report.machine
    lines = []
    if m.gpus:
        for g in m.gpus:
            known = known_sm(g.name)
            tag = "" if known is not None else " (not in doctor's GPU table: judged by its compute capability)"
            sm = f"sm_{g.sm}" if g.sm is not None else "compute capability could not be collected"
            lines.append(f"GPU {g.index}: {g.name}, {sm}{tag}")
        lines.append(f"driver {_or_unknown(m.driver)}, supports CUDA up to {_or_unknown(m.cuda)} [via {m.source}]")
    else:
        lines.append("no NVIDIA GPU found")
    for note in m.notes:
        lines.append(f"  note: {note}")
    if report.sm is not None or report.driver is not None:
        sm = f"sm_{report.sm}" if report.sm is not None else "sm unknown"
        lines.append(f"judging for {sm}, driver {_or_unknown(report.driver)}")
    if report.driver_runs:
        lines.append(f"  {report.driver_runs.summary}")
    if report.gpu_problem:
        lines.append(f"  problem: {report.gpu_problem}")
    lines.append("")
    rows = []
    for c in report.cells:
        rows.append([c.cell, c.verdict, c.reasons[0] if c.reasons else c.details[-1]])
        rows += [["", "", f"also: {extra}"] for extra in c.reasons[1:]]
    lines.append(ui.table(["CELL", "FIT", "WHY"], rows, indent=2))
    lines.append("")
    if report.recommended:
        lines.append(f"recommended: {report.recommended}  (nox -s env-{report.recommended})")
        lines.append(f"  why: {report.why}")
    else:
        lines.append(f"recommended: none: {report.why}")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.record:
        for path in record(Path(args.record)):
            print(f"wrote {path}")
        return 0
    from . import matrix as matrices

    machine = collect()
    matrix = matrices.load()
    report = diagnose(
        matrix, machine, sm=args.sm, driver=args.driver, use_audit=not args.no_audit, platform=args.platform
    )
    if (
        machine.gpus
        and report.recommended
        and (py := paths.envs_dir(matrix.root) / report.recommended / "bin" / "python").exists()
    ):
        problem = torch_cuda_problem(py)  # the GPU is listed; can the recommended cell's torch use it?
        if problem:
            report = replace(report, why=f"{report.why}; {problem}")
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="read this machine's GPU and driver, and name the cell to use here")
    p.add_argument("--sm", type=int, help="judge for this compute capability (e.g. 120) instead of the GPU's")
    p.add_argument("--driver", help="judge for this driver version (e.g. 575.51.03) instead of the installed one")
    p.add_argument(
        "--platform",
        choices=("x86_64", "aarch64"),
        help="judge the cells of this platform (default: this machine's): aarch64 for GH200, GB200, Jetson Thor, "
        "DGX Spark",
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--no-audit", action="store_true", help="use the built-in arch table even for built cells")
    p.add_argument(
        "--record",
        metavar="PREFIX",
        help="write raw NVML and nvidia-smi output to PREFIX-nvml.json, PREFIX-smi-query.txt, "
        "PREFIX-smi.txt (test data) and exit",
    )
    p.set_defaults(func=cmd_doctor)

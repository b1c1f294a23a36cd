"""CUDA fatbins: which SASS archs and PTX versions a shared object carries, and whether they run on a GPU.

Layout (read from nvcc 13.0 output and the wheels of torch 2.5-2.11, cuBLAS 12/13, CTranslate2; all little
endian). A fatbin is a 16-byte container header followed by entries:

    container: u32 magic 0xBA55ED50 | u16 version (1) | u16 header size (16) | u64 size of the entries
    entry:     u16 kind (1 PTX, 2 ELF/SASS, 8 LTO IR) | u16 version (0x0101) | u32 header size (>= 64)
               | u64 payload size | u32 compressed size | u32 - | u16 minor | u16 major | u32 arch (e.g. 120)
               | u32 name offset | u32 name size | u64 flags | u64 - | u64 uncompressed size

For PTX entries major.minor is the PTX ISA version (9.0 from CUDA 13.0, 8.7 from CUDA 12.8). Flags seen:
0x1 64-bit, 0x10 Linux, 0x2000 LZ4-compressed (CUDA <= 12), 0x8000 compressed (CUDA 12.8+ new scheme),
0x100000 arch-specific ("sm_90a"), 0x200000 family-specific ("sm_100f", CUDA 12.9+). Only headers are read;
payloads (compressed or not) are skipped by their size, so a 1 GB libtorch_cuda.so costs a few thousand
small reads.

Where they live: the ``.nv_fatbin`` section (one container per translation unit), ``__nv_relfatbin`` in
objects built with relocatable device code, and fatbins embedded as data in other sections (cuBLASLt keeps
most kernels in ``.cask_resource``, cuFFT in ``.ldata``, CUPTI some in ``.rodata``; cuobjdump sees none of
those).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from . import elf

FATBIN_MAGIC = 0xBA55ED50
_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)
# Magic + version 1 + header size 16: the exact prefix searched for inside data sections.
_CONTAINER_PREFIX = _MAGIC_BYTES + struct.pack("<HH", 1, 16)
KNOWN_CONTAINER_VERSIONS = (1,)
KNOWN_ENTRY_VERSIONS = (0x0101,)
ENTRY_HEADER_MIN = 64

# Kind 8 is LTO IR (nvcc -gencode code=lto_90 writes it; cuFFT ships thousands for its LTO callbacks):
# it runs only after nvJitLink links it at run time, so it never counts as loadable code.
KIND_PTX, KIND_ELF, KIND_LTO = 1, 2, 8
_KIND_NAMES = {KIND_PTX: "ptx", KIND_ELF: "sass", KIND_LTO: "lto"}
FLAG_COMPRESSED_LZ4 = 0x2000
FLAG_COMPRESSED = 0x8000
FLAG_ARCH_SPECIFIC = 0x100000  # "a": sm_90a, compute_120a
FLAG_FAMILY_SPECIFIC = 0x200000  # "f": sm_100f, compute_120f

# Sections holding fatbins by construction; other sections are searched for the container prefix.
FATBIN_SECTIONS = (".nv_fatbin", "__nv_relfatbin")
# Data sections where fatbins were found embedded (cuBLASLt's .cask_resource, cuFFT's .ldata, CUPTI's
# .rodata). Searching
# every section would read whole executables' code for nothing.
EMBEDDED_SECTIONS = (".rodata", ".lrodata", ".ldata", ".cask_resource", ".data.rel.ro", ".data")


@dataclass(frozen=True, order=True)
class Arch:
    """A compute capability with its variant: ``Arch(120)``, ``Arch(90, "a")``, ``Arch(100, "f")``."""

    cc: int
    variant: str = ""

    @property
    def major(self) -> int:
        return self.cc // 10

    @property
    def minor(self) -> int:
        return self.cc % 10

    def sm(self) -> str:
        return f"sm_{self.cc}{self.variant}"

    def compute(self) -> str:
        return f"compute_{self.cc}{self.variant}"

    @classmethod
    def parse(cls, text: str | int) -> Arch:
        """``120``, ``"120"``, ``"sm_120"``, ``"12.0"``, ``"sm_90a"``, ``"compute_100f"``."""
        s = str(text).strip().lower()
        for prefix in ("sm_", "compute_", "sm", "lto_"):
            if s.startswith(prefix):
                s = s[len(prefix) :]
                break
        variant = ""
        if s and s[-1] in "af":
            variant, s = s[-1], s[:-1]
        if "." in s:
            major, _, minor = s.partition(".")
            s = f"{int(major)}{int(minor)}"
        if not s.isdigit() or int(s) < 10:
            raise ValueError(f"not a compute capability: {text!r} (try 120, sm_120 or 12.0)")
        return cls(int(s), variant)


def sass_runs_on(code: Arch, target: Arch) -> bool:
    """Does SASS built for ``code`` load on a GPU of compute capability ``target``?

    CUDA C++ Programming Guide, "Binary Compatibility" (and "Feature Availability" for the suffixes):
    a cubin for X.y runs on X.z with z >= y, never on another major version. An arch-specific cubin (``a``)
    runs only on exactly that compute capability. A family-specific cubin (``f``, CUDA 12.9+) runs within
    the family, i.e. the same major with a minor >= its own (sm_100f on 10.0 and 10.3; sm_120f on 12.0 and
    12.1). The target is a physical GPU, so its own variant is ignored.
    """
    if code.variant == "a":
        return code.cc == target.cc
    return code.major == target.major and code.minor <= target.minor


def ptx_jits_on(code: Arch, target: Arch) -> bool:
    """Can the driver JIT PTX for virtual arch ``code`` to a GPU of compute capability ``target``?

    Same guide, "Application Compatibility": PTX for compute_XY compiles for any compute capability >= X.Y,
    across majors. ``compute_XYa`` PTX uses arch-specific features and compiles only for X.Y; ``compute_XYf``
    only within its family (same major, minor >= Y). The driver must also know the PTX ISA version (a driver
    at least as new as the toolkit that wrote it); that is a driver question, reported, not judged here.
    """
    if code.variant == "a":
        return code.cc == target.cc
    if code.variant == "f":
        return code.major == target.major and code.minor <= target.minor
    return code.cc <= target.cc


@dataclass(frozen=True)
class Entry:
    kind: str  # "sass" | "ptx" | "lto" | "kind<N>"
    arch: Arch
    ptx_version: str | None  # "8.7" for PTX entries
    compressed: bool

    @property
    def tag(self) -> str:
        if self.kind == "sass":
            return self.arch.sm()
        if self.kind == "lto":
            return f"lto_{self.arch.cc}{self.arch.variant}"
        return self.arch.compute()

    def runs_on(self, target: Arch) -> bool:
        if self.kind == "sass":
            return sass_runs_on(self.arch, target)
        if self.kind == "ptx":
            return ptx_jits_on(self.arch, target)
        return False  # LTO IR needs nvJitLink at run time, not a plain module load


@dataclass(frozen=True)
class Container:
    section: str
    offset: int  # file offset of the container header
    entries: tuple[Entry, ...]

    @property
    def arch_specific_only(self) -> bool:
        # A module carrying only "a" code (e.g. Hopper-only GEMMs) is gated by its library at run time;
        # it says nothing about whether the library runs elsewhere.
        return bool(self.entries) and all(e.arch.variant == "a" for e in self.entries)

    @property
    def loadable(self) -> bool:
        """Carries SASS or PTX, which a plain module load can use (LTO IR cannot)."""
        return any(e.kind in ("sass", "ptx") for e in self.entries)

    @property
    def one_family(self) -> bool:
        """Only SASS, all of one major version (or only "a" code): a per-GPU kernel module.

        Libraries such as cuBLASLt and cuDNN ship kernels as modules built for one GPU family each and pick
        the module matching the GPU at run time, so a missing module for another family is by design.
        Libraries built for an arch list (torch) put every arch into every module.
        """
        if self.arch_specific_only:
            return True
        return (
            bool(self.entries)
            and all(e.kind == "sass" for e in self.entries)
            and len({e.arch.major for e in self.entries}) == 1
        )

    def runs_on(self, target: Arch) -> bool:
        return any(e.runs_on(target) for e in self.entries)


@dataclass(frozen=True)
class FileFatbins:
    path: Path
    containers: tuple[Container, ...] = ()
    warnings: tuple[str, ...] = ()
    is_elf: bool = True

    @property
    def entries(self) -> list[Entry]:
        return [e for c in self.containers for e in c.entries]


@dataclass
class _Scan:
    buf: mmap.mmap
    size: int
    path: Path
    containers: list[Container] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, msg: str) -> None:
        self.warnings.append(f"{self.path}: {msg}")

    def container_at(self, pos: int, end: int, section: str, strict: bool) -> int | None:
        """Parse the container at ``pos``; return where the next one may start, or None to stop.

        ``strict`` (a fatbin section) warns about anything odd; otherwise (a data section searched for the
        magic) a malformed candidate is a false hit and is skipped quietly.
        """
        buf = self.buf
        if pos + 16 > end:
            if strict:
                self.warn(f"{section}: container header at {pos} cut short (truncated)")
            return None
        _magic, version, hsize, fsize = struct.unpack_from("<IHHQ", buf, pos)
        if version not in KNOWN_CONTAINER_VERSIONS or hsize < 16:
            if strict:
                self.warn(f"{section}: unknown fatbin version {version} (header size {hsize}) at {pos}; skipped")
                nxt = pos + hsize + fsize
                return nxt if hsize >= 16 and nxt <= end else None
            return pos + 4
        stop = pos + hsize + fsize
        if stop > end:
            if strict:
                self.warn(f"{section}: fatbin at {pos} claims {fsize} bytes past the section end (truncated)")
                stop = end
            else:
                return pos + 4
        entries: list[Entry] = []
        off = pos + hsize
        while off < stop:
            if off + ENTRY_HEADER_MIN > stop:
                if strict:
                    self.warn(f"{section}: entry header at {off} cut short (truncated)")
                break
            kind, ever, ehsize, psize = struct.unpack_from("<HHIQ", buf, off)
            minor, major, arch = struct.unpack_from("<HHI", buf, off + 24)
            (flags,) = struct.unpack_from("<Q", buf, off + 40)
            if ehsize < ENTRY_HEADER_MIN or ever not in KNOWN_ENTRY_VERSIONS or arch == 0 or arch > 1000:
                if strict:
                    self.warn(
                        f"{section}: unknown fatbin entry (version {ever:#x}, header {ehsize}, arch {arch}) "
                        f"at {off}; rest of this fatbin skipped"
                    )
                    break
                return pos + 4
            variant = "a" if flags & FLAG_ARCH_SPECIFIC else "f" if flags & FLAG_FAMILY_SPECIFIC else ""
            name = _KIND_NAMES.get(kind, f"kind{kind}")
            entries.append(
                Entry(
                    kind=name,
                    arch=Arch(arch, variant),
                    ptx_version=f"{major}.{minor}" if kind == KIND_PTX else None,
                    compressed=bool(flags & (FLAG_COMPRESSED | FLAG_COMPRESSED_LZ4)),
                )
            )
            off += ehsize + psize
        if off > stop and strict:
            self.warn(f"{section}: last entry of the fatbin at {pos} runs past its end (truncated)")
        if entries or strict:
            self.containers.append(Container(section=section, offset=pos, entries=tuple(entries)))
        return stop

    def fatbin_section(self, sec: elf.Section) -> None:
        end = min(sec.offset + sec.size, self.size)
        if sec.offset + sec.size > self.size:
            self.warn(f"{sec.name}: section runs past the end of the file (truncated)")
        pos = sec.offset
        while pos + 16 <= end:
            if self.buf[pos : pos + 4] != _MAGIC_BYTES:
                # Containers are 8-aligned and padded with zeros; anything else is searched over.
                nxt = self.buf.find(_MAGIC_BYTES, pos, end)
                if nxt < 0:
                    return
                pos = nxt
            after = self.container_at(pos, end, sec.name, strict=True)
            if after is None:
                return
            pos = after

    def data_section(self, sec: elf.Section) -> None:
        end = min(sec.offset + sec.size, self.size)
        pos = sec.offset
        while True:
            pos = self.buf.find(_CONTAINER_PREFIX, pos, end)
            if pos < 0:
                return
            nxt = self.container_at(pos, end, sec.name, strict=False)
            pos = nxt if nxt is not None else pos + 4


def scan(path: Path | str, *, embedded: bool = True) -> FileFatbins:
    """Every fatbin container in one file. Problems become warnings naming the file; nothing raises."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        return FileFatbins(path, warnings=(f"{path}: cannot open: {exc.strerror}",), is_elf=False)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return FileFatbins(path, warnings=(f"{path}: empty file",), is_elf=False)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                secs = elf.sections(buf, file_size=size)
            except (elf.NotElfError, struct.error) as exc:
                return FileFatbins(path, warnings=(f"{path}: not a readable ELF file: {exc}",), is_elf=False)
            state = _Scan(buf=buf, size=size, path=path)
            for sec in secs:
                if not sec.in_file:
                    continue
                if sec.offset >= size:
                    state.warn(f"{sec.name}: section starts past the end of the file (truncated)")
                    continue
                if sec.name in FATBIN_SECTIONS:
                    state.fatbin_section(sec)
                elif embedded and sec.name in EMBEDDED_SECTIONS:
                    state.data_section(sec)
            return FileFatbins(path, containers=tuple(state.containers), warnings=tuple(state.warnings))

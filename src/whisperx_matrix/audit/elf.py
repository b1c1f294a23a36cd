"""Small ELF helpers: the section table (fast, with struct), the dynamic section (pyelftools), sonames in strings.

The fatbin audit reads only the section table of each file, so it uses a hand-written reader (a few hundred
bytes per file); pyelftools builds much more than that and is used where its convenience pays: the dynamic
section, which the closure audit reads once per object.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
SHT_NOBITS = 8


class NotElfError(ValueError):
    """The file is not an ELF object, or its headers are cut short."""


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    offset: int
    size: int

    @property
    def in_file(self) -> bool:
        return self.type != SHT_NOBITS and self.size > 0


def is_elf(path: Path | str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


def sections(buf: mmap.mmap | bytes, *, file_size: int | None = None) -> list[Section]:
    """The section headers of an ELF image in ``buf`` (ELF32/ELF64, either byte order)."""
    size = len(buf) if file_size is None else file_size
    if size < 52 or buf[:4] != ELF_MAGIC:
        raise NotElfError("not an ELF file")
    cls, data = buf[4], buf[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise NotElfError(f"unknown ELF class/data ({cls}/{data})")
    end = "<" if data == 1 else ">"
    if cls == 2:
        if size < 64:
            raise NotElfError("ELF header cut short")
        (shoff,) = struct.unpack_from(end + "Q", buf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", buf, 0x3A)
        shfmt = end + "IIQQQQ"  # name, type, flags, addr, offset, size
    else:
        (shoff,) = struct.unpack_from(end + "I", buf, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", buf, 0x2E)
        shfmt = end + "IIIIII"
    if shoff == 0 or shnum == 0:
        return []
    if shoff + shnum * shentsize > size:
        raise NotElfError(f"section table at {shoff} runs past the end of the file ({size} bytes): truncated")
    raw = [struct.unpack_from(shfmt, buf, shoff + i * shentsize) for i in range(shnum)]
    if shstrndx >= shnum:
        raise NotElfError("bad section-name table index")
    _, _, _, _, str_off, str_size = raw[shstrndx]
    if str_off + str_size > size:
        raise NotElfError("section-name table runs past the end of the file: truncated")
    names = bytes(buf[str_off : str_off + str_size])
    out = []
    for name_off, typ, flags, _addr, off, sz in raw:
        stop = names.find(b"\0", name_off)
        name = names[name_off : stop if stop >= 0 else None].decode("ascii", "replace")
        out.append(Section(name=name, type=typ, flags=flags, offset=off, size=sz))
    return out


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader reads from one object."""

    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    machine: int  # e_machine (62: x86-64)
    elfclass: int  # EI_CLASS: 1 (32-bit), 2 (64-bit)
    nodeflib: bool = False  # DF_1_NODEFLIB: skip ld.so.cache and the default dirs


def dynamic(path: Path | str) -> Dynamic:
    """DT_SONAME, DT_NEEDED, DT_RPATH and DT_RUNPATH of an ELF object."""
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            soname = None
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            nodeflib = False
            for sec in elf.iter_sections():
                if not isinstance(sec, DynamicSection):
                    continue
                for tag in sec.iter_tags():
                    # pyelftools sets .needed/.soname/.rpath/.runpath on a tag by its kind: untyped attributes
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)  # type: ignore[attr-defined]
                    elif kind == "DT_SONAME":
                        soname = tag.soname  # type: ignore[attr-defined]
                    elif kind == "DT_RPATH":
                        rpath.extend(p for p in tag.rpath.split(":") if p)  # type: ignore[attr-defined]
                    elif kind == "DT_RUNPATH":
                        runpath.extend(p for p in tag.runpath.split(":") if p)  # type: ignore[attr-defined]
                    elif kind == "DT_FLAGS_1":
                        nodeflib = bool(tag.entry.d_val & 0x800)
                break
            return Dynamic(
                soname=soname,
                needed=tuple(needed),
                rpath=tuple(rpath),
                runpath=tuple(runpath),
                machine=int.from_bytes(_raw_header(fh)[18:20], "little" if elf.little_endian else "big"),
                elfclass=1 if elf.elfclass == 32 else 2,
                nodeflib=nodeflib,
            )
    except (_PyElfError, struct.error, ValueError) as exc:
        raise NotElfError(str(exc) or "unreadable ELF") from exc


def _raw_header(fh: object) -> bytes:
    fh.seek(0)  # type: ignore[attr-defined]
    return fh.read(20)  # type: ignore[attr-defined]


# lib<name>.so.<N>[.<M>...] as a dlopen argument would spell it; the version part is what makes a soname
# something a package provides (a bare libfoo.so is a development symlink, rarely dlopen'ed in wheels).
_SONAME_RE = re.compile(rb"lib[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*?\.so(?:\.[0-9]+)+(?=\0)")


def soname_strings(path: Path | str) -> set[str]:
    """Sonames spelled as NUL-terminated strings in the read-only data of an object (dlopen candidates)."""
    found: set[str] = set()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return found
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            for sec in sections(buf, file_size=size):
                if sec.name not in (".rodata", ".dynstr") or not sec.in_file:
                    continue
                end = min(sec.offset + sec.size, size)
                for match in _SONAME_RE.finditer(buf, sec.offset, end):
                    found.add(match.group(0).decode("ascii"))
    return found


def iter_files(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` that start with the ELF magic (symlinks skipped: each file once)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                continue
            if ".so" not in name and not _maybe_elf_name(name):
                continue
            if is_elf(full):
                yield Path(full)


def _maybe_elf_name(name: str) -> bool:
    # Executables bundled in wheels (ptxas in triton, cuobjdump) have no suffix; probe only suffix-less
    # names so the walk does not open every .py file.
    return "." not in name

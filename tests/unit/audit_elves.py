"""Real tiny ELF files for the audit tests, made with the machine's compilers (gcc; nvcc where present).

The shared objects are linked with -nostdlib, so they need nothing from the system: a fake tree of them
loads the same in the real dynamic loader as in the audit's model, which the tests compare.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from whisperx_matrix.audit.fatbin import scan

KERNEL = """\
__global__ void add(float* a, float b) { a[threadIdx.x] += b; }
extern "C" void launch(float* a) { add<<<1, 32>>>(a, 1.0f); }
"""


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def build_so(
    dest: Path,
    *,
    soname: str | None = None,
    needed: Sequence[Path] = (),
    rpath: Sequence[str] = (),
    runpath: Sequence[str] = (),
    strings: Sequence[str] = (),
    symbol: str = "f",
) -> Path:
    """A shared object with the given soname, DT_NEEDED (the sonames of ``needed``), RPATH or RUNPATH, and
    NUL-terminated ``strings`` in .rodata (as a dlopen argument would be)."""
    gcc = need("gcc")
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = dest.with_suffix(dest.suffix + ".c")
    body = "".join(f'const char *s{i} = "{s}";\n' for i, s in enumerate(strings))
    src.write_text(body + f"int {symbol}(void) {{ return 1; }}\n", encoding="utf-8")
    cmd = [gcc, "-shared", "-fPIC", "-nostdlib", "-o", str(dest), str(src)]
    if soname:
        cmd.append(f"-Wl,-soname,{soname}")
    if rpath:
        cmd += ["-Wl,--disable-new-dtags", f"-Wl,-rpath,{':'.join(rpath)}"]
    if runpath:
        cmd += ["-Wl,--enable-new-dtags", f"-Wl,-rpath,{':'.join(runpath)}"]
    if needed:
        # Linking a library by path records its DT_SONAME as DT_NEEDED, as a real build does.
        cmd += ["-Wl,--no-as-needed", *map(str, needed)]
    subprocess.run(cmd, check=True, capture_output=True)
    src.unlink()
    return dest


def build_cuda_so(
    dest: Path, gencodes: Sequence[str], *, extra: Sequence[str] = (), compile_only: bool = False
) -> Path:
    """A real fatbin: nvcc with ``-gencode`` options (e.g. ``arch=compute_80,code=sm_80``)."""
    nvcc = need("nvcc")
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = dest.parent / "kernel.cu"
    src.write_text(KERNEL, encoding="utf-8")
    cmd = [nvcc, "-Xcompiler", "-fPIC", *extra, "-o", str(dest), str(src)]
    cmd.insert(1, "-c" if compile_only else "-shared")
    for g in gencodes:
        cmd += ["-gencode", g]
    subprocess.run(cmd, check=True, capture_output=True)
    return dest


def cuobjdump_list(tool: Path, path: Path) -> list[str]:
    """``cuobjdump --list-elf --list-ptx`` as names like "sm_80" (cubin) and "sm_89" (PTX)."""
    out = subprocess.run([str(tool), "--list-elf", "--list-ptx", str(path)], capture_output=True, text=True).stdout
    return re.findall(r"^(?:ELF|PTX) file\s+\d+: .*\.(sm_\d+[af]?)\.(?:cubin|ptx)$", out, re.M)


def as_cuobjdump_names(path: Path) -> list[str]:
    """Our entries named the way cuobjdump names them: PTX as "sm_XY" too, and no "f" on cubins."""
    names = []
    for e in scan(path, embedded=False).entries:  # cuobjdump reads .nv_fatbin only
        if e.kind == "ptx":
            names.append(e.arch.sm())
        elif e.kind == "sass":
            names.append(e.tag.removesuffix("f"))
    return names

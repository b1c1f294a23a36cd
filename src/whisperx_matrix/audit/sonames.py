"""The data the closure audit judges with: libraries loaded by dlopen (invisible to DT_NEEDED and ldd) that the
verdict relies on, which distribution ships which soname, the driver's libraries, and the CUDA major a soname
belongs to. Tables, not logic: add a row here when a new case is measured."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

# Installed by the NVIDIA driver, never by a wheel: a machine without a GPU lacks them legitimately.
DRIVER_SONAMES = ("libcuda.so*", "libnvidia-*.so*", "libnvcuvid.so*", "libcudadebugger.so*", "libnvoptix.so*")


# What a manylinux_2_28 host provides, so a wheel may need it without shipping it: auditwheel's policy for
# manylinux_2_28 (auditwheel 6.8.2, src/auditwheel/policy/manylinux-policy.json, "lib_whitelist"; a unit test
# compares this table with the installed auditwheel's file), plus the ELF interpreter of each machine. The closure
# audit of a foreign platform (aarch64 wheels judged on this x86_64 machine) takes these from the host, since no
# aarch64 system library exists here; on the native platform the real system libraries are searched instead.
MANYLINUX_2_28_HOST = (
    "libatomic.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libm.so.6",
    "libmvec.so.1",
    "libanl.so.1",
    "libdl.so.2",
    "librt.so.1",
    "libc.so.6",
    "libnsl.so.1",
    "libutil.so.1",
    "libpthread.so.0",
    "libX11.so.6",
    "libXext.so.6",
    "libXrender.so.1",
    "libICE.so.6",
    "libSM.so.6",
    "libGL.so.1",
    "libgobject-2.0.so.0",
    "libgthread-2.0.so.0",
    "libglib-2.0.so.0",
    "libresolv.so.2",
    "libexpat.so.1",
    "libz.so.1",
)
INTERPRETERS = {"x86_64": "ld-linux-x86-64.so.2", "aarch64": "ld-linux-aarch64.so.1"}


@dataclass(frozen=True)
class KnownDlopen:
    """Libraries an object loads with dlopen, found in its strings by ``soname_re``; required at run time."""

    file_glob: str  # matched against the object's file name
    soname_re: str
    source: str


KNOWN_DLOPEN: tuple[KnownDlopen, ...] = (
    KnownDlopen(
        "libctranslate2*.so*",
        r"^libcublas\.so\.\d+$",
        "shared/docs/FACTS.md: CTranslate2 4.8.5 (built against CUDA 12.8) loads libcublas.so.12 with dlopen; "
        "on a cu130 stack without nvidia-cublas-cu12 the GPU fails with 'Library libcublas.so.12 is not found "
        "or cannot be loaded' (measured on the H100). libcublas pulls libcublasLt through its own DT_NEEDED.",
    ),
)

# soname pattern -> PyPI distribution(s) that ship it, by CUDA major where the wheel names differ.
# cu12 wheels install into nvidia/<lib>/lib, the cu13 ones into nvidia/cu13/lib.
_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("libcublas.so.12", "nvidia-cublas-cu12"),
    ("libcublasLt.so.12", "nvidia-cublas-cu12"),
    ("libnvblas.so.12", "nvidia-cublas-cu12"),
    ("libcublas.so.13", "nvidia-cublas"),
    ("libcublasLt.so.13", "nvidia-cublas"),
    ("libcudart.so.12", "nvidia-cuda-runtime-cu12"),
    ("libcudart.so.13", "nvidia-cuda-runtime"),
    ("libcupti.so.12", "nvidia-cuda-cupti-cu12"),
    ("libcupti.so.13", "nvidia-cuda-cupti"),
    ("libnvrtc.so.12", "nvidia-cuda-nvrtc-cu12"),
    ("libnvrtc-builtins.so.12.*", "nvidia-cuda-nvrtc-cu12"),
    ("libnvrtc.so.13", "nvidia-cuda-nvrtc"),
    ("libnvrtc-builtins.so.13.*", "nvidia-cuda-nvrtc"),
    ("libnvJitLink.so.12", "nvidia-nvjitlink-cu12"),
    ("libnvJitLink.so.13", "nvidia-nvjitlink"),
    ("libcufft.so.11", "nvidia-cufft-cu12"),
    ("libcufftw.so.11", "nvidia-cufft-cu12"),
    ("libcufft.so.12", "nvidia-cufft"),
    ("libcusolver.so.11", "nvidia-cusolver-cu12"),
    ("libcusolver.so.12", "nvidia-cusolver"),
    ("libcusparse.so.12", "nvidia-cusparse-cu12 (CUDA 12) or nvidia-cusparse (CUDA 13)"),
    ("libcurand.so.10", "nvidia-curand-cu12 (CUDA 12) or nvidia-curand (CUDA 13)"),
    ("libcudnn*.so.9", "nvidia-cudnn-cu12 (CUDA 12) or nvidia-cudnn-cu13 (CUDA 13)"),
    ("libcudnn*.so.8", "nvidia-cudnn-cu12<9 (cuDNN 8)"),
    ("libnccl.so.2", "nvidia-nccl-cu12 (CUDA 12) or nvidia-nccl-cu13 (CUDA 13)"),
    ("libcusparseLt.so.0", "nvidia-cusparselt-cu12 (CUDA 12) or nvidia-cusparselt-cu13 (CUDA 13)"),
    ("libcufile.so.0", "nvidia-cufile-cu12 (CUDA 12) or nvidia-cufile (CUDA 13)"),
    ("libnvToolsExt.so.1", "nvidia-nvtx-cu12"),
    ("libnvshmem_host.so.3", "nvidia-nvshmem-cu12 (CUDA 12) or nvidia-nvshmem-cu13 (CUDA 13)"),
    ("libav*.so.*", "FFmpeg's shared libraries (Debian package ffmpeg / libav*)"),
    ("libsw*.so.*", "FFmpeg's shared libraries (Debian package ffmpeg / libav*)"),
    ("libsndfile.so.1", "libsndfile1 (system) or soundfile's bundled copy"),
    ("libgomp.so.1", "libgomp1 (system)"),
)

# Sonames whose number is the CUDA major they belong to (cu12/cu13 mixing is judged on these).
_CUDA_VERSIONED = re.compile(r"^lib(cudart|cublas|cublasLt|nvblas|cupti|nvrtc|nvJitLink)\.so\.(\d+)$")


def provider(soname: str) -> str | None:
    """The PyPI distribution (or system package) that ships ``soname``, if known."""
    for pattern, dist in _PROVIDERS:
        if fnmatch.fnmatchcase(soname, pattern):
            return dist
    return None


def is_driver(soname: str) -> bool:
    return any(fnmatch.fnmatchcase(soname, p) for p in DRIVER_SONAMES)


def cuda_major(soname: str, path: str | None = None) -> int | None:
    m = _CUDA_VERSIONED.match(soname)
    if m:
        return int(m.group(2))
    if path and "/nvidia/cu13/" in path.replace(os.sep, "/"):
        return 13
    return None


def known_for(basename: str) -> list[KnownDlopen]:
    return [k for k in KNOWN_DLOPEN if fnmatch.fnmatchcase(basename, k.file_glob)]


def wheel_provided(soname: str) -> bool:
    found = provider(soname)
    return found is not None and found.startswith("nvidia-")

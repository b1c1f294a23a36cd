"""Facts about NVIDIA drivers, GPUs and torch builds, each with its source: the doctor judges a machine by them,
and the verdict stage cites them. Data only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CudaDriver:
    """Linux x86_64 driver minimums for one CUDA minor release."""

    cuda: str  # "12.8"
    toolkit_driver: str  # the driver of the toolkit's GA release: everything works
    minor_compat_driver: str  # CUDA minor-version compatibility: runs, with limits (no JIT of newer PTX)


# Source of every row: NVIDIA, "CUDA Toolkit 13.2 - Release Notes" (the GA release's notes,
# docs.nvidia.com/cuda/archive/13.2.0/cuda-toolkit-release-notes/), section 2.2 "CUDA Driver":
# - Table 3 "CUDA Toolkit and Corresponding Driver Versions", column "Toolkit Driver Version", "Linux x86_64
#   Driver Version", the GA row of each release: CUDA 12.4 GA >=550.54.14, 12.6 GA >=560.28.03, 12.8 GA >=570.26,
#   12.9 GA >=575.51.03, 13.0 GA >=580.65.06, 13.1 GA >=590.44.01, 13.2 GA >=595.45.04. (The table lists every
#   earlier release too; the 13.2 Update 2 notes, archive/13.2.2, carry the same rows plus 13.2 Update 1
#   >=595.58.03 and Update 2 >=595.71.05. Updates raise the number; the GA row is the release's floor.)
# - Table 2 "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version Compatibility": 13.x >= 580,
#   12.x >= 525 (the CUDA Compatibility guide, "Minor Version Compatibility", names 525.60.13 for 12.x).
# Under minor-version compatibility an app runs with a limited feature set: the older driver cannot JIT PTX
# written by the newer toolkit ("unsupported toolchain"), so PTX-only kernels, and kernels that the app's own
# NVRTC compiles at run time, may fail. A CUDA release that a cell bundles must have a row here: the doctor
# stops with an error for a cell whose `cuda` has none (a floor is never assumed).
CUDA_DRIVERS_SOURCE = (
    "NVIDIA CUDA Toolkit 13.2 Release Notes, Table 3 'CUDA Toolkit and Corresponding Driver Versions' (Linux "
    "x86_64 Toolkit Driver Version, GA rows) and Table 2 (minimum driver for CUDA minor-version compatibility)"
)
CUDA_DRIVERS: dict[str, CudaDriver] = {
    "cu124": CudaDriver("12.4", "550.54.14", "525.60.13"),
    "cu126": CudaDriver("12.6", "560.28.03", "525.60.13"),
    "cu128": CudaDriver("12.8", "570.26", "525.60.13"),
    "cu129": CudaDriver("12.9", "575.51.03", "525.60.13"),
    "cu130": CudaDriver("13.0", "580.65.06", "580"),
    "cu131": CudaDriver("13.1", "590.44.01", "580"),
    "cu132": CudaDriver("13.2", "595.45.04", "580"),
}

# The first driver branch that knows a GPU family, by compute capability major. Blackwell consumer GPUs
# (GeForce RTX 50, sm_120) and data-centre Blackwell (B200, sm_100) are supported from the R570 branch
# (NVIDIA driver release notes, R570 "new GPUs"); the document's "565+" is wrong: 565 does not list them.
GPU_DRIVER_BRANCH_SOURCE = (
    "NVIDIA Linux driver release notes, R570 branch (January 2025, released with CUDA 12.8): the first branch whose "
    "supported GPUs include Blackwell (B200, GeForce RTX 50); the R565 notes list none"
)
GPU_DRIVER_BRANCH: dict[int, tuple[int, str]] = {
    10: (570, "Blackwell (sm_100) needs the 570 driver series or later"),
    12: (570, "Blackwell consumer GPUs (sm_120, RTX 50) need the 570 driver series or later (not 565)"),
}

# Compute capabilities of GPUs we name in reports (NVIDIA's CUDA GPUs list). Used only when the driver cannot
# report compute_cap (nvidia-smi before R510); any GPU not listed is judged by what the driver reports.
KNOWN_GPUS: dict[str, int] = {
    "Tesla V100": 70,
    "Tesla T4": 75,
    "GeForce GTX 1080": 61,
    "GeForce GTX 1080 Ti": 61,
    "GeForce RTX 2080 Ti": 75,
    "GeForce RTX 3090": 86,
    "GeForce RTX 4090": 89,
    "A100": 80,
    "H100": 90,
    "H200": 90,
    "B200": 100,
    # linux-aarch64 machines (the matrix judges their cells statically: `nox -s doctor -- --platform aarch64`).
    # Jetson Thor was sm_101 in CUDA 12.8-12.9; CUDA 13.0 renamed it sm_110 (CUDA 13.0 release notes).
    "GH200": 90,
    "GB200": 100,
    "Jetson AGX Thor": 110,
    "DGX Spark (GB10)": 121,
    "GeForce RTX 5070": 120,
    "GeForce RTX 5080": 120,
    "GeForce RTX 5090": 120,
}


# torch._C._cuda_getArchFlags() of the PyPI wheels, measured in our built cells (the audit of their
# libtorch_cuda.so agrees; it carries no PTX: the compute_90 PTX in 2.5.1 belongs to the bundled cuSPARSELt).
# torch 2.15.0+cu132 is no built cell yet: its row is the static audit of the wheel's libtorch_cuda.so (the SASS
# entries of its fatbins, "a"/"f" variants included; no PTX), as FACTS.md records it and as re-read here from
# PyPI's torch-2.15.0 x86_64 wheel (torch.version.cuda "13.2"). The cell's own audit will agree once built.
TORCH_ARCHS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("2.5.1", "cu124"): (("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"), ()),
    ("2.7.1", "cu126"): (("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"), ()),
    ("2.8.0", "cu128"): (("sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"), ()),
    ("2.11.0", "cu130"): (("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"), ()),
    ("2.15.0", "cu132"): (
        (
            "sm_75",
            "sm_80",
            "sm_86",
            "sm_89",
            "sm_90",
            "sm_90a",
            "sm_100",
            "sm_100a",
            "sm_103f",
            "sm_120",
            "sm_120a",
            "sm_121a",
        ),
        (),
    ),
}

"""Whether this machine has an NVIDIA GPU, asked of the machine and never of torch (stdlib only: it runs in a
cell's python, in tests/gpu and in the doctor).

``torch.cuda.is_available()`` is False both where there is no GPU and where there is one that torch cannot
initialise (a driver older than the GPU, as an RTX 50 on a pre-570 driver; a broken install). Only the first is a
reason to skip a GPU test; the second is the failure the guide is about, so it must fail, with torch's own error.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from dataclasses import dataclass, field

# The driver's own device nodes and its per-GPU folders (present once the kernel module has found a GPU).
DEVICE_NODES = "/dev/nvidia[0-9]*"
DRIVER_GPUS = "/proc/driver/nvidia/gpus/*"


@dataclass(frozen=True)
class Seen:
    """What showed a GPU (empty: nothing did) and every place that was asked."""

    shown_by: list[str] = field(default_factory=list)
    looked: list[str] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return bool(self.shown_by)

    def describe(self) -> str:
        if self.present:
            return "; ".join(self.shown_by)
        return "no GPU on this machine (looked at: " + ", ".join(self.looked) + ")"


def _smi_listing(timeout: float = 30) -> tuple[list[str], str]:
    """GPU lines of ``nvidia-smi -L`` (UUIDs dropped), and what was asked."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi (not on PATH)"
    try:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi -L ({type(exc).__name__})"
    lines = [re.sub(r"\s*\(UUID:[^)]*\)", "", ln).strip() for ln in proc.stdout.splitlines() if ln.startswith("GPU ")]
    return lines, f"nvidia-smi -L (exit {proc.returncode})"


def driver_signs() -> list[str]:
    """The driver's own signs of a GPU, which need no working driver stack: device nodes and GPU folders."""
    return [
        f"{what} {' '.join(found)}"
        for pattern, what in ((DEVICE_NODES, "device nodes"), (DRIVER_GPUS, "driver GPU folders"))
        if (found := sorted(glob.glob(pattern)))
    ]


def machine_gpus() -> Seen:
    """Every independent sign of an NVIDIA GPU: the device nodes, the driver's GPU folders, ``nvidia-smi -L``."""
    shown = driver_signs()
    lines, asked = _smi_listing()
    if lines:
        shown.append(f"nvidia-smi: {'; '.join(lines)}")
    return Seen(shown, [DEVICE_NODES, DRIVER_GPUS, asked])


def torch_init_error(torch: object) -> str:
    """Why torch cannot use CUDA, in torch's own words: ``torch.cuda.init()`` raises what ``is_available()``
    hides ("Found no NVIDIA driver", "The NVIDIA driver on your system is too old", ...)."""
    try:
        torch.cuda.init()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any error is the answer we want, named with its type
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if not torch.cuda.is_available():  # type: ignore[attr-defined]
        return "torch.cuda.is_available() is False, and torch.cuda.init() raised nothing"
    return ""


def init_failed_reason(error: str) -> str:
    """The reason token of a GPU torch cannot initialise: ``cuda-init-failed:<torch's error, as a slug>``."""
    words = re.sub(r"[^\w.]+", "-", error)[:64].strip("-")
    return f"cuda-init-failed:{words}" if words else "cuda-init-failed"

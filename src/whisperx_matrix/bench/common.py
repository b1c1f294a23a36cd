"""What every benchmark shares: the machine it ran on, portable paths, result files, plot helpers."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import diskuse, paths, tools
from .. import matrix as matrices
from ..errors import FatalError
from ..fsutil import atomic_write_text as atomic_write


def machine_info() -> dict[str, Any]:
    mem_gib = paths.memory_gib()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "cpu": cpu,
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "uv": tools.run([tools.uv_bin(), "--version"]).stdout.strip(),
    }


def _checked(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run a step of a benchmark; a failed step stops the benchmark with its last error line."""
    proc = tools.run(args, env=env, cwd=cwd)
    if not proc.ok:
        raise BenchError(f"{' '.join(map(str, args[:4]))}... failed: {proc.last_error_line()}")


def _timed(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    _checked(args, env=env, cwd=cwd)
    return time.perf_counter() - t0


def _du_bytes(*folders: Path) -> int:
    """Disk use counting each hardlinked file once across the folders given."""
    return sum(p.own_bytes for p in diskuse.measure([(str(f), f) for f in folders]))


def portable(text: str, root: Path) -> str:
    """Results are committed: the checkout, a CI runner's temp folder and the home folder become '.',
    '$RUNNER_TEMP' and '~' (no machine paths)."""
    text = text.replace(str(root.resolve()), ".")
    if os.environ.get("RUNNER_TEMP"):
        text = text.replace(os.environ["RUNNER_TEMP"].rstrip("/"), "$RUNNER_TEMP")
    return text.replace(str(Path.home()), "~")


def _write(kind: str, data: dict[str, Any], results_dir: Path) -> Path:
    from ..secrets import redact

    out = results_dir / f"{kind}-{time.strftime('%Y-%m-%d')}.json"
    root = matrices.find_matrix().parent
    atomic_write(out, portable(redact(json.dumps(data, indent=2)), root) + "\n")
    return out


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and close a figure (every benchmark plot is saved the same way)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _weights_legend(ax: Any, colors: dict[str, str]) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=f"{k} weights") for k, c in colors.items()], fontsize=7, loc="lower right")


class BenchError(FatalError):
    """A step of a benchmark (a venv, an install) failed: the benchmark has no figure to give."""

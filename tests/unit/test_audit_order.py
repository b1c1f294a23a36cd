"""The arch audit's lists come out in one order, whatever the hash seed (they are built from sets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import whisperx_matrix
from whisperx_matrix.audit.arch import _arch_key

# Tags that tied under the old key (compute capability, variant): PTX and LTO IR of one arch, two PTX
# versions of one arch; and a library pair whose package merges them.
SNIPPET = """
import json
from pathlib import Path
from whisperx_matrix.audit.arch import judge_library, judge_packages
from whisperx_matrix.audit.fatbin import Arch, Container, Entry, FileFatbins

def entries(*spec):
    return tuple(Entry(kind, Arch.parse(cc), isa, False) for kind, cc, isa in spec)

a = entries(("lto", "50", None), ("ptx", "50", "8.7"), ("sass", "50", None), ("ptx", "90a", "8.7"),
            ("sass", "90a", None), ("sass", "90", None), ("lto", "90", None), ("ptx", "90", "8.7"))
b = entries(("ptx", "50", "9.0"), ("ptx", "50", "10.0"), ("lto", "120", None), ("ptx", "120", "9.0"),
            ("sass", "120", None), ("sass", "120a", None), ("ptx", "120f", "9.0"))
libs = [judge_library(FileFatbins(Path(n), (Container(".nv_fatbin", 0, e),)), Arch(120), rel=n, package="p 1")
        for n, e in (("a.so", a), ("b.so", b))]
pkg = judge_packages(libs, Arch(120))[0]
print(json.dumps([[lib.sass, lib.ptx] for lib in libs] + [[pkg.sass, pkg.ptx]]))
"""


def _run(seed: str) -> str:
    src = str(Path(whisperx_matrix.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=True)
    return proc.stdout


def test_arch_lists_do_not_depend_on_the_hash_seed() -> None:
    outputs = {seed: _run(seed) for seed in ("0", "1", "2", "3", "42", "12345")}
    assert len(set(outputs.values())) == 1, outputs


def test_arch_key_is_a_total_order() -> None:
    tags = ["lto_50", "compute_50 (PTX 10.0)", "compute_50 (PTX 8.7)", "sm_50", "sm_90a", "sm_90", "compute_90"]
    assert sorted(tags, key=_arch_key) == [
        "sm_50",
        "compute_50 (PTX 8.7)",
        "compute_50 (PTX 10.0)",
        "lto_50",
        "sm_90",
        "compute_90",
        "sm_90a",
    ]
    assert len({_arch_key(t) for t in tags}) == len(tags)

"""Pure logic of the audits: the compatibility rule, module coverage, the tables. No files, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperx_matrix.audit.arch import NO_GPU_CODE, NOT_RUNNABLE, PARTIAL, RUNNABLE, judge_library, judge_packages
from whisperx_matrix.audit.closure import read_preload
from whisperx_matrix.audit.fatbin import Arch, Container, Entry, FileFatbins, ptx_jits_on, sass_runs_on
from whisperx_matrix.audit.loader import SearchEnv, expand, parse_ldconfig, split_path_list
from whisperx_matrix.audit.sonames import cuda_major, is_driver, provider

SM120, SM121, SM90, SM89, SM100, SM103, SM86 = (Arch(x) for x in (120, 121, 90, 89, 100, 103, 86))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("120", Arch(120)),
        (120, Arch(120)),
        ("sm_120", Arch(120)),
        ("12.0", Arch(120)),
        ("sm_90a", Arch(90, "a")),
        ("compute_100f", Arch(100, "f")),
        ("8.9", Arch(89)),
        ("SM_86", Arch(86)),
    ],
)
def test_arch_parse(text: str | int, want: Arch) -> None:
    assert Arch.parse(text) == want


@pytest.mark.parametrize("bad", ["", "sm_", "abc", "5", "sm_x0"])
def test_arch_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        Arch.parse(bad)


# (code, target, SASS runs?, PTX JITs?) -- CUDA C++ Programming Guide, "Binary Compatibility",
# "Application Compatibility" and "Feature Availability" (arch- and family-specific suffixes).
TRUTH = [
    (Arch(120), SM120, True, True),
    (Arch(120), SM121, True, True),  # same major, higher minor
    (Arch(121), SM120, False, False),  # never to a lower minor
    (Arch(90), SM120, False, True),  # SASS never across majors; PTX JITs forward
    (Arch(86), SM89, True, True),
    (Arch(89), SM86, False, False),
    (Arch(80), SM86, True, True),
    (Arch(100), SM120, False, True),  # Blackwell datacenter SASS is not consumer Blackwell
    (Arch(100), SM103, True, True),
    (Arch(90, "a"), SM90, True, True),  # arch-specific: exactly that GPU
    (Arch(90, "a"), SM120, False, False),
    (Arch(120, "a"), SM121, False, False),
    (Arch(100, "f"), SM103, True, True),  # family-specific: same major, minor >= own
    (Arch(100, "f"), SM120, False, False),
    (Arch(120, "f"), SM121, True, True),
    (Arch(52), SM120, False, True),
    (Arch(130), SM120, False, False),  # newer than the GPU: nothing
]


@pytest.mark.parametrize(
    ("code", "target", "sass", "ptx"), TRUTH, ids=[f"{c.sm()}-on-{t.sm()}" for c, t, _, _ in TRUTH]
)
def test_compatibility_truth_table(code: Arch, target: Arch, sass: bool, ptx: bool) -> None:
    assert sass_runs_on(code, target) is sass
    assert ptx_jits_on(code, target) is ptx


def _sass(*ccs: str) -> tuple[Entry, ...]:
    return tuple(Entry("sass", Arch.parse(c), None, True) for c in ccs)


def _ptx(cc: str, isa: str = "8.7") -> Entry:
    return Entry("ptx", Arch.parse(cc), isa, True)


def _lib(*containers: tuple[Entry, ...]) -> FileFatbins:
    return FileFatbins(Path("lib.so"), tuple(Container(".nv_fatbin", i * 64, c) for i, c in enumerate(containers)))


def test_library_runs_only_if_every_module_has_an_image() -> None:
    torch25 = _lib(*[_sass("50", "60", "70", "75", "80", "86", "90")] * 3)
    got = judge_library(torch25, SM120, rel="torch/lib/libtorch_cuda.so", package="torch 2.5.1")
    assert (got.status, got.runnable, got.uncovered, got.reason) == (NOT_RUNNABLE, False, 3, "arch-unsupported:sm_120")
    assert got.sass == ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
    assert judge_library(torch25, SM89, rel="x", package="p").status == RUNNABLE


def test_ptx_makes_a_library_runnable_by_jit() -> None:
    ct2 = _lib(_sass("53", "70", "80", "86") + (_ptx("86"),))
    got = judge_library(ct2, SM120, rel="x", package="ctranslate2")
    assert (got.status, got.via) == (RUNNABLE, "ptx-jit")
    assert got.ptx == ("compute_86 (PTX 8.7)",)
    assert judge_library(ct2, SM86, rel="x", package="ctranslate2").via == "sass"


def test_per_family_modules_do_not_count_against_a_library() -> None:
    # cuBLASLt-like: portable modules plus modules built for one family each (picked at run time).
    lt = _lib(_sass("80", "90", "120"), _sass("90a"), _sass("80", "86"), _sass("100"))
    assert judge_library(lt, SM120, rel="x", package="p").status == RUNNABLE
    # ... but a library made only of such modules is judged on all of them.
    only = _lib(_sass("86"), _sass("80", "86"))
    assert judge_library(only, SM120, rel="x", package="p").status == NOT_RUNNABLE


def test_partial_library_is_flagged_but_runnable() -> None:
    mixed = _lib(_sass("80", "90", "120"), _sass("80", "90"))
    got = judge_library(mixed, SM120, rel="x", package="p")
    assert (got.status, got.runnable, got.uncovered, got.containers) == (PARTIAL, True, 1, 2)


def test_lto_only_is_no_loadable_code() -> None:
    lto = _lib((Entry("lto", Arch(90), None, False),))
    got = judge_library(lto, SM120, rel="x", package="p")
    assert got.status == NO_GPU_CODE and got.ptx == ("lto_90",)


def test_no_fatbin_is_no_gpu_code() -> None:
    assert judge_library(FileFatbins(Path("x")), SM120, rel="x", package="p").status == NO_GPU_CODE


def test_package_takes_its_worst_library() -> None:
    libs = [
        judge_library(_lib(_sass("80", "120")), SM120, rel="a", package="torch 2.8.0"),
        judge_library(_lib(_sass("80", "90")), SM120, rel="b", package="torch 2.8.0"),
        judge_library(FileFatbins(Path("c")), SM120, rel="c", package="numpy 2.0"),
    ]
    pkgs = {p.package: p for p in judge_packages(libs, SM120)}
    assert pkgs["torch 2.8.0"].status == NOT_RUNNABLE and pkgs["torch 2.8.0"].libraries == ("a", "b")
    assert pkgs["numpy 2.0"].status == NO_GPU_CODE and pkgs["numpy 2.0"].runnable


def test_a_profilers_kernels_never_decide_whether_a_cell_runs() -> None:
    """CUPTI is loaded by torch at start, but its kernels run only under a profiler: an nvidia-cuda-cupti without
    an sm_120 image is shown as such and does not make the cell not-runnable; torch's own libraries still do."""
    from whisperx_matrix.audit.arch import ArchAudit
    from whisperx_matrix.audit.report import format_arch

    cupti = judge_library(
        _lib(_sass("50", "90")),
        SM120,
        rel="nvidia/cuda_cupti/lib/libcupti.so.12",
        package="nvidia-cuda-cupti-cu12 12.4",
    )
    torch_ok = judge_library(_lib(_sass("90", "120")), SM120, rel="torch/lib/libtorch_cuda.so", package="torch 2.8.0")
    pkgs = {p.package: p for p in judge_packages([cupti, torch_ok], SM120)}
    assert pkgs["nvidia-cuda-cupti-cu12 12.4"].profiling_only and not pkgs["nvidia-cuda-cupti-cu12 12.4"].runnable
    assert not pkgs["torch 2.8.0"].profiling_only
    # triton's shape: a bundled CUPTI beside its own GPU code; only the latter decides the package.
    own = judge_library(_lib(_sass("90", "120")), SM120, rel="triton/_C/libtriton.so", package="triton 3.4.0")
    bundled = judge_library(
        _lib(_sass("50")), SM120, rel="triton/backends/nvidia/lib/cupti/libcupti.so.12", package="triton 3.4.0"
    )
    (triton,) = judge_packages([own, bundled], SM120)
    assert triton.runnable and not triton.profiling_only
    # triton 3.2's shape (torch 2.6's): no GPU code of its own, only the bundled CUPTI: shown as it is, never deciding.
    plain = judge_library(FileFatbins(Path("x")), SM120, rel="triton/_C/libtriton.so", package="triton 3.4.0")
    (only_cupti,) = judge_packages([plain, bundled], SM120)
    assert only_cupti.profiling_only and only_cupti.status == NOT_RUNNABLE
    audit = ArchAudit("site", "sm_120", True, None, tuple(pkgs.values()), (cupti, torch_ok), (), 2, 0.0)
    assert "not-runnable (profiler only)" in format_arch(audit)


def test_package_row_says_which_library_each_arch_comes_from() -> None:
    """torch 2.5.1's shape: its own kernels are SASS only; the PTX in the package total is the bundled
    cuSPARSELt's. The package row lists both, and its origins say which is which."""
    from whisperx_matrix.audit.arch import ArchAudit
    from whisperx_matrix.audit.report import format_arch

    own = judge_library(_lib(_sass("50", "90")), SM120, rel="torch/lib/libtorch_cuda.so", package="torch 2.5.1")
    bundled = judge_library(
        _lib(_sass("90") + (_ptx("52"), _ptx("90"))), SM120, rel="torch/lib/libcusparseLt.so.0", package="torch 2.5.1"
    )
    (pkg,) = judge_packages([own, bundled], SM120)
    assert pkg.ptx == ("compute_52 (PTX 8.7)", "compute_90 (PTX 8.7)") and own.ptx == ()
    assert pkg.origins == (
        (("torch/lib/libtorch_cuda.so",), ("sm_50",)),
        (("torch/lib/libcusparseLt.so.0",), ("compute_52 (PTX 8.7)", "compute_90 (PTX 8.7)")),
        (("torch/lib/libcusparseLt.so.0", "torch/lib/libtorch_cuda.so"), ("sm_90",)),
    )
    audit = ArchAudit("site", "sm_120", False, None, (pkg,), (own, bundled), (), 2, 0.0)
    text = format_arch(audit)
    assert "compute_52/8.7 compute_90/8.7  <- libcusparseLt.so.0" in text and "sm_50  <- libtorch_cuda.so" in text


def test_soname_tables() -> None:
    assert provider("libcublas.so.12") == "nvidia-cublas-cu12"
    assert provider("libcublas.so.13") == "nvidia-cublas"
    assert provider("libcupti.so.13") == "nvidia-cuda-cupti"
    assert provider("libcudnn_ops.so.9").startswith("nvidia-cudnn-cu12")
    assert provider("libfoo.so.1") is None
    assert is_driver("libcuda.so.1") and is_driver("libnvidia-ml.so.1") and not is_driver("libcudart.so.12")
    assert cuda_major("libcudart.so.13") == 13 and cuda_major("libcublasLt.so.12") == 12
    assert cuda_major("libcusparse.so.12", "site/nvidia/cu13/lib/libcusparse.so.12") == 13
    assert cuda_major("libcusparse.so.12") is None  # cusparse 12 exists in both CUDA 12 and 13


def test_ldconfig_parsing_keeps_64bit_entries_in_cache_order() -> None:
    text = (
        "3 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
        "\tlibz.so.1 (libc6) => /lib/i386-linux-gnu/libz.so.1\n"
        "\tlibz.so.1 (libc6,x86-64) => /usr/local/lib/libz.so.1\n"
    )
    assert parse_ldconfig(text) == {"libz.so.1": "/lib/x86_64-linux-gnu/libz.so.1"}


def test_dynamic_string_tokens() -> None:
    env = SearchEnv(lib="lib64", platform="x86_64")
    assert expand("$ORIGIN/../lib", "/a/b", env) == "/a/b/../lib"
    assert expand("${ORIGIN}/x/$LIB/$PLATFORM", "/o", env) == "/o/x/lib64/x86_64"
    assert split_path_list("/a::/b:") == ("/a", "/b")


def test_read_preload_from_the_build_module(tmp_path: Path) -> None:
    (tmp_path / "whisperx_matrix_preload.py").write_text(
        "import ctypes, os\nLOADED, ERRORS = [], {}\nfor _rel in ['nvidia/cublas/lib/libcublas.so.12']:\n    pass\n",
        encoding="utf-8",
    )
    assert read_preload(tmp_path) == [tmp_path / "nvidia/cublas/lib/libcublas.so.12"]
    assert read_preload(tmp_path / "nowhere") == []


def test_compare_with_torch_arch_flags() -> None:
    from whisperx_matrix.audit.arch import compare_torch

    lib = judge_library(
        _lib(_sass("80", "89", "120"), _sass("80", "120", "90a")), SM120, rel="torch/lib/libtorch_cuda.so", package="t"
    )
    notes = compare_torch(["sm_80", "sm_90", "sm_120"], [lib])
    assert notes[0] == "torch._C._cuda_getArchFlags(): sm_80 sm_90 sm_120"
    assert "declared by torch but absent from torch/lib/libtorch_cuda.so: sm_90" in notes
    assert "in torch/lib/libtorch_cuda.so but not declared by torch: sm_89" in notes  # "a" extras are expected
    assert compare_torch([], [lib]) == ["torch._C._cuda_getArchFlags(): (none: a CPU build)"]

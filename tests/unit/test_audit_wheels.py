"""The audits on real wheels from the package index (downloaded once into the shared cache).

What the wheels really hold, as found by these tests (November 2026, PyPI's default Linux x86_64 wheels):

- torch 2.5.1 (cu124): libtorch_cuda.so has 340 fatbin modules, each with SASS sm_50 sm_60 sm_70 sm_75 sm_80
  sm_86 sm_90 (one module adds sm_90a), LZ4-compressed, and no PTX at all. Nothing runs on sm_120: no
  SASS of major 12 and no PTX for the driver to JIT.
- torch 2.7.1 (cu126): the same arch list (sm_50 ... sm_90, sm_89 in 2 modules, sm_90a in 3), no PTX:
  not runnable on sm_120 either. PyPI's 2.7.1 is the cu126 build; sm_120 came with the cu128 builds.
- torch 2.8.0 (cu128): every one of its 393 modules has sm_70 sm_75 sm_80 sm_86 sm_90 sm_100 sm_120 SASS
  (a few add sm_89/sm_90a/sm_100a/sm_120a); no PTX.
- torch 2.11.0 (cu130): every module has sm_75 sm_80 sm_86 sm_90 sm_100 sm_120; no PTX in libtorch_cuda.so.
- ctranslate2 4.8.5: libctranslate2 has SASS sm_53 ... sm_86 and compute_86 PTX (ISA 8.7, CUDA 12.8), so
  sm_90 and sm_120 run it only through the driver's JIT. It names libcublas.so.12 in its strings (dlopen)
  and has no CUDA library in DT_NEEDED.
- torch 2.11.0's libtorch_cpu.so needs libcupti.so.13 (DT_NEEDED) and finds it through its RPATH
  $ORIGIN/../../nvidia/cu13/lib, where nvidia-cuda-cupti 13.0.85 (pulled by cuda-toolkit[cupti]==13.0.2)
  puts it. So "libcupti.so.13 missing" happens only when that wheel is absent; with torch's own
  dependencies installed it resolves. The cu12/cu13 failure of today is libcublas.so.12 (ctranslate2).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest
import wheelcache
from audit_elves import as_cuobjdump_names, cuobjdump_list

from whisperx_matrix.audit import audit_arch, bench_audit, scan
from whisperx_matrix.audit.closure import audit_closure
from whisperx_matrix.audit.fatbin import Arch
from whisperx_matrix.audit.loader import SearchEnv

pytestmark = pytest.mark.network

SOS = ("*.so", "*.so.*")
TORCH_CUDA = ("torch/lib/*.so*", "torch/_C*.so")


def torch_lib(version: str, name: str = "libtorch_cuda.so") -> Path:
    return wheelcache.installed(f"torch=={version}") / "torch" / "lib" / name


def in_every_module(path: Path) -> set[str]:
    """Arch tags present in every fatbin module of a library."""
    sets = [{e.tag for e in c.entries} for c in scan(path).containers]
    return set.intersection(*sets) if sets else set()


def all_tags(path: Path) -> set[str]:
    return {e.tag for e in scan(path).entries}


@functools.cache
def _judge(version: str, sm: int) -> tuple[str, bool, str]:
    root = torch_lib(version).parent.parent.parent
    audit = audit_arch(root, sm, files=[torch_lib(version)])
    lib = audit.libraries[0]
    return lib.status, lib.runnable, lib.via


def test_torch_251_cu124_cannot_run_on_sm120() -> None:
    """torch 2.5.1: SASS sm_50..sm_90 in every module, no PTX at all -> arch-unsupported:sm_120."""
    lib = torch_lib("2.5.1")
    assert in_every_module(lib) == {"sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"}
    tags = all_tags(lib)
    assert not any(t.startswith("sm_12") for t in tags)
    assert not any(t.startswith("compute_") for t in tags)  # no PTX that could JIT
    assert all(e.compressed for e in scan(lib).entries)
    assert _judge("2.5.1", 120)[:2] == ("not-runnable", False)
    assert _judge("2.5.1", 90)[:2] == ("runnable", True)
    root = lib.parent.parent.parent
    audit = audit_arch(root, 120, files=[lib])
    assert audit.reason == "arch-unsupported:sm_120" and not audit.runnable


def test_option1_torch_package_ptx_is_the_bundled_cusparselt_s() -> None:
    """The option-1 torch (2.5.1): the package row lists PTX compute_52..compute_90 while libtorch_cuda.so has
    none. Both are true; the origins say the PTX is cuSPARSELt's, so the row and the claim's evidence agree."""
    lib_dir = torch_lib("2.5.1").parent
    root = lib_dir.parent.parent
    audit = audit_arch(root, 120, files=sorted(lib_dir.glob("*.so*")))
    (torch,) = [p for p in audit.packages if p.package == "torch 2.5.1"]
    assert torch.ptx and all(t.startswith("compute_") for t in torch.ptx)
    ptx_from = {lib for libs, tags in torch.origins for lib in libs if any(t.startswith("compute_") for t in tags)}
    assert len(ptx_from) == 1 and next(iter(ptx_from)).startswith("torch/lib/libcusparseLt")
    cuda = next(lib for lib in audit.libraries if lib.path == "torch/lib/libtorch_cuda.so")
    assert cuda.ptx == ()
    from whisperx_matrix.audit.report import format_arch

    assert "<- libcusparseLt" in format_arch(audit)


def test_torch_271_cu126_has_no_sm120() -> None:
    """torch 2.7.1 from PyPI is the cu126 build: sm_50..sm_90, no PTX; not runnable on sm_120."""
    lib = torch_lib("2.7.1")
    assert in_every_module(lib) == {"sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"}
    assert {"sm_89", "sm_90a"} <= all_tags(lib)
    assert not any(t.startswith(("sm_12", "compute_")) for t in all_tags(lib))
    assert _judge("2.7.1", 120)[:2] == ("not-runnable", False)


def test_torch_280_cu128_has_sm120() -> None:
    lib = torch_lib("2.8.0")
    assert in_every_module(lib) == {"sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"}
    assert _judge("2.8.0", 120) == ("runnable", True, "sass")
    assert _judge("2.8.0", 121) == ("runnable", True, "sass")  # sm_120 SASS runs on 12.1


def test_torch_2110_cu130_arch_list() -> None:
    lib = torch_lib("2.11.0")
    assert in_every_module(lib) == {"sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"}
    assert _judge("2.11.0", 120) == ("runnable", True, "sass")
    assert _judge("2.11.0", 70)[:2] == ("not-runnable", False)


def test_ctranslate2_485_runs_on_sm120_through_ptx_only() -> None:
    root = wheelcache.installed("ctranslate2==4.8.5")
    audit = audit_arch(root, 120)
    (pkg,) = [p for p in audit.packages if p.package == "ctranslate2 4.8.5"]
    assert (pkg.status, pkg.via) == ("runnable", "ptx-jit")
    assert pkg.ptx == ("compute_86 (PTX 8.7)",)
    assert not any(s.startswith(("sm_9", "sm_12")) for s in pkg.sass)
    assert audit_arch(root, 86).packages[0].via in ("sass", "")  # SASS where it was built for


def _cu130_tree(tmp_path: Path, *extra: str) -> Path:
    wheels = {"ctranslate2==4.8.5": SOS, "nvidia-cublas==13.1.0.3.*": SOS}
    wheels.update({spec: SOS for spec in extra})
    return wheelcache.site_from(tmp_path / "site", wheels)


def test_ctranslate2_wants_cublas12_and_cu13_tree_lacks_it(tmp_path: Path) -> None:
    site = _cu130_tree(tmp_path)
    audit = audit_closure(site)
    assert not audit.runnable and audit.reason == "missing-soname:libcublas.so.12"
    (miss,) = audit.process.missing
    assert (miss.how, miss.provider) == ("dlopen", "nvidia-cublas-cu12")
    assert miss.wanted_by.startswith("ctranslate2.libs/libctranslate2-")
    assert miss.describe().endswith("<- install nvidia-cublas-cu12")


def test_cublas_cu12_wheel_resolves_it_when_preloaded(tmp_path: Path) -> None:
    """The cu12 wheel alone is not enough: nothing on ctranslate2's search path leads to nvidia/cublas/lib.
    The matrix's preload .pth (or LD_LIBRARY_PATH) is what makes it resolve."""
    site = _cu130_tree(tmp_path, "nvidia-cublas-cu12==12.8.4.1")
    cublas12 = site / "nvidia" / "cublas" / "lib" / "libcublas.so.12"
    plain = audit_closure(site, ld_library_path=str(cublas12.parent))
    assert plain.missing == ("libcublas.so.12",)
    assert plain.process.missing[0].present_at == ("nvidia/cublas/lib/libcublas.so.12",)
    assert plain.process_with_env is not None and plain.process_with_env.runnable
    assert plain.depends_on_ld_library_path is True
    preloaded = audit_closure(site, preload=[cublas12])
    assert preloaded.runnable and preloaded.reason is None
    assert {"libcublas.so.12", "libcublasLt.so.12"} <= {i.soname for i in preloaded.process.loaded}


def test_torch_2110_needs_libcupti13_and_the_cu13_wheel_provides_it(tmp_path: Path) -> None:
    base = {"torch==2.11.0": TORCH_CUDA, "nvidia-cuda-runtime==13.0.96.*": SOS}
    with_cupti = wheelcache.site_from(tmp_path / "with", {**base, "nvidia-cuda-cupti==13.0.85.*": SOS})
    without = wheelcache.site_from(tmp_path / "without", base)
    cpu = Path("torch/lib/libtorch_cpu.so")
    from whisperx_matrix.audit import elf

    assert "libcupti.so.13" in elf.dynamic(with_cupti / cpu).needed
    # This machine's ld.so.cache lists a CUDA 13 toolkit: keep the system's libc, not its CUDA.
    system = SearchEnv.system(None)
    env = SearchEnv(cache={k: v for k, v in system.cache.items() if "cuda" not in v}, default_dirs=system.default_dirs)
    ok = audit_closure(with_cupti, entries=[with_cupti / cpu], preload=[], env=env)
    assert ok.runnable, [m.describe() for m in ok.process.missing]
    loaded = {i.soname: i.path for i in ok.process.loaded}
    assert loaded["libcupti.so.13"] == "nvidia/cu13/lib/libcupti.so.13"
    assert not ok.process.from_system
    bad = audit_closure(without, entries=[without / cpu], preload=[], env=env)
    assert bad.missing == ("libcupti.so.13",)
    assert bad.process.missing[0].provider == "nvidia-cuda-cupti"
    # With the machine's cache, the toolkit's copy would stand in: the audit says so.
    lent = audit_closure(without, entries=[without / cpu], preload=[], env=system)
    if "libcupti.so.13" in system.cache:
        assert lent.runnable and any("libcupti.so.13" in p for p in lent.process.from_system)


def test_cuobjdump_agrees_on_real_wheels() -> None:
    tool = wheelcache.cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump")
    ct2 = next((wheelcache.installed("ctranslate2==4.8.5") / "ctranslate2.libs").glob("libctranslate2-*"))
    for lib in (ct2, torch_lib("2.5.1")):
        assert sorted(as_cuobjdump_names(lib)) == sorted(cuobjdump_list(tool, lib)), lib.name


def test_bench_against_cuobjdump() -> None:
    tool = wheelcache.cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump")
    result = bench_audit(library=torch_lib("2.8.0"), cuobjdump=tool, repeat=1, warmup=False)
    lib = result["library"]
    assert lib["audit_s"] < 0.5
    assert lib["speedup"] >= 5, lib  # the bar; measured ~400x here (0.03 s against 11 s)


def test_search_env_of_this_machine_finds_libc() -> None:
    env = SearchEnv.system(None)
    assert env.ld_library_path == ()
    assert "libc.so.6" in env.cache or any(Path(d, "libc.so.6").exists() for d in env.default_dirs)
    assert Arch.parse(120).sm() == "sm_120"
    assert subprocess.run(["true"]).returncode == 0

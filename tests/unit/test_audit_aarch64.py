"""linux-aarch64 wheels judged on this x86_64 machine (#25): real aarch64 wheels from the package index, audited
statically. No aarch64 system library exists here, so the loader of an aarch64 host is modelled: its system
libraries come from the manylinux_2_28 policy (auditwheel's own file), and none of this machine's libraries can
load into an aarch64 process (ld.so skips another machine's objects)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import wheelcache
from audit_elves import as_cuobjdump_names, cuobjdump_list

from whisperx_matrix.audit import audit_arch, audit_closure
from whisperx_matrix.audit.loader import SearchEnv
from whisperx_matrix.audit.sonames import INTERPRETERS, MANYLINUX_2_28_HOST

AARCH64 = "aarch64-manylinux_2_28"


def test_the_host_table_is_auditwheels_manylinux_2_28_policy() -> None:
    """sonames.MANYLINUX_2_28_HOST is a copy of auditwheel's policy (the tool that decides what a manylinux wheel
    may leave to the host): this keeps the copy honest whenever auditwheel is installed (the test extra has it)."""
    policy = json.loads(resources.files("auditwheel").joinpath("policy", "manylinux-policy.json").read_text())
    [entry] = [p for p in policy if p["name"] == "manylinux_2_28"]
    assert sorted(MANYLINUX_2_28_HOST) == sorted(entry["lib_whitelist"])
    assert "aarch64" in entry["symbol_versions"] and INTERPRETERS["aarch64"] == "ld-linux-aarch64.so.1"


@pytest.mark.network
def test_the_closure_of_a_real_aarch64_library_resolves_with_an_aarch64_hosts_loader() -> None:
    """CTranslate2 4.8.5's aarch64 wheel: its extension needs its own bundled libraries (found through its RPATH)
    and the host's libc, libstdc++, libgomp's peers and the aarch64 interpreter. With the aarch64 host's loader
    the closure resolves; with this machine's (x86_64) loader, the same tree lacks libc.so.6, since ld.so skips
    objects of another machine, which is why a foreign platform needs its own loader model."""
    site = wheelcache.installed("ctranslate2==4.8.5", platform=AARCH64)
    entry = next((site / "ctranslate2").glob("_ext.cpython-*-aarch64-linux-gnu.so"))
    foreign = audit_closure(site, entries=[entry], preload=[], env=SearchEnv.foreign("aarch64"), progress=False)
    assert foreign.runnable, foreign.missing
    loaded = {item.soname for item in foreign.process.loaded}
    assert any(s.startswith("libctranslate2-") for s in loaded) and any(s.startswith("libgomp-") for s in loaded)
    assert {"libc.so.6", "libstdc++.so.6", "ld-linux-aarch64.so.1"} <= set(foreign.process.from_host)
    assert not any(item.path.startswith("/") for item in foreign.process.loaded)  # nothing of this machine's
    here = audit_closure(site, entries=[entry], preload=[], env=SearchEnv.system(None), progress=False)
    assert "libc.so.6" in here.missing


@pytest.mark.network
def test_ctranslate2s_aarch64_wheel_carries_no_gpu_code_and_its_x86_64_wheel_does() -> None:
    """The arch audit names an installed GPU-stack package whose libraries carry no fatbin at all: CTranslate2
    4.8.5 for aarch64 is a CPU-only build (device="cuda" cannot work on any ARM GPU), for x86_64 it is not."""
    arm = audit_arch(wheelcache.installed("ctranslate2==4.8.5", platform=AARCH64), 90, progress=False)
    assert arm.cpu_only == ("ctranslate2",) and [p.status for p in arm.packages] == ["no-gpu-code"]
    x86 = audit_arch(wheelcache.installed("ctranslate2==4.8.5"), 90, progress=False)
    assert x86.cpu_only == () and [p.package.split()[0] for p in x86.packages] == ["ctranslate2"]


def test_a_foreign_loader_searches_no_folder_of_this_machine() -> None:
    env = SearchEnv.foreign("aarch64")
    assert env.default_dirs == () and not env.cache and env.platform == "aarch64" and env.lib == "lib"
    assert "ld-linux-aarch64.so.1" in env.host and "libcublas.so.12" not in env.host


@pytest.mark.network
@pytest.mark.slow  # cuobjdump reads the 0.5 GB library in about 6 s
def test_the_fatbin_audit_agrees_with_cuobjdump_on_torchs_aarch64_library() -> None:
    """The kernels the aarch64 cells are judged by (torch 2.15.0's libtorch_cuda.so for linux-aarch64, the wheel
    the stable-cu132 aarch64 locks take), read by NVIDIA's own cuobjdump: the same cubins and PTX, by name."""
    tool = wheelcache.cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (neither on PATH nor from the nvidia-cuda-cuobjdump wheel)")
    lib = wheelcache.installed("torch==2.15.0", platform=AARCH64) / "torch" / "lib" / "libtorch_cuda.so"
    ours = as_cuobjdump_names(lib)
    assert ours and sorted(ours) == sorted(cuobjdump_list(tool, lib))
    assert {"sm_90", "sm_100", "sm_110", "sm_121a"} <= set(ours)  # GH200, GB200, Jetson Thor, DGX Spark


def test_a_build_that_only_opens_cublas_is_not_cpu_only(tmp_path: Path) -> None:
    """No kernels of its own is not enough to call a package CPU-only: one that opens cuBLAS (a dlopen string) is a
    CUDA build; one that names no CUDA library is not. Tiny real ELF objects, built with gcc."""
    from audit_elves import build_so

    for name, strings, cpu_only in (
        ("cuda-user", ["libcublas.so.13"], ()),
        ("cpu", ["libgomp.so.1"], ("ctranslate2",)),
    ):
        site = tmp_path / name
        (site / "ctranslate2-9.9.9.dist-info").mkdir(parents=True)
        (site / "ctranslate2-9.9.9.dist-info" / "RECORD").write_text("ctranslate2/libct2.so,,\n")
        (site / "ctranslate2-9.9.9.dist-info" / "METADATA").write_text("Name: ctranslate2\nVersion: 9.9.9\n")
        build_so(site / "ctranslate2" / "libct2.so", soname="libct2.so", strings=strings)
        assert audit_arch(site, 121, progress=False).cpu_only == cpu_only, name

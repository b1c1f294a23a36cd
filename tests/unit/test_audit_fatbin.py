"""The fatbin reader on real files made here: nvcc fatbins (two archs, PTX, arch- and family-specific,
compressed, LTO IR in __nv_relfatbin), a gcc library without one, and damaged copies (truncated, unknown
version, not ELF). cuobjdump, where available, must list the same images."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from audit_elves import as_cuobjdump_names, build_cuda_so, build_so, cuobjdump_list

from whisperx_matrix.audit import audit_arch
from whisperx_matrix.audit import elf as elfmod
from whisperx_matrix.audit.fatbin import FATBIN_MAGIC, Arch, scan


@pytest.fixture(scope="module")
def cuda(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cuda")
    return {
        # SASS for two archs (one arch-specific) plus PTX for a third.
        "two": build_cuda_so(
            d / "two" / "libtwo.so",
            ["arch=compute_80,code=sm_80", "arch=compute_90a,code=sm_90a", "arch=compute_89,code=compute_89"],
        ),
        "blackwell": build_cuda_so(
            d / "bw" / "libbw.so",
            ["arch=compute_100f,code=sm_100f", "arch=compute_120,code=sm_120", "arch=compute_120a,code=compute_120a"],
        ),
        "plain": build_cuda_so(
            d / "plain" / "libplain.so",
            ["arch=compute_75,code=[sm_75,compute_75]"],
            extra=["-Xfatbin", "-compress=false"],
        ),
        "compressed": build_cuda_so(
            d / "comp" / "libcomp.so", ["arch=compute_75,code=[sm_75,compute_75]"], extra=["-Xfatbin", "-compress-all"]
        ),
        "lto": build_cuda_so(
            d / "lto" / "lto.o", ["arch=compute_90,code=lto_90"], extra=["-rdc=true"], compile_only=True
        ),
    }


def tags(path: Path) -> list[str]:
    return [e.tag for e in scan(path).entries]


def test_two_arch_fatbin(cuda: dict[str, Path]) -> None:
    found = scan(cuda["two"])
    assert not found.warnings
    assert {".nv_fatbin"} == {c.section for c in found.containers}
    assert set(tags(cuda["two"])) == {"sm_80", "sm_90a", "compute_89"}
    ptx = [e for e in found.entries if e.kind == "ptx"]
    assert ptx and all(re.fullmatch(r"\d+\.\d+", e.ptx_version or "") for e in ptx)
    audit = audit_arch(cuda["two"].parent, 120)
    (lib,) = audit.libraries
    # compute_89 PTX JITs to sm_120. nvcc 13 -shared also writes a device-link fatbin (no kernels, SASS only,
    # no PTX), which counts as one uncovered module: "partial", still runnable.
    assert (lib.runnable, lib.via, lib.containers) == (True, "ptx-jit", 2)
    assert audit_arch(cuda["two"].parent, 86).libraries[0].status == "runnable"  # sm_80 SASS
    assert audit_arch(cuda["two"].parent, 75).libraries[0].status == "not-runnable"


def test_arch_and_family_specific_variants(cuda: dict[str, Path]) -> None:
    assert set(tags(cuda["blackwell"])) == {"sm_100f", "sm_120", "compute_120a"}
    lib = audit_arch(cuda["blackwell"].parent, 103).libraries[0]
    assert lib.status == "runnable"  # sm_100f runs in its family
    assert audit_arch(cuda["blackwell"].parent, 121).libraries[0].via == "sass"  # sm_120 SASS on 12.1


def test_compression_flag(cuda: dict[str, Path]) -> None:
    assert not any(e.compressed for e in scan(cuda["plain"]).entries)
    assert all(e.compressed for e in scan(cuda["compressed"]).entries)
    assert tags(cuda["plain"]) == tags(cuda["compressed"])


def test_lto_ir_in_relfatbin(cuda: dict[str, Path]) -> None:
    found = scan(cuda["lto"])
    assert [(c.section, [e.kind for e in c.entries]) for c in found.containers] == [("__nv_relfatbin", ["lto"])]
    assert tags(cuda["lto"]) == ["lto_90"]
    assert audit_arch(cuda["lto"].parent, 90, files=[cuda["lto"]]).libraries[0].status == "no-gpu-code"


def test_no_fatbin(tmp_path: Path) -> None:
    so = build_so(tmp_path / "libplain.so", soname="libplain.so.1")
    found = scan(so)
    assert found.is_elf and not found.containers and not found.warnings
    assert audit_arch(tmp_path, 120).libraries[0].status == "no-gpu-code"


def _fatbin_offset(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    (sec,) = [s for s in elfmod.sections(data) if s.name == ".nv_fatbin"]
    assert struct.unpack_from("<I", data, sec.offset)[0] == FATBIN_MAGIC
    return sec.offset, sec.size


def test_truncated_file_warns_and_goes_on(cuda: dict[str, Path], tmp_path: Path) -> None:
    off, size = _fatbin_offset(cuda["plain"])
    cut = tmp_path / "libcut.so"
    cut.write_bytes(cuda["plain"].read_bytes()[: off + size // 2])  # section table gone as well
    found = scan(cut)
    assert not found.is_elf and "truncated" in found.warnings[0] and str(cut) in found.warnings[0]
    # Truncated inside the fatbin but with the headers intact: the section runs past the end.
    data = bytearray(cuda["plain"].read_bytes())
    # Headers intact, but the fatbin claims more bytes than its section holds (a cut-off payload).
    struct.pack_into("<Q", data, off + 8, 10**9)
    liar = tmp_path / "libliar.so"
    liar.write_bytes(bytes(data))
    found = scan(liar)
    assert any("truncated" in w for w in found.warnings)
    build_so(tmp_path / "libok.so")
    audit = audit_arch(tmp_path, 120)  # the audit of the folder goes on past the damaged files
    assert {lib.path for lib in audit.libraries} >= {"libliar.so", "libok.so"}
    assert any("libcut.so" in w for w in audit.warnings)


def test_unknown_fatbin_version_warns(cuda: dict[str, Path], tmp_path: Path) -> None:
    off, _ = _fatbin_offset(cuda["plain"])
    data = bytearray(cuda["plain"].read_bytes())
    struct.pack_into("<H", data, off + 4, 7)  # container version 7
    odd = tmp_path / "libodd.so"
    odd.write_bytes(bytes(data))
    found = scan(odd)
    assert any("unknown fatbin version 7" in w and str(odd) in w for w in found.warnings)


def test_not_elf(tmp_path: Path) -> None:
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"\x7fELF" + b"\x00" * 10)
    assert not scan(junk).is_elf and "not a readable ELF" in scan(junk).warnings[0]
    text = tmp_path / "notes.so.txt"
    text.write_text("hello")
    assert not scan(text).is_elf


@pytest.mark.network
def test_cross_check_with_cuobjdump(cuda: dict[str, Path]) -> None:
    import wheelcache

    tool = wheelcache.cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (nvidia-cuda-cuobjdump wheel not downloadable)")
    for name in ("two", "blackwell", "plain", "compressed"):
        theirs = cuobjdump_list(tool, cuda[name])
        assert theirs, name
        assert sorted(as_cuobjdump_names(cuda[name])) == sorted(theirs), name


def test_parse_arch_of_entries(cuda: dict[str, Path]) -> None:
    assert {e.arch for e in scan(cuda["two"]).entries} == {Arch(80), Arch(90, "a"), Arch(89)}

"""The closure audit's loader model on a fake tree of real tiny ELF files, checked against the real ld.so.

Each case is asked twice: of the model (``simulate``) and of glibc itself (a fresh Python that ctypes-loads
the same files, then reads /proc/self/maps). They must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from audit_elves import build_so

from whisperx_matrix.audit.closure import audit_closure, simulate
from whisperx_matrix.audit.loader import SearchEnv
from whisperx_matrix.audit.sonames import KNOWN_DLOPEN

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="models glibc's ld.so")

ISOLATED = SearchEnv(cache={}, default_dirs=())  # the fake sonames exist nowhere on the system anyway


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    deps = root / "pkg" / "deps"
    b = build_so(deps / "libb.so.1", soname="libb.so.1", symbol="b")
    a = build_so(deps / "liba.so.1", soname="liba.so.1", needed=[b], symbol="a")
    # RPATH is inherited by the dependencies of the object that has it; RUNPATH is not.
    build_so(root / "pkg" / "rpath_entry.so", needed=[a], rpath=["$ORIGIN/deps"])
    build_so(root / "pkg" / "runpath_entry.so", needed=[a], runpath=["$ORIGIN/deps"])
    # Two copies of one soname, to see which folder wins.
    x = build_so(root / "x" / "libdup.so.1", soname="libdup.so.1", strings=["copy-x"], symbol="dx")
    build_so(root / "y" / "libdup.so.1", soname="libdup.so.1", strings=["copy-y"], symbol="dy")
    build_so(root / "pkg" / "dup_rpath.so", needed=[x], rpath=["$ORIGIN/../x"])
    build_so(root / "pkg" / "dup_runpath.so", needed=[x], runpath=["$ORIGIN/../x"])
    # No search path at all: found only when already loaded, or through LD_LIBRARY_PATH.
    z = build_so(root / "z" / "libz9.so.3", soname="libz9.so.3", symbol="z9")
    build_so(root / "pkg" / "bare.so", needed=[z])
    return root


def real_loader(paths: list[Path], *, preload: list[Path] = (), ld_library_path: str | None = None) -> dict:
    """What glibc does: load ``preload`` (RTLD_GLOBAL) then ``paths`` in a fresh process."""
    code = (
        "import ctypes, json, sys\n"
        "pre, paths = json.loads(sys.argv[1])\n"
        "try:\n"
        "    [ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL) for p in pre]\n"
        "    [ctypes.CDLL(p) for p in paths]\n"
        "    err = None\n"
        "except OSError as exc:\n"
        "    err = str(exc)\n"
        "maps = sorted({l.split()[-1] for l in open('/proc/self/maps') if l.rstrip().endswith(('.so', '.so.1', '.so.3'))})\n"
        "print(json.dumps({'error': err, 'maps': maps}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    if ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = ld_library_path
    arg = json.dumps([[str(p) for p in preload], [str(p) for p in paths]])
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def model(root: Path, paths: list[Path], *, preload: list[Path] = (), ld_library_path: str | None = None):
    env = SearchEnv(ld_library_path=tuple(filter(None, (ld_library_path or "").split(":"))), cache={}, default_dirs=())
    return simulate(root, paths, env=env, preload=list(preload), strings=False)


def test_rpath_is_inherited_by_dependencies(tree: Path) -> None:
    entry = tree / "pkg" / "rpath_entry.so"
    image = model(tree, [entry])
    assert image.runnable
    assert {i.soname for i in image.loaded} >= {"liba.so.1", "libb.so.1"}
    assert real_loader([entry])["error"] is None


def test_runpath_is_not_inherited(tree: Path) -> None:
    entry = tree / "pkg" / "runpath_entry.so"
    image = model(tree, [entry])
    assert [m.soname for m in image.missing] == ["libb.so.1"]
    miss = image.missing[0]
    assert miss.wanted_by == "pkg/deps/liba.so.1" and miss.chain == ("pkg/deps/liba.so.1", "pkg/runpath_entry.so")
    assert miss.present_at == ("pkg/deps/libb.so.1",)  # in the tree, but not where the loader looks
    assert "libb.so.1" in (real_loader([entry])["error"] or "")


@pytest.mark.parametrize(
    ("entry", "winner"),
    [("dup_rpath.so", "x"), ("dup_runpath.so", "y")],  # RPATH beats LD_LIBRARY_PATH; RUNPATH does not
)
def test_search_order_against_ld_library_path(tree: Path, entry: str, winner: str) -> None:
    path = tree / "pkg" / entry
    lib_y = str(tree / "y")
    image = model(tree, [path], ld_library_path=lib_y)
    got = [i.path for i in image.loaded if i.soname == "libdup.so.1"]
    assert got == [f"{winner}/libdup.so.1"]
    real = real_loader([path], ld_library_path=lib_y)
    assert real["error"] is None
    assert str(tree / winner / "libdup.so.1") in real["maps"]
    assert image.via_ld_library_path == (("y/libdup.so.1",) if winner == "y" else ())


def test_loaded_soname_satisfies_a_later_request(tree: Path) -> None:
    entry, z = tree / "pkg" / "bare.so", tree / "z" / "libz9.so.3"
    assert [m.soname for m in model(tree, [entry]).missing] == ["libz9.so.3"]
    assert real_loader([entry])["error"] is not None
    # A preload (the cell's .pth, RTLD_GLOBAL) makes the soname loaded before the entry asks for it.
    assert model(tree, [entry], preload=[z]).runnable
    assert real_loader([entry], preload=[z])["error"] is None


def test_ld_library_path_dependence_is_reported(tree: Path) -> None:
    entry = tree / "pkg" / "bare.so"
    files = [entry, tree / "z" / "libz9.so.3"]
    audit = audit_closure(tree, entries=[entry], preload=[], ld_library_path=str(tree / "z"), files=files, env=ISOLATED)
    assert not audit.runnable and audit.reason == "missing-soname:libz9.so.3"
    assert audit.process_with_env is not None and audit.process_with_env.runnable
    assert audit.depends_on_ld_library_path is True
    assert real_loader([entry], ld_library_path=str(tree / "z"))["error"] is None
    # A self-contained entry does not depend on it.
    ok = audit_closure(
        tree,
        entries=[tree / "pkg" / "rpath_entry.so"],
        preload=[],
        ld_library_path=str(tree / "z"),
        files=files,
        env=ISOLATED,
    )
    assert ok.runnable and ok.depends_on_ld_library_path is False


def test_known_dlopen_is_required_and_strings_are_optional(tmp_path: Path) -> None:
    assert any(k.file_glob.startswith("libctranslate2") for k in KNOWN_DLOPEN)
    libs = tmp_path / "ctranslate2.libs"
    ct2 = build_so(
        libs / "libctranslate2-abc.so.4",
        soname="libctranslate2-abc.so.4",
        strings=["libcublas.so.12", "libmkl_def.so.2"],
        rpath=["$ORIGIN"],
    )
    ext = build_so(tmp_path / "ctranslate2" / "_ext.so", needed=[ct2], rpath=["$ORIGIN/../ctranslate2.libs"])
    image = simulate(tmp_path, [ext], env=ISOLATED)
    assert [(m.soname, m.how, m.provider) for m in image.missing] == [
        ("libcublas.so.12", "dlopen", "nvidia-cublas-cu12")
    ]
    assert (
        image.missing[0]
        .describe()
        .startswith(
            "libcublas.so.12 <- ctranslate2.libs/libctranslate2-abc.so.4 <- ctranslate2/_ext.so <- install nvidia-cublas-cu12"
        )
    )
    assert [m.soname for m in image.optional_missing] == ["libmkl_def.so.2"]
    # A cu12 cuBLAS preloaded beside a cu13 runtime: resolved, and flagged as a cu12/cu13 mix.
    cublas = build_so(tmp_path / "nvidia" / "cublas" / "lib" / "libcublas.so.12", soname="libcublas.so.12")
    cudart = build_so(tmp_path / "nvidia" / "cu13" / "lib" / "libcudart.so.13", soname="libcudart.so.13")
    mixed = simulate(tmp_path, [ext], env=ISOLATED, preload=[cublas, cudart])
    assert mixed.runnable and mixed.mixed_cuda
    assert mixed.cuda_majors == {"12": ("libcublas.so.12",), "13": ("libcudart.so.13",)}

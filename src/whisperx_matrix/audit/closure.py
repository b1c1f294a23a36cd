"""The shared-library closure audit: would the dynamic loader find every library a cell's code asks for?

The model follows glibc's ld.so (``elf/dl-load.c: _dl_map_object``; ld.so(8)). For a name without a slash
asked for by object L:

1. a loaded object whose soname (or a name it was loaded under) equals the name satisfies it at once;
2. if L has no DT_RUNPATH: DT_RPATH of L, then of the object that loaded L, and so on up the chain
   (``$ORIGIN`` is each object's own folder), then the executable's DT_RPATH;
3. LD_LIBRARY_PATH;
4. DT_RUNPATH of L (only L's: RUNPATH is not inherited by L's dependencies);
5. ld.so.cache (``ldconfig -p``), unless L is linked with -z nodeflib;
6. the default folders (``ld.so --help`` lists them; /lib and /usr/lib plus multiarch folders).

A name with a slash is a path (after ``$ORIGIN``/``$LIB``/``$PLATFORM`` expansion). Dependencies load
breadth-first, each found object loaded by the one that first asked for it. glibc-hwcaps subfolders and
``LD_PRELOAD`` are not modelled; the cell's own preload (a .pth that ctypes-loads libraries with
RTLD_GLOBAL at start-up) is, as libraries loaded before the entry modules.

dlopen'ed libraries are invisible to DT_NEEDED (and to ``ldd``). They are found two ways: a small table of
known cases that the verdict relies on (:data:`KNOWN_DLOPEN`), and sonames spelled in an object's .rodata
(optional: libraries probe for many things they can live without).
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import json
import os
import re
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import elf
from .progress import Progress
from .records import Owners

PRELOAD_MODULE = "whisperx_matrix_preload"

# Installed by the NVIDIA driver, never by a wheel: a machine without a GPU lacks them legitimately.
DRIVER_SONAMES = ("libcuda.so*", "libnvidia-*.so*", "libnvcuvid.so*", "libcudadebugger.so*", "libnvoptix.so*")


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


# --- the search environment ---------------------------------------------------------------------------

_FALLBACK_DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


@dataclass(frozen=True)
class SearchEnv:
    """What the loader searches besides the objects' own paths."""

    ld_library_path: tuple[str, ...] = ()
    cache: Mapping[str, str] = field(default_factory=dict)  # ld.so.cache: soname -> path (64-bit entries)
    default_dirs: tuple[str, ...] = _FALLBACK_DEFAULT_DIRS
    lib: str = "lib64"  # $LIB
    platform: str = "x86_64"  # $PLATFORM (AT_PLATFORM)
    exe_rpath: tuple[str, ...] = ()  # the executable's DT_RPATH, searched after the loader chain
    exe_origin: str = ""

    @classmethod
    def system(cls, ld_library_path: str | None = None, *, python: Path | None = None) -> SearchEnv:
        """This machine's ld.so.cache and default folders, with the given LD_LIBRARY_PATH (None: unset)."""
        exe_rpath: tuple[str, ...] = ()
        exe_origin = ""
        if python is not None:
            try:
                real = Path(os.path.realpath(python))
                dyn = elf.dynamic(real)
                if not dyn.runpath:
                    exe_rpath, exe_origin = dyn.rpath, str(real.parent)
            except (OSError, elf.NotElfError):
                pass
        return cls(
            ld_library_path=split_path_list(ld_library_path),
            cache=_ld_cache(),
            default_dirs=_default_dirs(),
            exe_rpath=exe_rpath,
            exe_origin=exe_origin,
        )


def split_path_list(value: str | None) -> tuple[str, ...]:
    # ld.so treats an empty element as the current folder; a cell must not depend on that, so skip it.
    return tuple(p for p in re.split(r"[:;]", value or "") if p)


_LDCONFIG_LINE = re.compile(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$")


def parse_ldconfig(text: str) -> dict[str, str]:
    """``ldconfig -p`` output -> {soname: path}, 64-bit x86 entries first-wins (the cache's own order)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LDCONFIG_LINE.match(line)
        if not m:
            continue
        name, tags, path = m.groups()
        if "x86-64" not in tags and "64bit" not in tags:
            continue
        out.setdefault(name, path)
    return out


@functools.cache
def _ld_cache() -> dict[str, str]:
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            proc = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return parse_ldconfig(proc.stdout)
    return {}


@functools.cache
def _default_dirs() -> tuple[str, ...]:
    """The loader's own default folders, as ``ld.so --help`` prints them (glibc >= 2.33)."""
    for exe in ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"):
        if not os.path.exists(exe):
            continue
        try:
            proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        dirs = tuple(line.split("(")[0].strip() for line in proc.stdout.splitlines() if "(system search path)" in line)
        if dirs:
            return dirs
    return _FALLBACK_DEFAULT_DIRS


# --- objects -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    dyn: elf.Dynamic
    strings: frozenset[str]  # sonames spelled in .rodata/.dynstr


@functools.lru_cache(maxsize=8192)
def _header(path: str) -> tuple[int, int] | None:
    """(ELF class, e_machine) of a file, or None when it is not ELF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != elf.ELF_MAGIC:
        return None
    order = "little" if head[5] == 1 else "big"
    return head[4], int.from_bytes(head[18:20], order)


class ObjectCache:
    """Parses each object once; shared by every simulated process of an audit."""

    def __init__(self) -> None:
        self._dyn: dict[str, elf.Dynamic | None] = {}
        self._strings: dict[str, frozenset[str]] = {}
        self.warnings: list[str] = []

    def dynamic(self, path: str) -> elf.Dynamic | None:
        key = os.path.realpath(path)
        if key not in self._dyn:
            try:
                self._dyn[key] = elf.dynamic(key)
            except (OSError, elf.NotElfError) as exc:
                self.warnings.append(f"{path}: not a readable ELF object: {exc}")
                self._dyn[key] = None
        return self._dyn[key]

    def strings(self, path: str) -> frozenset[str]:
        key = os.path.realpath(path)
        if key not in self._strings:
            try:
                self._strings[key] = frozenset(elf.soname_strings(key))
            except (OSError, elf.NotElfError):
                self._strings[key] = frozenset()
        return self._strings[key]


def expand(entry: str, origin: str, env: SearchEnv) -> str:
    """Dynamic string tokens: $ORIGIN, $LIB, $PLATFORM (also in ${...} form)."""
    for token, value in (("ORIGIN", origin), ("LIB", env.lib), ("PLATFORM", env.platform)):
        entry = entry.replace("${" + token + "}", value).replace("$" + token, value)
    return entry


# --- the process ---------------------------------------------------------------------------------------


@dataclass
class _Node:
    path: str
    soname: str | None
    dyn: elf.Dynamic
    loader: _Node | None
    how: str  # "preload" | "entry" | "needed" | "dlopen" | "dlopen?"
    names: set[str] = field(default_factory=set)

    def chain(self) -> list[_Node]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.loader
        return out


@dataclass(frozen=True)
class Missing:
    soname: str
    wanted_by: str  # the object that asked for it
    chain: tuple[str, ...]  # wanted_by, its loader, ... up to the entry module
    how: str  # "needed" (DT_NEEDED), "dlopen" (known table), "dlopen?" (a string in the binary)
    provider: str | None  # the package that ships it
    present_at: tuple[str, ...] = ()  # files of that name in the tree that the loader does not search

    def describe(self) -> str:
        text = " <- ".join((self.soname, *self.chain))
        if self.provider:
            text += f" <- install {self.provider}"
        if self.present_at:
            text += f" (present at {', '.join(self.present_at)} but not on the search path: preload it)"
        return text


@dataclass(frozen=True)
class Loaded:
    soname: str
    path: str
    package: str
    how: str
    loaded_by: str | None


@dataclass(frozen=True)
class ProcessImage:
    """One simulated process: what the entry modules load, and what they ask for and do not get."""

    entries: tuple[str, ...]
    preload: tuple[str, ...]
    ld_library_path: tuple[str, ...]
    loaded: tuple[Loaded, ...]
    missing: tuple[Missing, ...]  # required: DT_NEEDED and known dlopen
    optional_missing: tuple[Missing, ...]  # sonames from strings that nothing provides
    cuda_majors: Mapping[str, tuple[str, ...]]  # "12" -> sonames loaded or wanted of CUDA 12
    mixed_cuda: bool
    via_ld_library_path: tuple[str, ...] = ()  # loaded only because LD_LIBRARY_PATH names their folder
    # CUDA libraries (ones a wheel would provide) found outside the cell, e.g. a toolkit in ld.so.cache:
    # the cell works here only thanks to this machine.
    from_system: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return not self.missing


class Process:
    """A simulated process; ``load`` is dlopen (or the executable's DT_NEEDED) of one object."""

    def __init__(
        self, env: SearchEnv, *, objects: ObjectCache | None = None, tree: Mapping[str, list[str]] | None = None
    ):
        self.env = env
        self.objects = objects or ObjectCache()
        self.nodes: list[_Node] = []
        self._by_name: dict[str, _Node] = {}
        self._by_file: dict[str, _Node] = {}
        self.missing: list[Missing] = []
        self.optional_missing: list[Missing] = []
        self.via_ld_library_path: list[str] = []
        self.tree = tree or {}  # basename -> paths in the audited tree (to say "present but not found")
        self._exists: dict[str, bool] = {}
        self._pending: deque[_Node] = deque()

    def fork(self) -> Process:
        """A copy that shares the loaded objects (for "this process, then one more dlopen")."""
        twin = Process(self.env, objects=self.objects, tree=self.tree)
        twin.nodes = list(self.nodes)
        twin._by_name = dict(self._by_name)
        twin._by_file = dict(self._by_file)
        twin._exists = self._exists  # a cache of os.path.isfile, valid for both
        return twin

    # -- loading

    def load(self, path: str | Path, *, how: str = "entry", caller: _Node | None = None) -> _Node | None:
        path = os.path.abspath(str(path))
        node = self._add(path, loader=caller, how=how, asked=path)
        if node is not None:
            self._load_deps()
        return node

    def dlopen(self, name: str, caller: _Node, *, how: str = "dlopen") -> _Node | None:
        found = self._resolve(name, caller)
        if isinstance(found, _Node):
            return found
        if found is None:
            self._record_missing(name, caller, how)
            return None
        node = self._add(found, loader=caller, how=how, asked=name)
        self._load_deps()
        return node

    def _add(self, path: str, *, loader: _Node | None, how: str, asked: str) -> _Node | None:
        key = os.path.realpath(path)
        if key in self._by_file:
            node = self._by_file[key]
            node.names.add(asked)
            self._by_name.setdefault(asked, node)
            return node
        dyn = self.objects.dynamic(path)
        if dyn is None:
            return None
        node = _Node(path=path, soname=dyn.soname, dyn=dyn, loader=loader, how=how, names={asked})
        self.nodes.append(node)
        self._by_file[key] = node
        for name in (asked, dyn.soname):
            if name:
                self._by_name.setdefault(name, node)
        self._pending.append(node)
        return node

    def _load_deps(self) -> None:
        # Breadth-first, as _dl_map_object_deps does.
        while self._pending:
            node = self._pending.popleft()
            for name in node.dyn.needed:
                found = self._resolve(name, node)
                if isinstance(found, _Node):
                    found.names.add(name)
                    continue
                if found is None:
                    self._record_missing(name, node, "needed")
                    continue
                self._add(found, loader=node, how="needed", asked=name)

    # -- searching

    def _resolve(self, name: str, caller: _Node) -> _Node | str | None:
        """A loaded node, the path of a file to load, or None."""
        if "/" in name:
            path = expand(name, os.path.dirname(caller.path), self.env)
            if not os.path.isabs(path):
                path = os.path.abspath(path)
            node = self._by_file.get(os.path.realpath(path))
            if node is not None:
                return node
            return path if self._usable(path, caller) else None
        node = self._by_name.get(name)
        if node is not None:
            return node
        for folder, source in self._search_dirs(caller):
            path = os.path.join(folder, name)
            if self._usable(path, caller):
                node = self._by_file.get(os.path.realpath(path))
                if source == "LD_LIBRARY_PATH" and node is None:
                    self.via_ld_library_path.append(path)
                return node if node is not None else path
        if not caller.dyn.nodeflib:
            cached = self.env.cache.get(name)
            if cached and self._usable(cached, caller):
                return self._by_file.get(os.path.realpath(cached)) or cached
            for folder in self.env.default_dirs:
                path = os.path.join(folder, name)
                if self._usable(path, caller):
                    return self._by_file.get(os.path.realpath(path)) or path
        return None

    def _search_dirs(self, caller: _Node) -> Iterable[tuple[str, str]]:
        env = self.env
        if not caller.dyn.runpath:
            for node in caller.chain():
                if node.dyn.runpath:
                    # An object with RUNPATH stops the RPATH inheritance at itself (glibc skips its RPATH).
                    break
                for entry in node.dyn.rpath:
                    yield expand(entry, os.path.dirname(node.path), env), "RPATH"
            for entry in env.exe_rpath:
                yield expand(entry, env.exe_origin, env), "RPATH"
        for entry in env.ld_library_path:
            yield expand(entry, "", env), "LD_LIBRARY_PATH"
        for entry in caller.dyn.runpath:
            yield expand(entry, os.path.dirname(caller.path), env), "RUNPATH"

    def _usable(self, path: str, caller: _Node) -> bool:
        if path not in self._exists:
            self._exists[path] = os.path.isfile(path)
        if not self._exists[path]:
            return False
        head = _header(os.path.realpath(path))
        # ld.so skips files of another ELF class or machine and keeps searching.
        return head is not None and head == (caller.dyn.elfclass, caller.dyn.machine)

    def _record_missing(self, name: str, caller: _Node, how: str) -> None:
        if is_driver(name):
            return
        nodes = caller.chain()
        chain = tuple(n.path for n in nodes)
        present = tuple(sorted(p for p in self.tree.get(name, ())))
        miss = Missing(name, caller.path, chain, how, provider(name), present)
        # Under a library that is itself only a guess from strings (cuFile's RDMA plug-in), a miss is
        # optional too: the real program copes when that dlopen fails.
        optional = how == "dlopen?" or any(n.how == "dlopen?" for n in nodes)
        target = self.optional_missing if optional else self.missing
        if not any(m.soname == name and m.wanted_by == caller.path for m in target):
            target.append(miss)

    # -- after loading: the dlopen'ed libraries

    def resolve_dlopens(self, *, strings: bool = True, within: Path | None = None) -> None:
        """Known dlopen'ed libraries (required), then sonames seen in strings (optional).

        ``within``: read strings only of objects under this folder (the cell); system libraries such as
        libc name many optional plug-ins (NSS, IDN) that say nothing about the cell.
        """
        inside = os.path.normpath(str(within)) + os.sep if within is not None else None
        done: set[tuple[str, str]] = set()
        i = 0
        while i < len(self.nodes):  # dlopen'ed objects can dlopen in turn
            node = self.nodes[i]
            i += 1
            base = os.path.basename(node.path)
            names = self.objects.strings(node.path) if strings or _known_for(base) else frozenset()
            for rule in _known_for(base):
                for name in sorted(n for n in names if re.match(rule.soname_re, n)):
                    if (node.path, name) not in done:
                        done.add((node.path, name))
                        self._dlopen_quiet(name, node, "dlopen")
            if not strings or (inside is not None and not os.path.normpath(node.path).startswith(inside)):
                continue
            for name in sorted(names):
                if (node.path, name) in done or name in node.names or name == node.soname:
                    continue
                done.add((node.path, name))
                self._dlopen_quiet(name, node, "dlopen?")
        # The order of optional dlopens is unknown; a name that some object did load is not missing.
        self.optional_missing = [m for m in self.optional_missing if m.soname not in self._by_name]

    def _dlopen_quiet(self, name: str, caller: _Node, how: str) -> None:
        found = self._resolve(name, caller)
        if found is None and how == "dlopen?":
            # NVIDIA libraries open their siblings by full path from their own folder (nvrtc and its
            # builtins, cuDNN and its engines), which no search path shows.
            sibling = os.path.join(os.path.dirname(caller.path), name)
            if self._usable(sibling, caller):
                found = self._by_file.get(os.path.realpath(sibling)) or sibling
        if isinstance(found, _Node):
            return
        if found is None:
            self._record_missing(name, caller, how)
            return
        self._add(found, loader=caller, how=how, asked=name)
        self._load_deps()


def _known_for(basename: str) -> list[KnownDlopen]:
    return [k for k in KNOWN_DLOPEN if fnmatch.fnmatchcase(basename, k.file_glob)]


# --- the audit -----------------------------------------------------------------------------------------

# What a WhisperX process loads, in order (globs relative to site-packages). ``import torch`` first loads
# torch/lib/libtorch_global_deps.so with RTLD_GLOBAL and then, when cudart comes from the cu12 wheel layout,
# preloads nvrtc and nvJitLink from their wheels (torch/__init__.py, _load_global_deps; pytorch issues
# 138460 and 145580), then torch._C. WhisperX imports faster-whisper, hence ctranslate2's extension, after.
DEFAULT_ENTRIES = (
    "torch/lib/libtorch_global_deps.so",
    "nvidia/cuda_nvrtc/lib/libnvrtc.so.*[0-9]",
    "nvidia/nvjitlink/lib/libnvJitLink.so.*[0-9]",
    "torch/_C.*.so",
    "ctranslate2/_ext.*.so",
)


def read_preload(site: Path) -> list[Path]:
    """The libraries a cell's preload .pth loads at start-up (paths relative to site-packages in its list)."""
    module = Path(site) / f"{PRELOAD_MODULE}.py"
    if not module.is_file():
        return []
    try:
        tree = ast.parse(module.read_text(encoding="utf-8"))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return []
    rels: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.iter, (ast.List, ast.Tuple)):
            rels.extend(e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return [Path(site) / rel for rel in rels]


def default_entries(site: Path) -> list[Path]:
    found: list[Path] = []
    for pattern in DEFAULT_ENTRIES:
        hits = sorted(Path(site).glob(pattern))
        if pattern.startswith("nvidia/") and not (Path(site) / "torch").is_dir():
            continue  # torch's own preloads, only when torch is there to do them
        found.extend(hits[:1] if pattern.startswith("nvidia/") else hits)
    return found


@dataclass(frozen=True)
class ObjectClosure:
    path: str
    package: str
    missing: tuple[str, ...]  # DT_NEEDED sonames (direct or transitive) the loader would not find
    # Missing names that the same distribution ships: its Python code loads them by path first
    # (torchaudio's libtorchaudio.so, torchcodec's core libraries), or an RPATH up the real load chain finds
    # them (scipy.libs); not a defect by themselves.
    loaded_first: tuple[str, ...] = ()


def _object_closure(
    path: Path, missing: Sequence[Missing], root: Path, owners: Owners, tree: Mapping[str, list[str]]
) -> ObjectClosure:
    dist = owners.owner(path)
    mine, other = set(), set()
    for m in missing:
        ships = [p for p in tree.get(m.soname, ()) if dist is not None and owners.owner(root / p) == dist]
        (mine if ships else other).add(m.soname)
    return ObjectClosure(_rel(path, root), owners.name(path), tuple(sorted(other)), tuple(sorted(mine)))


@dataclass(frozen=True)
class ClosureAudit:
    root: str
    runnable: bool  # the process model (entry modules, LD_LIBRARY_PATH unset) misses nothing required
    reason: str | None  # "missing-soname:libcublas.so.12"
    missing: tuple[str, ...]  # the required sonames that process lacks
    process: ProcessImage  # LD_LIBRARY_PATH unset
    process_with_env: ProcessImage | None  # with the user's LD_LIBRARY_PATH, when one was given
    depends_on_ld_library_path: bool | None  # None: no LD_LIBRARY_PATH given to compare with
    objects: tuple[ObjectClosure, ...]  # every ELF in the tree with an unresolved DT_NEEDED
    objects_checked: int
    warnings: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _index_tree(root: Path, files: Sequence[Path]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for path in files:
        index.setdefault(path.name, []).append(_rel(path, root))
    return index


def _rel(path: str | Path, root: Path) -> str:
    # normpath for people only: the loader itself never folds "..", and $ORIGIN keeps symlinked folders.
    path = os.path.normpath(str(path))
    try:
        return str(Path(path).relative_to(os.path.normpath(str(root))))
    except ValueError:
        return path


def simulate(
    root: Path,
    entries: Sequence[Path],
    *,
    env: SearchEnv,
    preload: Sequence[Path] = (),
    objects: ObjectCache | None = None,
    owners: Owners | None = None,
    tree: Mapping[str, list[str]] | None = None,
    strings: bool = True,
) -> ProcessImage:
    """Load ``preload`` (RTLD_GLOBAL), then each entry module, then their dlopen'ed libraries."""
    root = Path(root)
    owners = owners or Owners(root)
    if tree is None:
        tree = _index_tree(root, list(elf.iter_files(root)))
    proc = Process(env, objects=objects, tree=tree)
    for path in preload:
        if proc.load(path, how="preload") is None:
            proc.missing.append(
                Missing(Path(path).name, "(preload)", (str(path),), "preload", provider(Path(path).name))
            )
    for path in entries:
        proc.load(path, how="entry")
    proc.resolve_dlopens(strings=strings, within=root)

    def rel(p: str) -> str:
        return _rel(p, root)

    failed = _failed_optional_loads(proc)
    loaded = tuple(
        Loaded(
            soname=n.soname or os.path.basename(n.path),
            path=rel(n.path),
            package=owners.name(Path(n.path)),
            how=n.how,
            loaded_by=rel(n.loader.path) if n.loader else None,
        )
        for n in proc.nodes
        if not any(id(c) in failed for c in n.chain())
    )

    def relm(m: Missing) -> Missing:
        return Missing(m.soname, rel(m.wanted_by), tuple(rel(c) for c in m.chain), m.how, m.provider, m.present_at)

    missing = tuple(relm(m) for m in proc.missing)
    optional = tuple(relm(m) for m in proc.optional_missing)
    majors: dict[str, set[str]] = {}
    for item in loaded:
        major = cuda_major(item.soname, item.path)
        if major:
            majors.setdefault(str(major), set()).add(item.soname)
    for m in missing:
        major = cuda_major(m.soname)
        if major:
            majors.setdefault(str(major), set()).add(m.soname)
    return ProcessImage(
        entries=tuple(rel(str(p)) for p in entries),
        preload=tuple(rel(str(p)) for p in preload),
        ld_library_path=env.ld_library_path,
        loaded=loaded,
        missing=missing,
        optional_missing=optional,
        cuda_majors={k: tuple(sorted(v)) for k, v in sorted(majors.items())},
        mixed_cuda=len(majors) > 1,
        via_ld_library_path=tuple(rel(p) for p in dict.fromkeys(proc.via_ld_library_path)),
        from_system=tuple(item.path for item in loaded if item.path.startswith("/") and _wheel_provided(item.soname)),
    )


def _failed_optional_loads(proc: Process) -> set[int]:
    """Nodes an optional dlopen could not really load: ld.so fails the whole dlopen when a DT_NEEDED of the
    opened library (or of its dependencies) is missing, so the chain up to that dlopen is not in the process
    (cuFile's RDMA plug-in needs libmlx5.so.1, which the real loader showed missing on a machine without
    rdma-core). Its loader survives."""
    failed: set[int] = set()
    for m in proc.optional_missing:
        if m.how != "needed":
            continue
        for path in m.chain:  # wanted_by first, then its loaders up to the entry module
            node = proc._by_file.get(os.path.realpath(path))
            if node is None:
                break
            failed.add(id(node))
            if node.how == "dlopen?":
                break
    return failed


def _wheel_provided(soname: str) -> bool:
    found = provider(soname)
    return found is not None and found.startswith("nvidia-")


def audit_closure(
    root: Path,
    *,
    entries: Sequence[Path] | None = None,
    preload: Sequence[Path] | None = None,
    ld_library_path: str | None = None,
    python: Path | None = None,
    files: Sequence[Path] | None = None,
    env: SearchEnv | None = None,
    progress: bool | None = None,
) -> ClosureAudit:
    """The closure audit of a site-packages folder (or any tree).

    ``entries``: modules the process imports (default: torch's and ctranslate2's extensions, if present).
    ``preload``: libraries loaded before them (default: read from the cell's preload .pth).
    ``ld_library_path``: the user's value; the process is also simulated with it, to tell whether the cell
    depends on it. ``env`` replaces the system's cache and default folders (tests pass an empty one).
    """
    start = time.perf_counter()
    root = Path(root)
    files = list(files) if files is not None else list(elf.iter_files(root))
    entries = list(entries) if entries is not None else default_entries(root)
    preload = list(preload) if preload is not None else read_preload(root)
    base = env or SearchEnv.system(None, python=python)
    objects = ObjectCache()
    owners = Owners(root)
    tree = _index_tree(root, files)

    # Every object on its own, dlopen'ed by a Python that has already imported the entry modules (torch's
    # extensions need libtorch loaded first): which DT_NEEDED would it not find?
    per_object: list[ObjectClosure] = []
    started = Process(base, objects=objects, tree=tree)
    for pre in preload:
        started.load(pre, how="preload")
    for entry in entries:
        started.load(entry, how="entry")
    with Progress(len(files), "closure audit", enabled=progress) as bar:
        for path in files:
            proc = started.fork()
            node = proc.load(path, how="entry")
            if node is not None and proc.missing:
                found = _object_closure(path, proc.missing, root, owners, tree)
                if found.missing:
                    per_object.append(found)
            bar.update(1, path.name)

    image = simulate(root, entries, env=base, preload=preload, objects=objects, owners=owners, tree=tree)
    with_env = None
    depends = None
    if ld_library_path:
        env2 = SearchEnv(
            ld_library_path=split_path_list(ld_library_path),
            cache=base.cache,
            default_dirs=base.default_dirs,
            lib=base.lib,
            platform=base.platform,
            exe_rpath=base.exe_rpath,
            exe_origin=base.exe_origin,
        )
        with_env = simulate(root, entries, env=env2, preload=preload, objects=objects, owners=owners, tree=tree)
        # It depends on LD_LIBRARY_PATH when the variable changes what is missing or what gets loaded.
        depends = (not image.runnable and with_env.runnable) or bool(with_env.via_ld_library_path)
    names = tuple(dict.fromkeys(m.soname for m in image.missing))
    return ClosureAudit(
        root=str(root),
        runnable=image.runnable,
        reason=f"missing-soname:{names[0]}" if names else None,
        missing=names,
        process=image,
        process_with_env=with_env,
        depends_on_ld_library_path=depends,
        objects=tuple(per_object),
        objects_checked=len(files),
        warnings=tuple(objects.warnings),
        seconds=round(time.perf_counter() - start, 3),
    )

"""The dynamic loader, modelled: which file each library name resolves to, and what is missing.

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
known cases that the verdict relies on (:data:`.sonames.KNOWN_DLOPEN`), and sonames spelled in an object's
.rodata (optional: libraries probe for many things they can live without).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import tools
from . import elf
from .sonames import INTERPRETERS, MANYLINUX_2_28_HOST, is_driver, known_for, provider

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
    # Sonames the target host provides and this machine cannot show (a foreign platform's system libraries):
    # never missing, never loaded, listed as taken from the host.
    host: frozenset[str] = frozenset()

    @classmethod
    def foreign(cls, arch: str) -> SearchEnv:
        """The loader of a manylinux_2_28 ``arch`` host judged from this machine: no ld.so.cache and no system
        folder to search (none of this machine's libraries can load into an ``arch`` process: ld.so skips another
        machine's objects), the policy's system libraries and the interpreter taken from the host."""
        return cls(
            default_dirs=(),
            lib="lib64" if arch == "x86_64" else "lib",
            platform=arch,
            host=frozenset((*MANYLINUX_2_28_HOST, INTERPRETERS[arch])),
        )

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
            proc = tools.run([exe, "-p"], timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.ok:
            return parse_ldconfig(proc.stdout)
    return {}


@functools.cache
def _default_dirs() -> tuple[str, ...]:
    """The loader's own default folders, as ``ld.so --help`` prints them (glibc >= 2.33)."""
    for exe in ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"):
        if not os.path.exists(exe):
            continue
        try:
            proc = tools.run([exe, "--help"], timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        dirs = tuple(line.split("(")[0].strip() for line in proc.stdout.splitlines() if "(system search path)" in line)
        if dirs:
            return dirs
    return _FALLBACK_DEFAULT_DIRS


# --- objects -------------------------------------------------------------------------------------------


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
    return head[4], int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


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
class Node:
    """An object in the simulated process, and the object that loaded it."""

    path: str
    soname: str | None
    dyn: elf.Dynamic
    loader: Node | None
    how: str  # "preload" | "entry" | "needed" | "dlopen" | "dlopen?"
    names: set[str] = field(default_factory=set)

    def chain(self) -> list[Node]:
        out: list[Node] = []
        node: Node | None = self
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


class Process:
    """A simulated process; ``load`` is dlopen (or the executable's DT_NEEDED) of one object."""

    def __init__(
        self, env: SearchEnv, *, objects: ObjectCache | None = None, tree: Mapping[str, list[str]] | None = None
    ):
        self.env = env
        self.objects = objects or ObjectCache()
        self.nodes: list[Node] = []
        self._by_name: dict[str, Node] = {}
        self._by_file: dict[str, Node] = {}
        self.missing: list[Missing] = []
        self.optional_missing: list[Missing] = []
        self.via_ld_library_path: list[str] = []
        self.from_host: set[str] = set()  # sonames the target host provides (SearchEnv.host)
        self.tree = tree or {}  # basename -> paths in the audited tree (to say "present but not found")
        self._exists: dict[str, bool] = {}
        self._pending: deque[Node] = deque()

    def node_at(self, path: str) -> Node | None:
        """The loaded object that is this file (through symlinks), if any."""
        return self._by_file.get(os.path.realpath(path))

    def fork(self) -> Process:
        """A copy that shares the loaded objects (for "this process, then one more dlopen")."""
        twin = Process(self.env, objects=self.objects, tree=self.tree)
        twin.nodes = list(self.nodes)
        twin._by_name = dict(self._by_name)
        twin._by_file = dict(self._by_file)
        twin._exists = self._exists  # a cache of os.path.isfile, valid for both
        twin.from_host = self.from_host
        return twin

    # -- loading

    def load(self, path: str | Path, *, how: str = "entry", caller: Node | None = None) -> Node | None:
        path = os.path.abspath(str(path))
        node = self._add(path, loader=caller, how=how, asked=path)
        if node is not None:
            self._load_deps()
        return node

    def dlopen(self, name: str, caller: Node, *, how: str = "dlopen") -> Node | None:
        found = self._resolve(name, caller)
        if isinstance(found, Node):
            return found
        if found is None:
            self._record_missing(name, caller, how)
            return None
        node = self._add(found, loader=caller, how=how, asked=name)
        self._load_deps()
        return node

    def _add(self, path: str, *, loader: Node | None, how: str, asked: str) -> Node | None:
        key = os.path.realpath(path)
        if key in self._by_file:
            node = self._by_file[key]
            node.names.add(asked)
            self._by_name.setdefault(asked, node)
            return node
        dyn = self.objects.dynamic(path)
        if dyn is None:
            return None
        node = Node(path=path, soname=dyn.soname, dyn=dyn, loader=loader, how=how, names={asked})
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
                if isinstance(found, Node):
                    found.names.add(name)
                    continue
                if found is None:
                    self._record_missing(name, node, "needed")
                    continue
                self._add(found, loader=node, how="needed", asked=name)

    # -- searching

    def _resolve(self, name: str, caller: Node) -> Node | str | None:
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

    def _search_dirs(self, caller: Node) -> Iterable[tuple[str, str]]:
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

    def _usable(self, path: str, caller: Node) -> bool:
        if path not in self._exists:
            self._exists[path] = os.path.isfile(path)
        if not self._exists[path]:
            return False
        head = _header(os.path.realpath(path))
        # ld.so skips files of another ELF class or machine and keeps searching.
        return head is not None and head == (caller.dyn.elfclass, caller.dyn.machine)

    def _record_missing(self, name: str, caller: Node, how: str) -> None:
        if is_driver(name):
            return
        if name in self.env.host:
            self.from_host.add(name)
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
            names = self.objects.strings(node.path) if strings or known_for(base) else frozenset()
            for rule in known_for(base):
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

    def _dlopen_quiet(self, name: str, caller: Node, how: str) -> None:
        found = self._resolve(name, caller)
        if found is None and how == "dlopen?":
            # NVIDIA libraries open their siblings by full path from their own folder (nvrtc and its
            # builtins, cuDNN and its engines), which no search path shows.
            sibling = os.path.join(os.path.dirname(caller.path), name)
            if self._usable(sibling, caller):
                found = self._by_file.get(os.path.realpath(sibling)) or sibling
        if isinstance(found, Node):
            return
        if found is None:
            self._record_missing(name, caller, how)
            return
        self._add(found, loader=caller, how=how, asked=name)
        self._load_deps()

"""The shared-library closure audit: would the dynamic loader find every library a cell's code asks for?

A simulated process (loader.py: glibc's search order, RPATH/RUNPATH, the DT_NEEDED walk) loads the cell's
preload, then the modules WhisperX's imports load, then what those dlopen (sonames.py: the known cases and
the providers' table). Every other ELF object of the tree is also loaded on its own, after the entry
modules, to find DT_NEEDED that nothing would satisfy.
"""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import ui
from ..paths import PRELOAD_MODULE
from . import elf
from .loader import Missing, ObjectCache, Process, SearchEnv, split_path_list
from .records import Owners
from .sonames import cuda_major, provider, wheel_provided


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
    # Sonames a foreign platform's host provides (its system libraries by the manylinux policy): not auditable here
    from_host: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return not self.missing


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
    mine: set[str] = set()
    other: set[str] = set()
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
        from_system=tuple(item.path for item in loaded if item.path.startswith("/") and wheel_provided(item.soname)),
        from_host=tuple(sorted(proc.from_host)),
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
            node = proc.node_at(path)
            if node is None:
                break
            failed.add(id(node))
            if node.how == "dlopen?":
                break
    return failed


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
    with ui.progress(len(files), "closure audit", enabled=progress is not False) as bar:
        for path in files:
            proc = started.fork()
            node = proc.load(path, how="entry")
            if node is not None and proc.missing:
                found = _object_closure(path, proc.missing, root, owners, tree)
                if found.missing:
                    per_object.append(found)
            bar.advance(note=path.name)

    image = simulate(root, entries, env=base, preload=preload, objects=objects, owners=owners, tree=tree)
    with_env = None
    depends = None
    if ld_library_path:
        env2 = replace(base, ld_library_path=split_path_list(ld_library_path))
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

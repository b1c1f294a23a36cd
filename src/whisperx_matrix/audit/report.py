"""Readable tables of the audits, for people (the JSON is for the verdict stage)."""

from __future__ import annotations

from collections.abc import Sequence

from .. import ui
from .arch import NO_GPU_CODE, ArchAudit
from .closure import ClosureAudit, ProcessImage


def _archs(tags: Sequence[str], limit: int = 14) -> str:
    if not tags:
        return "-"
    shown = " ".join(t.replace(" (PTX ", "/").rstrip(")") for t in tags[:limit])
    return shown + (f" (+{len(tags) - limit})" if len(tags) > limit else "")


def format_arch(audit: ArchAudit, *, all_libraries: bool = False) -> str:
    out = [f"Arch audit for {audit.target}: {audit.root} ({audit.files} ELF files, {audit.seconds:.2f} s)"]
    gpu = [p for p in audit.packages if p.status != NO_GPU_CODE]
    if not gpu:
        out.append("  no GPU code in any library")
    else:
        rows = [
            [
                p.package,
                p.status + (" (profiler only)" if p.profiling_only else ""),
                p.via or "-",
                {True: "yes", False: "no", None: "?"}[p.in_process],
                _archs(p.sass),
                _archs(p.ptx),
            ]
            for p in gpu
        ]
        out.append(ui.table(["PACKAGE", "STATUS", "VIA", "LOADED", "SASS", "PTX (arch/ISA)"], rows, indent=2))
        mixed = [p for p in gpu if len(p.origins) > 1]
        if mixed:
            out.append("")
            out.append("  where each package's archs come from (a package total can mix its own kernels with a bundled")
            out.append("  library's):")
            for p in mixed:
                out.append(f"    {p.package}:")
                for libraries, tags in p.origins:
                    shown = ", ".join(lib.rsplit("/", 1)[-1] for lib in libraries[:4])
                    more = f" (+{len(libraries) - 4} more)" if len(libraries) > 4 else ""
                    out.append(f"      {_archs(tags)}  <- {shown}{more}")
    libs = [lib for lib in audit.libraries if all_libraries or lib.status not in (NO_GPU_CODE, "runnable")]
    if libs:
        out.append("")
        rows = [
            [
                lib.path,
                lib.status,
                f"{lib.containers - lib.uncovered}/{lib.containers}",
                _archs(lib.sass, 8),
                _archs(lib.ptx, 4),
            ]
            for lib in libs
        ]
        out.append(ui.table(["LIBRARY", "STATUS", "MODULES OK", "SASS", "PTX"], rows, indent=2))
    for note in audit.notes:
        out.append(f"  note: {note}")
    for warning in audit.warnings:
        out.append(f"  warning: {warning}")
    out.append(
        f"  => {'runnable' if audit.runnable else 'NOT runnable'} on {audit.target}"
        + (f" ({audit.reason})" if audit.reason else "")
    )
    return "\n".join(out)


def _process(image: ProcessImage, label: str, *, list_loaded: bool = False) -> list[str]:
    out = [f"  {label}: entries {', '.join(image.entries) or '(none)'}"]
    if image.preload:
        out.append(f"    preloaded: {', '.join(image.preload)}")
    cell_libs = [item for item in image.loaded if not item.path.startswith("/")]
    out.append(f"    loaded: {len(image.loaded)} objects, {len(cell_libs)} from the cell")
    if list_loaded and image.loaded:
        rows = [[item.soname, item.how, item.path, item.loaded_by or "-"] for item in image.loaded]
        out.append(ui.table(["SONAME", "HOW", "PATH", "LOADED BY"], rows, indent=6))
    for m in image.missing:
        out.append(f"    MISSING ({m.how}) {m.describe()}")
    if image.optional_missing:
        names = sorted({m.soname for m in image.optional_missing})
        out.append(f"    optional (named in strings, not found): {' '.join(names)}")
    if image.mixed_cuda:
        parts = "; ".join(f"cu{k}: {' '.join(v)}" for k, v in image.cuda_majors.items())
        out.append(f"    cu12 and cu13 CUDA libraries in one process: {parts}")
    if image.from_system:
        out.append(f"    CUDA libraries taken from this machine, not the cell: {' '.join(image.from_system)}")
    if image.via_ld_library_path:
        out.append(f"    found only through LD_LIBRARY_PATH: {' '.join(image.via_ld_library_path)}")
    return out


def format_closure(audit: ClosureAudit, *, all_objects: bool = False) -> str:
    out = [f"Closure audit: {audit.root} ({audit.objects_checked} ELF files, {audit.seconds:.2f} s)"]
    out += _process(audit.process, "process with LD_LIBRARY_PATH unset", list_loaded=all_objects)
    if audit.process_with_env is not None:
        out += _process(
            audit.process_with_env, f"process with LD_LIBRARY_PATH={':'.join(audit.process_with_env.ld_library_path)}"
        )
        out.append(
            "  the cell "
            + (
                "DEPENDS on LD_LIBRARY_PATH"
                if audit.depends_on_ld_library_path
                else "does not depend on LD_LIBRARY_PATH"
            )
        )
    objs = audit.objects if all_objects else audit.objects[:20]
    if audit.objects:
        out.append(f"  {len(audit.objects)} files with a DT_NEEDED the loader would not find (each loaded alone):")
        for obj in objs:
            out.append(f"    {obj.path} [{obj.package}]: {' '.join(obj.missing)}")
        if len(objs) < len(audit.objects):
            out.append(f"    ... {len(audit.objects) - len(objs)} more (--all)")
    for warning in audit.warnings:
        out.append(f"  warning: {warning}")
    out.append("  => " + ("all required libraries resolve" if audit.runnable else f"NOT runnable ({audit.reason})"))
    return "\n".join(out)

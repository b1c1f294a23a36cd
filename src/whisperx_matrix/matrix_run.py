"""`nox -s matrix`: build (or reuse) each selected cell, audit it, run the cell suite in it, judge it, and
judge the document's claims from what was observed. A cell's outcome is data; nothing escapes as an error
except the final "some outcome was unexpected".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import build as builds
from . import freshness, paths, preflight, resultcache, speech, tools, ui, verdict
from . import lock as locks
from . import matrix as matrices
from .errors import BuildError, FatalError, SelfTestError, UnexpectedOutcomeError

RESULT_SCHEMA = 1
CHECK_NAMES = ("lock", "build", "selftest", "arch", "closure", "suite")


def _check(status: str, detail: str = "", *, expected: bool = True, seconds: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "expected": expected, "detail": detail}
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
    return out


def machine() -> dict[str, Any]:
    """What the run ran on, for the report (no host names, no paths, no secrets)."""
    mem = paths.memory_gib()
    from . import doctor

    gpu = None
    found = doctor.collect()  # never raises: a failing probe is a note, and no GPU reads as "no GPU"
    if found.gpus:
        g = found.gpus[0]
        gpu = {
            "name": g.name,
            "compute_capability": f"{g.sm // 10}.{g.sm % 10}" if g.sm else None,
            "driver": found.driver,
            "cuda": found.cuda,
        }
    from .secrets import token_present

    return {
        "description": f"{os.cpu_count()} cores, {mem} GiB, {'GPU: ' + str(gpu['name']) if gpu else 'no GPU'}",
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "gpu": gpu,
        "uv": _uv_version(),
        "hf_token_present": bool(token_present().get("HF_TOKEN")),
    }


def _uv_version() -> str | None:
    try:
        return tools.run([tools.uv_bin(), "--version"]).stdout.strip()
    except FatalError:  # a probe on a machine without uv
        return None


def _named_by_library(name: str, pkg: dict[str, Any]) -> str:
    """'torch (torch/lib/libtorch_cuda.so)' where the summary narrowed a package to one library, else the name."""
    return f"{name} ({pkg['library']})" if pkg.get("library") else name


def _arch_summary(report: Any) -> dict[str, Any]:
    arch = report.arch
    packages = {}
    for p in arch.packages:
        name = p.package.split()[0]
        packages[name] = {
            "status": p.status,
            "runnable": p.runnable,
            "sass": list(p.sass),
            "ptx": list(p.ptx),
            "via": p.via,
        }
        if p.profiling_only:
            packages[name]["profiling_only"] = True
        if p.origins:
            packages[name]["origins"] = [{"libraries": list(libs), "archs": list(tags)} for libs, tags in p.origins]
    # torch's own kernels live in libtorch_cuda.so; the package total also counts bundled CUDA libraries
    # (torch 2.5.1's compute_90 PTX is cuSPARSELt's), so claims about "torch's kernels" cite this file.
    for lib in arch.libraries:
        if lib.path.endswith("torch/lib/libtorch_cuda.so") and "torch" in packages:
            packages["torch"].update(
                sass=list(lib.sass),
                ptx=list(lib.ptx),
                library=lib.path,
                package_sass=packages["torch"]["sass"],
                package_ptx=packages["torch"]["ptx"],
            )
    return {
        "target": arch.target,
        "runnable": arch.runnable,
        "reason": arch.reason,
        "packages": packages,
        "torch_arch_list": list(arch.torch_arch_list or []),
        "files": arch.files,
        "seconds": arch.seconds,
        **({"cpu_only": list(arch.cpu_only)} if arch.cpu_only else {}),
    }


def _closure_summary(report: Any) -> dict[str, Any]:
    c = report.closure
    return {
        "runnable": c.runnable,
        "missing_sonames": list(c.missing),
        "missing": [m.describe() for m in c.process.missing],
        "loaded": {item.soname: f"{item.path} ({item.package})" for item in c.process.loaded},
        "mixed_cuda": c.process.mixed_cuda,
        "cuda_majors": {k: list(v) for k, v in c.process.cuda_majors.items()},
        "ld_library_path_dependent": bool(c.depends_on_ld_library_path),
        "seconds": c.seconds,
    }


def _cuda_runtime(site: Path) -> str | None:
    """The CUDA runtime the env bundles: the version of its nvidia-cuda-runtime wheel (cu12 or cu13 naming)."""
    from importlib import metadata

    for dist in metadata.distributions(path=[str(site)]):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime"):
            return dist.version
    return None


def _failure_reasons(failed: list[dict[str, Any]]) -> list[str]:
    """The reason tokens of failed cell-suite tests, once each, in order."""
    return list(dict.fromkeys(verdict.classify(t.get("error", "")) for t in failed))


def compare_suites(without: dict[str, Any] | None, with_: dict[str, Any] | None) -> dict[str, Any]:
    """The suite run twice (LD_LIBRARY_PATH unset, then set): each side judged on the tests that ran in both,
    so a test one run skips on purpose does not tip the comparison."""

    def outcomes(data: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        return {t["test"]: t for t in (data or {}).get("tests", []) if t["outcome"] != "skipped"}

    a, b = outcomes(without), outcomes(with_)
    common = sorted(set(a) & set(b))

    def side(data: dict[str, Any] | None, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if data is None:
            return {"passed": False, "summary": "the suite crashed", "reasons": ["suite-crashed"]}
        failed = [tests[n] for n in common if tests[n]["outcome"] == "failed"]
        reasons = _failure_reasons(failed)
        text = f"{len(common) - len(failed)} of {len(common)} passed"
        return {
            "passed": not failed,
            "summary": text + (f" ({', '.join(reasons)})" if reasons else ""),
            "reasons": reasons,
        }

    return {"without": side(without, a), "with": side(with_, b), "compared": common}


def _run_suite(
    m: matrices.Matrix, cell: matrices.Cell, env_dir: Path, cell_work: Path, env: dict[str, str], name: str
) -> tuple[dict[str, Any] | None, tools.Completed]:
    results = cell_work / f"{name}.json"
    results.unlink(missing_ok=True)
    proc = tools.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pytest",
            str(m.root / "tests" / "cell"),
            "-q",
            f"--junitxml={cell_work / (name + '.xml')}",
        ],
        cwd=m.root,
        env=env | {"WXM_CELL_RESULTS": str(results)},
        timeout=1800,
    )
    return (json.loads(results.read_text()) if results.exists() else None), proc


def suite_env(cell_id: str, sm: int, work: Path, audit: dict[str, Any] | None) -> dict[str, str]:
    """The cell suite's inputs: speech with its text, and the static audit's answers that the suite checks
    against its own observations (torch's arch list, the real loader). A probe (``audit`` None) gets neither:
    its tests that need them say so."""
    env = builds.clean_env() | {"WXM_CELL_ID": cell_id, "WXM_TARGET_SM": str(sm)}
    if audit is None:
        return env
    sample = speech.selftest_speech()
    text_file = work / "reference.txt"
    text_file.write_text(sample.text)
    audit_json = work / "audit-static.json"
    audit_json.write_text(json.dumps(audit))
    return env | {
        "WXM_SPEECH_WAV": str(sample.wav),
        "WXM_SPEECH_TEXT": str(text_file),
        "WXM_AUDIT_JSON": str(audit_json),
    }


@dataclass
class Stage:
    """One stage of a cell's run, as pytest's TestReport is one phase of a test: what happened and why. The
    orchestrator writes the cell's record from these; the verdict reads the record, never a log.

    ``status``: pass, fail, skip (did not run: ``skipped`` says why) or infra (the machine's failure, not the
    stack's: the cell is not testable). ``record``: what the stage adds to the cell's result."""

    name: str
    status: str
    detail: str = ""
    reasons: list[str] = field(default_factory=list)
    skipped: str | None = None
    seconds: float | None = None
    evidence: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    check_notes: dict[str, Any] = field(default_factory=dict)  # extra fields of its check square

    def check(self) -> dict[str, Any]:
        """The stage as the report's check square: pass, fail or skip, with its detail and reasons."""
        status = "skip" if self.status == "infra" else self.status
        out = _check(status, self.skipped if status == "skip" and self.skipped else self.detail, seconds=self.seconds)
        if status != "skip":
            out["reasons"] = list(self.reasons)
        return out | self.check_notes


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def stage_lock(m: matrices.Matrix, cell: matrices.Cell, cell_work: Path) -> tuple[Stage, Path | None]:
    """Committed for stable cells (must be fresh); resolved now for floating ones (nightly: from its index; latest:
    from the default index), kept in the result with its sha256 so the run can be rebuilt (--lock-from)."""
    t0 = time.perf_counter()
    if cell.floating:
        lock_file = cell_work / "resolved-lock.txt"
        status = locks.resolve_floating(m, cell, lock_file)
        if status.infra is not None:
            return Stage("lock", "infra", skipped=status.detail), None
        if status.state not in ("written", "fresh"):
            return Stage(
                "lock", "fail", status.detail, [f"resolve-failed:{cell.id}"], evidence=[f"lock: {status.detail}"]
            ), None
        text = lock_file.read_text(encoding="utf-8")
        note = cell.describe_index()  # by name or role, never by host: results are committed
        lock = {
            "floating": True,
            "channel": cell.channel,
            "index": cell.index.name if cell.index else None,  # None: the default index (index_note says so)
            "index_note": note,
            "sha256": locks.sha256_bytes(text.encode()),
            "text": text,
        }
        return Stage("lock", "pass", f"resolved now from {note}", seconds=_since(t0), record={"lock": lock}), lock_file
    status = locks.check(m, [cell])[0]
    if status.state != "fresh":
        # A missing or stale lock is the checkout's state, not the stack's: no evidence either way.
        why = f"lock {status.state}: {status.detail}; regenerate: {locks.REGENERATE} -- {cell.id}"
        return Stage("lock", "infra", skipped=why), None
    path = locks.lock_path(m, cell)
    data = path.read_bytes()
    lock = {"file": f"constraints/{path.name}", "sha256": locks.sha256_bytes(data)}
    refused = locks.unresolvable(data.decode("utf-8"))
    if refused is not None:
        # The resolver's answer, recorded in the lock: the cell's pins have no wheel for its platform.
        reason = locks.unresolvable_reason(refused, cell.lock_id)
        return Stage(
            "lock",
            "fail",
            f"constraints/{path.name} records that it does not resolve for {cell.platform}",
            [reason],
            seconds=_since(t0),
            evidence=[f"lock ({cell.platform}): {refused}"],
            record={"lock": lock | {"unresolvable": refused}},
        ), None
    return Stage(
        "lock", "pass", f"constraints/{cell.lock_id}.txt is fresh", seconds=_since(t0), record={"lock": lock}
    ), None


@dataclass
class Built:
    """The build stage and the self-test that the build runs, with the env they left (None if none)."""

    build: Stage
    selftest: Stage
    env: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def stage_build(m: matrices.Matrix, cell: matrices.Cell, lock_file: Path | None) -> Built:
    """Build (or reuse) the env and its CPU self-test. A build that fails for the machine's reason is infra."""
    t0 = time.perf_counter()
    not_run = Stage("selftest", "skip", skipped="the build did not finish")
    try:
        result = builds.build(m, cell, lock_file=lock_file, progress=lambda msg: ui.say(f"  {msg}"))
        env_dir, st = result.env, result.selftest
        ran_now = "selftest" in result.seconds  # a fresh build, or a reused one that had none
        build = Stage("build", "pass", "; ".join(ln.strip() for ln in (result.patches or "no patches").splitlines()))
        build.check_notes["work"] = result.state
    except SelfTestError as exc:
        env_dir, st = Path(exc.record["env"]), exc.record
        ran_now = not exc.record.get("reused")
        build = Stage("build", "pass", "built; self-test failed, so it is not linked")
    except FatalError as exc:
        if isinstance(exc, BuildError) and exc.infra is not None:  # the machine's failure, not the stack's
            return Built(Stage("build", "infra", skipped=f"{exc.infra}: {exc}"), not_run)
        reason = f"build-failed:{type(exc).__name__}"
        return Built(Stage("build", "fail", str(exc), [reason], evidence=[f"build: {exc}"]), not_run)
    build.seconds = _since(t0)
    seconds = {"build": build.seconds}
    if not st:
        return Built(build, Stage("selftest", "skip", skipped="the build recorded no self-test"), env_dir, {}, seconds)
    # A reused build carries the self-test it passed (or failed) when it was built: not this run's time.
    seconds["selftest"] = float(st.get("seconds") or 0.0) if ran_now else 0.0
    if ran_now:
        seconds["build"] = round(max(0.0, seconds["build"] - (st.get("seconds") or 0)), 2)
    if st.get("passed"):
        tr = st["transcription"]
        selftest = Stage("selftest", "pass", f"WER {tr['wer']:.0%} on {st['audio_seconds']:.0f} s of speech (CPU)")
    else:
        line = st["failure"].split(": ", 1)[1] if ": " in st["failure"] else st["failure"]
        selftest = Stage(
            "selftest", "fail", st["failure"], [verdict.classify(line)], evidence=[f"self-test: {st['failure']}"]
        )
    versions = {k: v for k, v in st.get("versions", {}).items() if v}
    return Built(build, selftest, env_dir, versions, seconds)


def stage_audit(cell: matrices.Cell, site: Path, sm: int, *, python: Path | None) -> tuple[Stage, Stage, Any]:
    """The static audits (no GPU needed): torch's and every package's kernels against sm, and the library
    closure. Returns the arch and closure stages and the audit report (the suite checks its answers). ``python``:
    the env's interpreter (torch's own arch list is read with it); None for wheels of another platform, whose
    closure is judged with that platform's loader (SearchEnv.foreign)."""
    from .audit import audit_site
    from .audit.loader import SearchEnv

    t0 = time.perf_counter()
    foreign = cell.arch != matrices.native_arch()
    report = audit_site(
        site,
        sm,
        python=python,
        ld_library_path=None if foreign else os.environ.get("LD_LIBRARY_PATH"),
        progress=False,
        label=cell.id,
        env=SearchEnv.foreign(cell.arch) if foreign else None,
    )
    arch, closure = _arch_summary(report), _closure_summary(report)
    seconds = _since(t0)
    arch_reasons = [r for r in report.reasons if r.startswith(("arch-unsupported", "no-cuda-build"))]
    closure_reasons = [r for r in report.reasons if r.startswith("missing-soname")]
    torch_arch = arch["packages"].get("torch", {})
    arch_evidence = [
        f"{_named_by_library(name, pkg)}: no sm_{sm} image (SASS {' '.join(pkg['sass'])}; PTX {' '.join(pkg['ptx']) or 'none'})"
        + (
            "; a profiler's kernels (CUPTI): they run only under a profiler, so this does not decide"
            if pkg.get("profiling_only")
            else ""
        )
        for name, pkg in sorted(arch["packages"].items())
        if not pkg["runnable"]
    ] + [
        f"{name}: a CPU-only build: none of its libraries carries GPU code (no fatbin), so device='cuda' cannot use it"
        for name in arch.get("cpu_only", [])
    ]
    arch_stage = Stage(
        "arch",
        "fail" if arch_reasons else "pass",
        f"sm_{sm}: {_named_by_library('torch', torch_arch)} SASS {' '.join(torch_arch.get('sass', [])) or '-'}; "
        f"PTX {' '.join(torch_arch.get('ptx', [])) or '-'}",
        arch_reasons,
        evidence=arch_evidence,
        record={"cuda_runtime": _cuda_runtime(site), "arch": arch},
    )
    closure_stage = Stage(
        "closure",
        "fail" if closure_reasons else "pass",
        "; ".join(closure["missing"]) or "every required soname resolves, LD_LIBRARY_PATH unset",
        closure_reasons,
        seconds=seconds,
        evidence=list(closure["missing"]),
        record={"closure": closure},
    )
    return arch_stage, closure_stage, report


def stage_suite(m: matrices.Matrix, cell: matrices.Cell, env_dir: Path, cell_work: Path, env: dict[str, str]) -> Stage:
    """The cell suite in the cell's own python. Its skips are recorded with their reasons: a skipped test is
    never a pass (the verdict reads which parts ran)."""
    t0 = time.perf_counter()
    data, proc = _run_suite(m, cell, env_dir, cell_work, env, "suite")
    if data is None:
        return Stage("suite", "fail", proc.last_error_line(), ["suite-crashed"], seconds=_since(t0))
    record: dict[str, Any] = {"suite": {k: v for k, v in data.items() if k != "observations"}}
    observations = data.get("observations") or {}
    record |= {
        key: observations[key] for key in ("gpu", "loader", "torch_arch_flags", "env_names") if key in observations
    }
    failed = [t for t in data["tests"] if t["outcome"] == "failed"]
    skipped = [t for t in data["tests"] if t["outcome"] == "skipped"]
    passed = len(data["tests"]) - len(failed) - len(skipped)
    detail = f"{passed} passed, {len(failed)} failed, {len(skipped)} skipped"
    if failed:
        detail += f"; first failure: {failed[0]['test']}: {failed[0].get('error', '')[:160]}"
    for why in dict.fromkeys(t.get("skip_reason", "") for t in skipped):
        detail += f"; skipped: {why}"
    return Stage(
        "suite",
        "fail" if failed else "pass",
        detail,
        _failure_reasons(failed),
        skipped=None if passed or failed else "every test was skipped",
        seconds=_since(t0),
        evidence=[f"{t['test']}: {t.get('error', '')}" for t in failed],
        record=record,
    )


def stage_ld_compare(
    m: matrices.Matrix,
    cell: matrices.Cell,
    env_dir: Path,
    cell_work: Path,
    env: dict[str, str],
    without: dict[str, Any] | None,
) -> dict[str, Any]:
    """The guide's way: every nvidia/*/lib folder of the env on LD_LIBRARY_PATH. The same suite again, compared
    test by test with the run that had it unset."""
    folders = sorted(str(p) for p in paths.site_packages(env_dir).glob("nvidia/*/lib") if p.is_dir())
    guide_env = env | {"LD_LIBRARY_PATH": os.pathsep.join(folders), "WXM_SUITE_VARIANT": "guide-ld-library-path"}
    with_data, _ = _run_suite(m, cell, env_dir, cell_work, guide_env, "suite-ldlp")
    comparison = compare_suites(without, with_data)
    comparison["with"]["folders"] = len(folders)
    return comparison


@dataclass
class CacheContext:
    """The results cache and the key inputs shared by every cell of one run (read once: machine, code, patches)."""

    cache: resultcache.ResultCache
    machine: dict[str, Any]
    code: str
    patches: str
    read: bool = True  # False (--no-cache): run every cell, and store what it finds

    @classmethod
    def for_run(cls, m: matrices.Matrix, *, read: bool = True) -> CacheContext:
        return cls(
            resultcache.ResultCache(),
            resultcache.machine_inputs(),
            resultcache.code_hash(m.root),
            resultcache.patches_hash(m.root),
            read,
        )

    def inputs(
        self, m: matrices.Matrix, cell: matrices.Cell, lock: Stage, *, sm: int, suite: bool, ld_compare: bool
    ) -> dict[str, Any]:
        """The cell's key inputs (resultcache.key_inputs), once its lock stage has passed."""
        return resultcache.key_inputs(
            m,
            cell,
            lock_sha256=lock.record["lock"]["sha256"],
            sm=sm,
            suite=suite,
            ld_compare=ld_compare,
            machine=self.machine,
            code=self.code,
            patches=self.patches,
        )


def cell_keys(m: matrices.Matrix, cells: list[matrices.Cell], *, sm: int, suite: bool = True) -> dict[str, str | None]:
    """Each cell's results-cache key as `nox -s matrix` would compute it here (a floating cell's lock resolved
    now); None where the lock stage does not pass (not testable: nothing to look up). The GPU workflow keys
    actions/cache with it, so its runner runs only the cells whose inputs changed."""
    claims = verdict.load_claims(m.root / "claims.toml", m)
    ld_cells = verdict.claim_cells(claims, "needs-ld-library-path")
    ctx = CacheContext.for_run(m)
    keys: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="cell-keys-", dir=paths.cache_dir()) as tmp:
        for cell in cells:
            (Path(tmp) / cell.id).mkdir()
            lock, _ = stage_lock(m, cell, Path(tmp) / cell.id)
            keys[cell.id] = (
                resultcache.key_of(
                    ctx.inputs(m, cell, lock, sm=sm, suite=suite, ld_compare=verdict.names_cell(cell.id, ld_cells))
                )
                if lock.status == "pass"
                else None
            )
    return keys


def run_cell(
    m: matrices.Matrix,
    cell: matrices.Cell,
    *,
    sm: int,
    work: Path,
    suite: bool = True,
    ld_compare: bool = False,
    cache: CacheContext | None = None,
) -> dict[str, Any]:
    """Every stage for one cell, in order, each a Stage record; a stage that cannot run says why and the rest
    are skipped. ``ld_compare`` also runs the suite with LD_LIBRARY_PATH set to the guide's folders. With
    ``cache``, once the lock is known (resolved now for a floating cell) the cell's key is looked up: a hit is the
    stored record with a ``cached`` mark; a miss runs and stores its result. The key is claimed while it runs, so
    two runs at once (pytest workers, CI shards) never build and run the same cell twice: the second waits and
    takes the first's result."""
    t_cell = time.perf_counter()
    cell_work = work / cell.id
    cell_work.mkdir(parents=True, exist_ok=True)
    lock, lock_file = stage_lock(m, cell, cell_work)
    if lock.status != "pass" or cache is None:
        return _run_stages(m, cell, lock, lock_file, sm=sm, cell_work=cell_work, suite=suite, ld=ld_compare, t=t_cell)
    inputs = cache.inputs(m, cell, lock, sm=sm, suite=suite, ld_compare=ld_compare)
    key = resultcache.key_of(inputs)
    with cache.cache.claim(key):
        hit = cache.cache.get(key) if cache.read else None
        if hit is not None:
            return hit
        out = _run_stages(m, cell, lock, lock_file, sm=sm, cell_work=cell_work, suite=suite, ld=ld_compare, t=t_cell)
        cache.cache.put(key, inputs, out)
        return out


def _run_stages(
    m: matrices.Matrix,
    cell: matrices.Cell,
    lock: Stage,
    lock_file: Path | None,
    *,
    sm: int,
    cell_work: Path,
    suite: bool,
    ld: bool,
    t: float,
) -> dict[str, Any]:
    """The stages after the lock: build and self-test, the static audits, the suite (and its LD comparison)."""
    stages: list[Stage] = [lock]
    rec: dict[str, Any] = {"versions": {}, "seconds": {}}
    if lock.status == "pass" and cell.arch != matrices.native_arch():
        stages += _static_stages(m, cell, lock_file, sm=sm, rec=rec)
    elif lock.status == "pass":
        built = stage_build(m, cell, lock_file)
        stages += [built.build, built.selftest]
        rec["versions"], rec["seconds"] = built.versions, built.seconds
        if built.env is not None:
            arch, closure, report = stage_audit(
                cell, paths.site_packages(built.env), sm, python=built.env / "bin" / "python"
            )
            stages += [arch, closure]
            rec["seconds"]["audit"] = closure.seconds
            if suite:
                site = paths.site_packages(built.env)
                env = suite_env(cell.id, sm, cell_work, static_answers(report, site))
                ran = stage_suite(m, cell, built.env, cell_work, env)
                stages.append(ran)
                if ld:
                    t0 = time.perf_counter()
                    ran.record["ld_library_path"] = stage_ld_compare(
                        m, cell, built.env, cell_work, env, ran.record.get("suite")
                    )
                    ran.seconds = round((ran.seconds or 0) + _since(t0), 2)
                rec["seconds"]["suite"] = ran.seconds
            else:
                stages.append(Stage("suite", "skip", skipped="--no-suite was given"))
    return finish_cell(cell, sm, stages, rec, t)


# The versions a cell record names (the self-test reads them in the env; a foreign cell's come from its lock).
_VERSION_DISTS = ("torch", "torchaudio", "ctranslate2", "faster-whisper", "pyannote-audio", "whisperx")


def _static_stages(
    m: matrices.Matrix, cell: matrices.Cell, lock_file: Path | None, *, sm: int, rec: dict[str, Any]
) -> list[Stage]:
    """A cell for another machine (aarch64 wheels on this x86_64 one): its locked wheels are fetched, unpacked and
    audited statically (kernels, library closure with that platform's loader); nothing is built or run, and the
    build, self-test and suite say so. A static failure decides the cell; the absence of one decides nothing."""
    from .wheelsite import install_site

    here = matrices.native_arch()
    not_run = f"{verdict.NOT_RUN_PLATFORM} {cell.arch} (this machine is {here})"
    lock_path = lock_file or locks.lock_path(m, cell)
    t0 = time.perf_counter()
    site, why = install_site(lock_path, cell)
    if site is None:
        infra = why.startswith(("package index unreachable", "disk full"))
        fetch = (
            Stage("build", "infra", skipped=f"fetching the {cell.arch} wheels: {why}")
            if infra
            else Stage("build", "fail", why, [f"fetch-failed:{cell.id}"], evidence=[f"fetch: {why}"])
        )
        return [fetch, Stage("selftest", "skip", skipped=not_run)]
    pins = {str(p.name): str(p.version) for p in locks.read_pins(lock_path.read_text(encoding="utf-8"))}
    rec["versions"] = {d: pins[d] for d in _VERSION_DISTS if d in pins}
    rec["seconds"]["build"] = _since(t0)
    wheels = f"its {len(pins)} locked wheels fetched for {cell.platform} and judged statically"
    arch, closure, _ = stage_audit(cell, site, sm, python=None)
    rec["seconds"]["audit"] = closure.seconds
    return [
        Stage("build", "skip", skipped=f"{not_run}: {wheels}"),
        Stage("selftest", "skip", skipped=not_run),
        arch,
        closure,
        Stage("suite", "skip", skipped=f"{not_run}: the kernels and the library closure were judged statically"),
    ]


def finish_cell(
    cell: matrices.Cell, sm: int, stages: list[Stage], rec: dict[str, Any], t_cell: float
) -> dict[str, Any]:
    """The cell's result from its stage records: observed reasons, what was not observed, and the verdict."""
    expected = cell.expected(sm)
    # Every failure this cell is expected to show on this target: the reason for any device and the target's own.
    known = {r for e in (cell.expect, expected) for r in (e.reason, *e.also) if r}
    by_name = {s.name: s for s in stages}
    out: dict[str, Any] = {
        "id": cell.id,
        "summary": cell.summary,
        "channel": cell.channel,
        "cuda": cell.cuda,
        "python": cell.python,
        "platform": cell.platform,
        "expected": {"status": expected.status, "reason": expected.reason},
        "checks": {},
        "versions": rec.get("versions", {}),
        "evidence": [e for s in stages for e in s.evidence],
        "seconds": {k: v for k, v in rec.get("seconds", {}).items() if v is not None},
    }
    for name in CHECK_NAMES:
        stage = by_name.get(name)
        check = stage.check() if stage else _check("skip", "not run")
        if check["status"] == "fail":  # a failing check is expected only if every reason it gives is expected
            check["expected"] = bool(check.get("reasons")) and set(check["reasons"]) <= known
        out["checks"][name] = check
    for stage in stages:
        out |= stage.record
    infra = next((s.skipped for s in stages if s.status == "infra"), None)
    reasons = [] if infra else list(dict.fromkeys(r for s in stages for r in s.reasons))
    status = "not-testable" if infra else "fail" if reasons else "pass"
    out["observed"] = {"status": status, "reasons": reasons}
    if infra:
        out["observed"]["note"] = f"not testable here, infra: {infra}"
    elif gaps := verdict.unobserved(out):
        out["observed"]["unobserved"] = gaps
        if not verdict.complete(out) and not reasons:
            out["observed"]["status"] = verdict.INCOMPLETE
    out["verdict"] = verdict.judge_cell(
        expected, reasons, testable=infra is None, complete=infra is not None or verdict.complete(out)
    )
    out["unexpected"] = out["verdict"] in verdict.UNEXPECTED
    out["seconds"]["total"] = _since(t_cell)
    return out


def static_answers(report: Any, site: Path) -> dict[str, Any]:
    """What the static audit says, for the suite to check against what the cell's own python observes."""
    torch_lib = _arch_summary(report)["packages"].get("torch") or {}
    loaded = {
        item.soname: str(site / item.path) for item in report.closure.process.loaded if not item.path.startswith("/")
    }  # the cell's own libraries; system ones are the machine's
    return {
        "site": str(site),
        "loaded": loaded,
        "missing": list(report.closure.missing),
        "torch_sass": list(torch_lib.get("sass") or []),
        "torch_ptx": list(torch_lib.get("ptx") or []),
    }


def run_matrix(
    m: matrices.Matrix,
    cells: list[matrices.Cell],
    *,
    sm: int,
    jobs: int,
    suite: bool = True,
    claims_path: Path | None = None,
    probes: list[dict[str, Any]] | None = None,
    fresh: bool = False,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Every selected cell, then the claims judged on them and the probes. ``fresh``: also read the index for
    the report's freshness line (what the run judged against the newest releases; the CLI does it).
    ``use_cache``: answer a cell whose key is in the results cache from it (resultcache), store the rest."""
    t_run = time.perf_counter()
    claims = verdict.load_claims(claims_path or m.root / "claims.toml", m)  # rejected at load if it names a bad cell
    ld_cells = verdict.claim_cells(claims, "needs-ld-library-path")
    # One scratch folder per run: two matrix runs at once (CI shards, pytest workers) never share files.
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matrix-work-", dir=paths.cache_dir()))
    tools.require("ffmpeg")
    # Found once, before the workers: the uv package's finder reads sysconfig, whose first read is not thread-safe
    # on Python 3.11 (two cells starting at once crashed in it with "can only concatenate str (not NoneType)").
    tools.uv_bin()
    speech.selftest_speech()  # made once, before the workers need it
    results: dict[str, dict[str, Any]] = {}
    ctx = CacheContext.for_run(m, read=use_cache)
    ui.say(
        f"matrix: {len(cells)} cells, target sm_{sm}, {jobs} at a time; results cache {ctx.cache.folder}"
        + ("" if use_cache else " (not read: --no-cache)")
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool, ui.progress(len(cells), "matrix") as bar:
        futures = {
            pool.submit(
                run_cell,
                m,
                c,
                sm=sm,
                work=work,
                suite=suite,
                ld_compare=verdict.names_cell(c.id, ld_cells),
                cache=ctx,
            ): c
            for c in cells
        }
        for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            cell = futures[fut]
            rec = fut.result()  # a bug in a stage stops the run: it is never recorded as an outcome
            results[cell.id] = rec
            mark = "UNEXPECTED " if rec["unexpected"] else ""
            mark += f"(cached from {rec['cached']['from']}) " if rec.get("cached") else ""
            why = ", ".join(rec["observed"]["reasons"]) or rec["observed"].get("note", "")
            ui.say(
                f"[{n}/{len(cells)}] {cell.id}: {mark}{rec['verdict']}{f' ({why})' if why else ''} "
                f"[{rec['seconds'].get('total', 0):.0f} s]"
            )
            bar.advance(note=cell.id)
    shutil.rmtree(work, ignore_errors=True)
    ordered = [results[c.id] for c in cells]
    stage_totals = {
        k: round(sum(r["seconds"].get(k) or 0 for r in ordered), 2) for k in ("build", "selftest", "audit", "suite")
    }

    result = {
        "schema": RESULT_SCHEMA,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target_sm": sm,
        "machine": machine(),
        "selectors": [c.id for c in cells],
        "cells": ordered,
        "probes": list(probes or []),
        "claims": verdict.judge_claims(claims, results, probes or []),
        "totals": verdict.totals(ordered),
        "cached_cells": sum(bool(r.get("cached")) for r in ordered),
        "seconds": {"total": round(time.perf_counter() - t_run, 2), **stage_totals},
    }
    if fresh:
        result["freshness"] = freshness.judge(ordered, freshness.collect(), m.root)
    return result


def print_summary(result: dict[str, Any]) -> None:
    t = result["totals"]
    print(
        f"\n{t['cells']} cells on sm_{result['target_sm']}: {t['as_expected']} as expected, "
        f"{t['unexpected']} unexpected, {t['not_testable']} not testable here"
        + (f", {result['cached_cells']} from the results cache" if result.get("cached_cells") else "")
        + f" [{result['seconds']['total']:.0f} s]\n"
    )
    rows = []
    for r in result["cells"]:
        exp = r["expected"]["status"] + (f" ({r['expected']['reason']})" if r["expected"].get("reason") else "")
        why = ", ".join(r["observed"]["reasons"]) or r["observed"].get("note", "")
        rows.append(
            [r["id"], exp, r["verdict"] + (f" ({why})" if why and r["verdict"] != "failed-as-expected" else "")]
        )
    print(ui.table(["CELL", "EXPECTED", "VERDICT"], rows))
    print()
    rows = []
    for c in result["claims"]:
        rows.append([c["id"], c["verdict"], c["quote"]])
        rows += [["", "", verdict.evidence_line(item)[:200]] for item in c["evidence"]]
        rows += [["", "", f"missing: {why[:200]}"] for why in c.get("missing", [])]
    print(ui.table(["CLAIM", "VERDICT", "THE DOCUMENT SAYS, AND THE EVIDENCE"], rows))


def cmd_matrix(args: argparse.Namespace) -> int:
    m = matrices.load()
    cells = m.select(args.selectors)
    preflight.check_system("matrix")
    sm = args.sm or m.target_sm
    jobs = args.jobs or max(1, min(len(cells), os.cpu_count() or 1))
    from . import report

    result = run_matrix(
        m,
        cells,
        sm=sm,
        jobs=jobs,
        suite=not args.no_suite,
        probes=report.load_probes(args.probes),
        fresh=not args.no_index,
        use_cache=not args.no_cache,
    )
    written = report.write_report(result, Path(args.out))
    if args.update_readme:
        report.update_readme(m.root / "README.md", result)
    print_summary(result)
    print(f"\nreport: {', '.join(str(p) for p in written.values())}")
    if result["totals"]["unexpected"]:
        bad = [r["id"] for r in result["cells"] if r["unexpected"]]
        raise UnexpectedOutcomeError(
            f"{len(bad)} unexpected outcome(s): {', '.join(bad)}",
            hint=f"see {Path(args.out) / 'matrix.md'} for the evidence",
        )
    return 0


def run_probe(python: str, *, label: str, sm: int, keyword: str | None = None) -> dict[str, Any]:
    """The cell suite in an env the matrix did not build (a GPU machine's own stack): its GPU observations,
    as a result with no cells and one probe record, to merge with matrix results."""
    m = matrices.load()
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="probe-work-", dir=paths.cache_dir()))
    try:
        env = suite_env(label, sm, work, None)
        results = work / "suite.json"
        cmd = [python, "-m", "pytest", str(m.root / "tests" / "cell"), "-q", *(["-k", keyword] if keyword else [])]
        proc = tools.run(cmd, cwd=m.root, env=env | {"WXM_CELL_RESULTS": str(results)}, timeout=1800)
        if not results.exists():
            raise FatalError(
                f"the cell suite did not run in {python}: {proc.last_error_line()}",
                hint="that python needs pytest (and torch for the GPU tests)",
            )
        data = json.loads(results.read_text())
        versions = tools.run(
            [
                python,
                "-c",
                "import json, importlib.metadata as m\n"
                "out = {}\nfor d in ('torch', 'ctranslate2', 'whisperx'):\n"
                "    try: out[d] = m.version(d)\n    except m.PackageNotFoundError: pass\n"
                "print(json.dumps(out))",
            ],
            env=builds.clean_env(),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    obs = data.get("observations") or {}
    probe = {
        "label": label,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": tools.run([python, "-c", "import platform; print(platform.python_version())"]).stdout.strip(),
        "versions": json.loads(versions.stdout or "{}") if versions.ok else {},
        "gpu": obs.get("gpu") or {"present": False},
        "suite": {k: v for k, v in data.items() if k != "observations"},
    }
    claims = verdict.load_claims(m.root / "claims.toml", m)
    return {
        "schema": RESULT_SCHEMA,
        "generated_at": probe["generated_at"],
        "target_sm": sm,
        "machine": machine(),
        "selectors": [],
        "cells": [],
        "probes": [probe],
        "claims": verdict.judge_claims(claims, {}, [probe]),
        "totals": verdict.totals([]),
        "seconds": {},
    }


def cmd_probe(args: argparse.Namespace) -> int:
    result = run_probe(args.python, label=args.label, sm=args.sm or matrices.load().target_sm, keyword=args.k)
    from . import report

    out = Path(args.out)
    report.atomic_write_json(out, report.redacted(result))
    gpu = result["probes"][0]["gpu"]
    tests = result["probes"][0]["suite"]["tests"]
    print(
        f"probe {args.label}: {'GPU ' + str(gpu.get('name')) if gpu.get('present') else 'no GPU'}; "
        + ", ".join(f"{t['test']} {t['outcome']}" for t in tests)
    )
    print(f"written: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matrix", help="build, audit and test the selected cells; judge the document's claims")
    p.add_argument("selectors", nargs="*", metavar="CELL", help="cells, aliases or globs (default: all)")
    p.add_argument("--sm", type=int, default=None, help="target compute capability (default: matrix.toml's, 120)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="cells at a time (default: the cores)")
    p.add_argument("--out", default="reports", help="report folder (default: reports/)")
    p.add_argument("--no-suite", action="store_true", help="skip the in-cell pytest suite (builds and audits only)")
    p.add_argument("--update-readme", action="store_true", help="rewrite README.md's claims table from this run")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="run every cell, even one whose key is in the results cache (the results are still stored)",
    )
    p.add_argument(
        "--no-index",
        action="store_true",
        help="do not read the package index for the report's freshness line (what the run judged against the newest releases)",
    )
    p.add_argument(
        "--probes",
        nargs="*",
        default=[],
        metavar="RESULT.json",
        help="judge with the GPU probe records of these results too (`probe` writes them)",
    )
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser(
        "probe",
        help="run the cell suite in any python (a GPU machine's own stack) and record its "
        "GPU observations as a result to merge",
    )
    p.add_argument("--python", required=True, help="the interpreter whose stack is probed")
    p.add_argument("--label", required=True, help="names the probe in reports (e.g. h200-host-torch)")
    p.add_argument("--out", required=True, metavar="RESULT.json")
    p.add_argument("--sm", type=int, default=None, help="target compute capability (default: matrix.toml's)")
    p.add_argument("-k", default=None, metavar="EXPR", help="pytest -k selection of the cell suite's tests")
    p.set_defaults(func=cmd_probe)

"""gpu-bundle (issue #22): the parts and their sums, the runner tools' lock, the input checks, the front door's
`setup` on real parts, and `bench pipeline --assemble-only` reading the cell and device from the step files.

No network: the wheel download itself is wheelhouse's (tests/unit/test_wheelhouse.py) and the rehearsal's."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from whisperx_matrix import cli, gpubundle
from whisperx_matrix import lock as locks
from whisperx_matrix import matrix as matrices
from whisperx_matrix.errors import BuildError, FatalError, LockError, NetworkError, UnknownCellError

ROOT = Path(__file__).resolve().parents[2]
FRONT_DOOR = ROOT / "scripts" / "gpu_front_door.sh"


def _tree(base: Path) -> list[tuple[Path, str]]:
    """A small bundle: two "wheels" of incompressible bytes, the tools' lock, a WAV; as (file, name in the tar)."""
    files = {
        "wh/a-1.0-py3-none-any.whl": os.urandom(150_000),
        "wh/b-2.0-py3-none-any.whl": os.urandom(90_001),
        "runner-tools.txt": b"a==1.0 --hash=sha256:00\n",
        "wxm-cache/audio/selftest-0.wav": os.urandom(40_000),
    }
    out = []
    for name, data in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append((path, name))
    return out


def _same_tree(members: list[tuple[Path, str]], into: Path) -> None:
    for path, name in members:
        assert (into / name).read_bytes() == path.read_bytes(), name


# ---------------------------------------------------------------- parts


def test_the_parts_are_the_tar_cut_at_the_part_size_with_their_sums_and_join_back(tmp_path: Path) -> None:
    members = _tree(tmp_path / "src")
    dest = tmp_path / "xp"
    parts = gpubundle.write_parts(members, dest, 64 * 1024)
    names = [p.path.name for p in parts]
    assert names == [f"p.{i:03d}" for i in range(len(parts))] and len(parts) >= 4
    assert all(p.size == 64 * 1024 for p in parts[:-1]) and 0 < parts[-1].size <= 64 * 1024
    # sha256sum -c's own format, checked by sha256sum itself
    sums = (dest / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{p.sha256}  {p.path.name}" for p in parts]
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest, check=True)
    assert gpubundle.check_sums(dest) == []
    # joined back by Python and by `cat | tar x`, as the front door does
    gpubundle.unpack_parts(dest, tmp_path / "py")
    _same_tree(members, tmp_path / "py")
    (tmp_path / "sh").mkdir()
    subprocess.run(f"cat {dest}/p.* | tar xf - -C {tmp_path / 'sh'}", shell=True, check=True)
    _same_tree(members, tmp_path / "sh")


def test_a_damaged_or_missing_part_is_named_and_nothing_is_unpacked(tmp_path: Path) -> None:
    dest = tmp_path / "xp"
    gpubundle.write_parts(_tree(tmp_path / "src"), dest, 64 * 1024)
    with (dest / "p.001").open("r+b") as fh:
        fh.write(b"x")
    (dest / "p.002").unlink()
    assert gpubundle.check_sums(dest) == ["p.002 (missing)", "p.001 (sha256 differs)"]
    with pytest.raises(BuildError, match="do not match SHA256SUMS: p.002 \\(missing\\)"):
        gpubundle.unpack_parts(dest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_smaller_bundle_leaves_no_part_of_the_last_one_behind(tmp_path: Path) -> None:
    members = _tree(tmp_path / "src")
    dest = tmp_path / "xp"
    many = gpubundle.write_parts(members, dest, 32 * 1024)
    few = gpubundle.write_parts(members[2:], dest, 32 * 1024)
    assert len(few) < len(many)
    assert sorted(p.name for p in dest.glob("p.*")) == [p.path.name for p in few]
    assert gpubundle.check_sums(dest) == []


def test_one_device_call_per_part_the_last_with_the_sums_and_setup(tmp_path: Path) -> None:
    dest = ROOT / ".xp"
    parts = [gpubundle.Part(dest / f"p.{i:03d}", 10, "0" * 64) for i in range(3)]
    calls = gpubundle.device_calls(parts, ROOT, dest)
    assert calls[0] == {"carry": [".xp/p.000"], "command": "mkdir -p /tmp/parts && mv .xp/p.000 /tmp/parts/"}
    assert calls[2] == {
        "carry": [".xp/p.002", ".xp/SHA256SUMS"],
        "command": "mkdir -p /tmp/parts && mv .xp/p.002 .xp/SHA256SUMS /tmp/parts/ && scripts/gpu_front_door.sh setup",
    }


def test_the_default_destination_is_ignored_by_git() -> None:
    """The parts must never be tracked: .xp/ is in .gitignore (gpu-bundle refuses a folder git does not ignore)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    gpubundle.check_ignored(ROOT, ROOT / ".xp")
    with pytest.raises(FatalError, match="not ignored by git"):
        gpubundle.check_ignored(ROOT, ROOT / "docs")


# ---------------------------------------------------------------- the runner tools' lock


def _fake_root(tmp_path: Path, deps: list[str], listed: list[str]) -> Path:
    root = tmp_path / "root"
    (root / gpubundle.TOOLS_DIR).mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        "[project]\nname = 'x'\ndependencies = " + json.dumps(deps) + "\n"
        "[project.optional-dependencies]\nreport = ['matplotlib>=3.8']\n"
    )
    (root / gpubundle.TOOLS_IN).write_text("nox\n" + "".join(f"{d}  # why\n" for d in listed))
    return root


def _write_lock(root: Path, python: str = "3.12") -> Path:
    inputs = gpubundle.tools_inputs(root, python, gpubundle.DEFAULT_PLATFORM)
    path = gpubundle.tools_lock_path(root, python)
    path.write_text(
        f"# cell: runner-tools\n# input-hash: {locks.input_hash(inputs)}\n# inputs: {json.dumps(inputs)}\nnox==1\n"
    )
    return path


def test_the_committed_tools_lock_is_fresh_and_names_every_package_requirement() -> None:
    assert gpubundle.tools_lock_problem(ROOT, "3.12") is None, "relock: nox -s gpu-bundle -- --relock"
    assert gpubundle.unlisted_requirements(ROOT) == []
    pins = {p.name for p in locks.read_pins(gpubundle.tools_lock_path(ROOT, "3.12").read_text())}
    assert {"nox", "uv", "imageio-ffmpeg", "hatchling", "editables", "pyyaml", "rich", "matplotlib", "pip"} <= pins


def test_a_changed_in_file_makes_the_lock_stale_in_one_line_with_the_way_out(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, ["rich>=13"], ["rich>=13", "matplotlib>=3.8"])
    assert gpubundle.tools_lock_problem(root, "3.12") == "constraints/runner-tools/py312.txt is missing"
    _write_lock(root)
    assert gpubundle.tools_lock_problem(root, "3.12") is None
    assert gpubundle.ensure_tools_lock(root, "3.12") == gpubundle.tools_lock_path(root, "3.12")
    with (root / gpubundle.TOOLS_IN).open("a") as fh:
        fh.write("pyyaml\n")
    with pytest.raises(LockError) as err:
        gpubundle.ensure_tools_lock(root, "3.12")
    assert str(err.value) == "constraints/runner-tools/py312.txt is stale: runner-tools.in changed since it was locked"
    assert "nox -s gpu-bundle -- --relock --python 3.12" in (err.value.hint or "")
    assert "\n" not in str(err.value)


def test_a_package_requirement_the_in_file_lacks_is_named(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, ["rich>=13", "pyelftools>=0.31"], ["rich"])
    _write_lock(root)
    assert gpubundle.unlisted_requirements(root) == ["matplotlib", "pyelftools"]
    with pytest.raises(LockError, match="lacks matplotlib, pyelftools, which pyproject.toml requires"):
        gpubundle.ensure_tools_lock(root, "3.12")


def test_the_ci_lock_target_is_read_from_its_header() -> None:
    target = gpubundle.ci_target(ROOT)
    assert (target.python, target.platform) == ("3.12", "x86_64-manylinux_2_28")


# ---------------------------------------------------------------- input checks


def test_jobs_are_checked_with_a_suggestion() -> None:
    assert gpubundle.parse_jobs("setup, pipeline") == ["setup", "pipeline"]
    with pytest.raises(FatalError, match=r"unknown job 'reprot' \(did you mean report\?\)") as err:
        gpubundle.parse_jobs("cell,reprot")
    assert "setup, cell, report" in (err.value.hint or "")
    with pytest.raises(FatalError, match="names no job"):
        gpubundle.parse_jobs(",")


def test_cells_are_checked_and_the_benchmark_jobs_bring_their_cell() -> None:
    m = matrices.load(ROOT / "matrix.toml")
    with pytest.raises(UnknownCellError):
        gpubundle.choose_cells(m, ["no-such-cell"], ["cell"], "3.12")
    with pytest.raises(FatalError, match="runs Python 3.11, the target machine Python 3.12") as err:
        gpubundle.choose_cells(m, ["stable-cu128"], ["cell"], "3.12")
    assert err.value.hint == "take its variant stable-cu128-py312"
    with pytest.raises(FatalError, match="the cell job needs cells"):
        gpubundle.choose_cells(m, [], ["setup", "cell"], "3.12")
    assert [c.id for c in gpubundle.choose_cells(m, [], ["setup", "pipeline"], "3.12")] == [gpubundle.BENCH_CELL]
    assert gpubundle.choose_cells(m, [], ["setup", "report"], "3.12") == []
    assert gpubundle.needs(["setup"]) == frozenset()
    assert gpubundle.needs(["pipeline"]) >= {"bench_cell", "selftest", "dialogue"}


def test_the_cli_gives_one_line_and_a_hint_for_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gpu-bundle", "stable-cu128-py312", "--jobs", "celll"]) != 0
    err = capsys.readouterr().err
    assert "error: unknown job 'celll' (did you mean cell?)" in err and "hint: --jobs takes" in err
    assert "Traceback" not in err
    assert cli.main(["gpu-bundle"]) != 0
    assert "gpu-bundle needs cells or --jobs" in capsys.readouterr().err


def test_no_index_is_a_network_error_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index made unreachable for real: pip's index pointed at a closed local port, no other index or folder
    of wheels. pip's own failure is the error (the bundle names no registry), and no part is written."""
    monkeypatch.setenv("PIP_CONSTRAINT", "/dev/null")  # build sets it: restored after the test
    for var, value in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    monkeypatch.setenv("PIP_RETRIES", "1")
    m = matrices.load(ROOT / "matrix.toml")
    with pytest.raises(NetworkError, match=r"pip could not reach the package index for .*: the index is unreachable"):
        gpubundle.build(m, [], ["setup"], python="3.12", dest=tmp_path / "xp")
    assert not list((tmp_path / "xp").glob("p.*"))


# ---------------------------------------------------------------- the front door's setup


def _front_door(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FRONT_DOOR), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_front_door_setup_checks_the_sums_and_unpacks_real_parts(tmp_path: Path) -> None:
    """The parts come from gpubundle's own splitter. The runner tools' install is skipped (FRONT_DOOR_SKIP_TOOLS=1):
    these parts hold no real wheels of nox and uv; the rehearsal installs them for real (docs/gpu-runner.md)."""
    members = _tree(tmp_path / "src")
    parts, stage = tmp_path / "parts", tmp_path / "stage"
    gpubundle.write_parts(members, parts, 64 * 1024)
    env = {"PARTS": str(parts), "STAGE": str(stage), "FRONT_DOOR_SKIP_TOOLS": "1"}
    env.pop("OUT", None)
    proc = _front_door(["setup"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "against SHA256SUMS" in proc.stdout and "setup done" in proc.stdout
    _same_tree(members, stage)
    assert not parts.exists()  # the parts are gone once unpacked (the machine's disk)


def test_front_door_setup_refuses_parts_that_differ_from_their_sums(tmp_path: Path) -> None:
    """As above, with the tools' install skipped (FRONT_DOOR_SKIP_TOOLS=1); one part is damaged on the way."""
    parts, stage = tmp_path / "parts", tmp_path / "stage"
    gpubundle.write_parts(_tree(tmp_path / "src"), parts, 64 * 1024)
    with (parts / "p.000").open("r+b") as fh:
        fh.write(b"x")
    proc = _front_door(["setup"], {"PARTS": str(parts), "STAGE": str(stage), "FRONT_DOOR_SKIP_TOOLS": "1"})
    assert proc.returncode == 2
    assert "p.000: FAILED" in proc.stdout + proc.stderr and "send those parts again" in proc.stderr
    assert not (stage / "wh").exists()


def test_front_door_names_an_unknown_job_before_touching_anything(tmp_path: Path) -> None:
    proc = _front_door(["steup"], {"PARTS": str(tmp_path / "none"), "STAGE": str(tmp_path / "stage")})
    assert proc.returncode == 2 and "unknown job steup" in proc.stderr
    assert not (tmp_path / "stage").exists()


# ---------------------------------------------------------------- bench pipeline --assemble-only


def _step_files(work: Path, *, with_cell: bool) -> dict:
    """The committed GPU pipeline result, cut back into the step files the runner wrote."""
    data = json.loads((ROOT / "benchmarks" / "results" / "pipeline-gpu-h200-2026-11-29.json").read_text())
    work.mkdir(parents=True)
    for name, rec in data["steps"].items():
        rec = {"machine": data["machine"], "gpu": data["gpu"], **rec}
        if with_cell:
            rec.update(cell=data["cell"], device=data["device"])
        (work / f"step-{name}.json").write_text(json.dumps(rec))
    return data


def _assemble(work: Path, results: Path) -> argparse.Namespace:
    return argparse.Namespace(
        work=str(work),
        results=str(results),
        assemble_only=True,
        cell="stable-cu128",  # the parser's defaults: what an assembly elsewhere is given
        device="cpu",
        large_model=None,
        max_new_tokens=None,
        levers="all",
        steps=None,
        minutes=None,
        fresh_jit_cache=False,
    )


def test_assemble_only_takes_cell_and_device_from_the_step_files(tmp_path: Path) -> None:
    from whisperx_matrix.bench.pipeline import cmd_pipeline

    data = _step_files(tmp_path / "work", with_cell=True)
    m = matrices.load(ROOT / "matrix.toml")
    assert cmd_pipeline(m, _assemble(tmp_path / "work", tmp_path / "results")) == 0
    out = tmp_path / "results" / f"pipeline-gpu-h200-{data['date']}.json"
    written = json.loads(out.read_text())
    assert (written["cell"], written["device"]) == ("stable-cu128-py312", "cuda")
    assert all("cell" not in s and "device" not in s for s in written["steps"].values())  # said once, at the top


def test_assemble_only_of_step_files_from_before_they_named_the_cell_takes_the_arguments(tmp_path: Path) -> None:
    from whisperx_matrix.bench.pipeline import cmd_pipeline

    data = _step_files(tmp_path / "work", with_cell=False)
    m = matrices.load(ROOT / "matrix.toml")
    args = _assemble(tmp_path / "work", tmp_path / "results")
    args.cell, args.device = "stable-cu128-py312", "cuda"
    assert cmd_pipeline(m, args) == 0
    written = json.loads((tmp_path / "results" / f"pipeline-gpu-h200-{data['date']}.json").read_text())
    assert (written["cell"], written["device"]) == ("stable-cu128-py312", "cuda")
    shutil.rmtree(tmp_path / "results")

"""Cell builds: real uv venvs from a real hashed lock (six), atomic replacement, no-op re-runs, and
failures injected into a real build leaving the previous env usable."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import SIX_LOCK_BODY, write_lock

from whisperx_matrix import build, matrix, tools
from whisperx_matrix.errors import BuildError, LockError, NotBuiltError, SelfTestError

pytestmark = pytest.mark.network  # uv fetches six 1.16.0 (once; then from its cache)


def _build(project: Path, **kw: object) -> build.BuildResult:
    m = matrix.load(project / "matrix.toml")
    return build.build(m, m.get("tiny"), selftest=False, **kw)  # type: ignore[arg-type]


def _python_sees_six(env: Path) -> str:
    out = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import six, sys; print(six.__version__, sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
        env=build.clean_env(),
    )
    return out.stdout.strip()


def test_build_links_a_stamped_env_and_rerun_is_a_no_op(tiny_project: Path) -> None:
    write_lock(tiny_project)
    first = _build(tiny_project)
    assert first.state == "built"
    env = tiny_project / "envs" / "tiny"
    assert env.is_symlink() and _python_sees_six(env).startswith("1.16.0")
    stamp = json.loads((env / build.STAMP).read_text())
    assert stamp["lock"].startswith("tiny.txt sha256:") and stamp["patches"] is None
    assert "source" in first.usage() and str(env / "bin" / "python") in first.usage()

    again = _build(tiny_project)
    assert again.state == "up-to-date"
    assert again.seconds["check"] < 1.0

    # A reused env reports the patch summary its build recorded (it used to say "no patches"), so a report
    # reads the same whether this run built the env or found it.
    stamp["patch_summary"] = "whisperx 3.7.6: patched\n  applied use-auth-token"
    (env / build.STAMP).write_text(json.dumps(stamp))
    assert _build(tiny_project).patches == stamp["patch_summary"]


def test_an_env_built_without_a_self_test_gets_one_when_asked(tiny_project: Path) -> None:
    """A reused --no-selftest build used to come back with no self-test at all (so a matrix cell had no
    versions): now the self-test runs on it. Here it really runs, and fails, since the env holds six alone."""
    write_lock(tiny_project)
    assert _build(tiny_project).state == "built"
    m = matrix.load(tiny_project / "matrix.toml")
    with pytest.raises(SelfTestError) as caught:
        build.build(m, m.get("tiny"), selftest=True)
    assert "import torch failed" in caught.value.record["failure"]
    env = tiny_project / "envs" / "tiny"
    assert env.is_symlink() and (env / build.SELFTEST).is_file()  # recorded; the env in force stays linked


def test_changed_lock_builds_a_new_env_and_sweeps_the_old(tiny_project: Path) -> None:
    write_lock(tiny_project)
    _build(tiny_project)
    old_target = (tiny_project / "envs" / "tiny").resolve()
    write_lock(tiny_project, body=SIX_LOCK_BODY + "# a comment changes the lock's hash\n")
    assert _build(tiny_project).state == "built"
    new_target = (tiny_project / "envs" / "tiny").resolve()
    assert new_target != old_target and not old_target.exists()


def test_failed_install_keeps_the_previous_env(tiny_project: Path) -> None:
    """A real uv failure (a wrong hash in the lock) in the middle of a build."""
    write_lock(tiny_project)
    _build(tiny_project)
    env = tiny_project / "envs" / "tiny"
    before = env.resolve()
    wrong = SIX_LOCK_BODY.replace("1e61c374", "0000c374").replace("8abb2f1d", "00002f1d")  # no hash matches
    write_lock(tiny_project, body=wrong)
    with pytest.raises(BuildError, match="install failed") as err:
        _build(tiny_project)
    assert "previous env" in (err.value.hint or "")
    assert env.resolve() == before and _python_sees_six(env).startswith("1.16.0")
    assert not [p for p in (tiny_project / "envs" / ".builds").iterdir() if p.name.startswith(".tmp-")]


def test_interrupted_build_keeps_the_previous_env(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arrives while uv installs: the temp build goes, the old link stays."""
    write_lock(tiny_project)
    _build(tiny_project)
    env = tiny_project / "envs" / "tiny"
    before = env.resolve()
    write_lock(tiny_project, body=SIX_LOCK_BODY + "# changed\n")
    real_run = tools.run

    def interrupted(args, **kw):  # type: ignore[no-untyped-def]
        if "sync" in args:
            real_run(args, **kw)  # the install really happens into the temp folder...
            raise KeyboardInterrupt  # ...and then the user presses Ctrl-C
        return real_run(args, **kw)

    monkeypatch.setattr(tools, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(tiny_project)
    assert env.resolve() == before and _python_sees_six(env).startswith("1.16.0")
    assert not [p for p in (tiny_project / "envs" / ".builds").iterdir() if p.name.startswith(".tmp-")]


def test_killed_build_leftovers_are_swept_and_old_env_survives(tiny_project: Path) -> None:
    """SIGKILL gives no chance to clean up: a real build process is killed mid-install."""
    write_lock(tiny_project)
    _build(tiny_project)
    env = tiny_project / "envs" / "tiny"
    before = env.resolve()
    write_lock(tiny_project, body=SIX_LOCK_BODY + "# changed\n")
    script = (
        "import os, signal, sys\n"
        "from whisperx_matrix import build, matrix, tools\n"
        "real = tools.run\n"
        "def run(args, **kw):\n"
        "    if 'sync' in args:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(args, **kw)\n"
        "tools.run = run\n"
        f"m = matrix.load(__import__('pathlib').Path({str(tiny_project / 'matrix.toml')!r}))\n"
        "build.build(m, m.get('tiny'), selftest=False)\n"
    )
    proc = subprocess.run(
        [os.sys.executable, "-c", script], env=os.environ | {"PYTHONPATH": str(Path(build.__file__).parents[1])}
    )
    assert proc.returncode == -9
    builds = tiny_project / "envs" / ".builds"
    assert [p for p in builds.iterdir() if p.name.startswith(".tmp-tiny-")]  # the kill left a temp build
    assert env.resolve() == before and _python_sees_six(env).startswith("1.16.0")
    assert _build(tiny_project).state == "built"
    assert not [p for p in builds.iterdir() if p.name.startswith(".tmp-")]


def test_stale_lock_refuses_to_build(tiny_project: Path) -> None:
    write_lock(tiny_project)
    (tiny_project / "requirements.txt").write_text("six\nattrs\n")
    with pytest.raises(LockError, match="stale: requirements.txt changed"):
        _build(tiny_project)


def test_offline_build_from_the_uv_cache(tiny_project: Path) -> None:
    write_lock(tiny_project)
    _build(tiny_project)
    write_lock(tiny_project, body=SIX_LOCK_BODY + "# changed\n")
    assert _build(tiny_project, offline=True).state == "built"


def test_not_built_cell_names_the_command(tiny_project: Path) -> None:
    m = matrix.load(tiny_project / "matrix.toml")
    with pytest.raises(NotBuiltError, match="not built") as err:
        build.built_env(m, m.get("tiny"))
    assert err.value.hint == "build it: nox -s env-tiny"


def test_preload_pth_loads_libraries_at_start(tiny_project: Path) -> None:
    """The env loads its own `preload` libraries (a real .so, libz from the system) through a .pth file."""
    import ctypes.util

    libz = ctypes.util.find_library("z")
    assert libz, "zlib is on every Linux machine"
    write_lock(tiny_project)
    _build(tiny_project)
    site = next((tiny_project / "envs" / "tiny").glob("lib/python3*/site-packages"))
    real = (
        next(
            Path(p)
            for p in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib")
            if (Path(p) / libz).exists()
        )
        / libz
    )
    (site / "fakelib").mkdir()
    os.symlink(real, site / "fakelib" / libz)
    cell = matrix.Cell(
        id="tiny",
        summary="",
        channel="stable",
        cuda="cu128",
        python="3",
        platform="",
        requirements=(),
        pins={"whisperx": "3.8.6"},
        preload=(f"fakelib/{libz}",),
    )
    build._preload_files(site, cell)
    out = subprocess.run(
        [
            str(tiny_project / "envs" / "tiny" / "bin" / "python"),
            "-c",
            "import whisperx_matrix_preload as p; print(len(p.LOADED), p.ERRORS)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=build.clean_env(),
    )
    assert out.stdout.strip() == "1 {}"
    with pytest.raises(BuildError, match="preload nope.so is not in the env"):
        build._preload_files(site, matrix.Cell(**{**cell.__dict__, "preload": ("nope.so",)}))


def test_forced_rebuild_that_fails_keeps_the_env_in_force(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--force builds beside the env in force: a failure in the forced build (a real uv failure: an offline
    install from an empty cache) leaves the old env linked and working."""
    write_lock(tiny_project)
    _build(tiny_project)
    env = tiny_project / "envs" / "tiny"
    before = env.resolve()
    with monkeypatch.context() as mp:
        mp.setenv("UV_CACHE_DIR", str(tiny_project / "empty-cache"))
        with pytest.raises(BuildError):
            _build(tiny_project, force=True, offline=True)
    assert env.resolve() == before and _python_sees_six(env).startswith("1.16.0")
    forced = _build(tiny_project, force=True)
    assert forced.state == "built" and env.resolve() != before and not before.exists()
    assert _build(tiny_project).state == "up-to-date"


def test_a_missing_python_is_infrastructure_not_a_failure_of_the_stack(tiny_project: Path) -> None:
    """A cell for a Python this machine lacks (3.4 here, for real: uv finds none) cannot be built; the error says
    so and marks it as the machine's, so the matrix records the cell as not testable, never as evidence."""
    from whisperx_matrix.errors import BuildError

    toml = tiny_project / "matrix.toml"
    toml.write_text(toml.read_text().replace('id = "tiny"\n', 'id = "tiny"\npython = "3.4"\n', 1))
    m = matrix.load(toml)
    write_lock(tiny_project)
    with pytest.raises(BuildError) as err:
        build.build(m, m.get("tiny"), selftest=False)
    assert err.value.infra == "no python 3.4" and "install Python 3.4" in (err.value.hint or "")


def test_cell_processes_get_an_allow_listed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake tokens and keys in our environment never reach a cell; what a program needs does."""
    for name in ("HF_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "WXM_CI_TOKEN", "LD_LIBRARY_PATH", "PYTHONPATH"):
        monkeypatch.setenv(name, "fake-value-123")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = build.clean_env()
    assert not {
        "HF_TOKEN",
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "WXM_CI_TOKEN",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
    } & set(env)
    assert "fake-value-123" not in env.values()
    assert env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8" and env["HF_HUB_OFFLINE"] == "1"


def test_preflight_names_every_missing_program_at_once(tmp_path: Path) -> None:
    """ffmpeg, espeak-ng and patch really hidden from PATH (only python is left), and an empty speech cache: one
    message names all three, with one install line; the CLI exits with the missing-tool code."""
    import sys

    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    env = {
        "PATH": str(bare),
        "WXM_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(Path(build.__file__).parents[1]),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [str(bare / "python"), "-m", "whisperx_matrix", "preflight", "tests"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 8, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and "Traceback" not in proc.stderr
    assert all(p in lines[0] for p in ("ffmpeg", "espeak-ng", "patch"))
    assert (
        lines[1].strip()
        == "hint: sudo apt-get install -y ffmpeg espeak-ng patch chromium  (Debian/Ubuntu), then run this again"
    )


def test_a_cell_opting_in_to_a_patch_that_does_not_fit_it_stops_before_anything_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real matrix and series: doc-recipe-cu128 pins whisperx 3.7.6, outside 0002's range; asking for it there
    would be a silent no-op, so the build refuses it by name (envs/ here is a temporary folder: nothing is built)."""
    from dataclasses import replace

    from whisperx_matrix.errors import PatchError

    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "envs"))
    m = matrix.load(Path(__file__).resolve().parents[2] / "matrix.toml")
    cell = replace(m.get("doc-recipe-cu128"), opt_in_patches=("0002-alignment-numpy-trellis",))
    with pytest.raises(PatchError, match="doc-recipe-cu128: opt_in_patches: 0002-alignment-numpy-trellis does not fit"):
        build.build(m, cell, selftest=False)
    assert not (tmp_path / "envs" / "doc-recipe-cu128").exists()


def test_an_interrupted_self_test_record_is_not_a_result(tmp_path: Path) -> None:
    """A self-test killed before it judged leaves a record without `passed` (seen after an interrupted matrix
    run): it is read as no self-test, so it runs again, never reported as a failure with no cause."""
    from whisperx_matrix.build import _read_selftest

    path = tmp_path / "selftest.json"
    for record, kept in (
        ({"imports": {}, "python": "3.11", "transcription": {}, "versions": {}}, False),
        ({"passed": False}, False),
        ({"passed": False, "failure": "transcription failed: TypeError: x"}, True),
        ({"passed": True}, True),
    ):
        path.write_text(json.dumps(record))
        assert (_read_selftest(path) is not None) == kept, record
    path.write_text("{not json")
    assert _read_selftest(path) is None

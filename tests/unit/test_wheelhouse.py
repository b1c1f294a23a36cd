"""Offline wheelhouse on the tiny project (a real hashed lock of six 1.16.0): the folder is filled from the
index, then the build runs with the index unreachable and an empty uv cache, and a folder that lacks a
locked wheel is refused by name before uv runs. Then the target's wheel tags, pip's failures read from its
output, every committed lock checked against the index, and a wheel that one platform tag missed (hf-xet,
abi3 manylinux2014) fetched and built from with the network cut."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import HF_XET_LOCK_BODY, ROOT, SIX_LOCK_BODY, write_lock
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from whisperx_matrix import build, cli, matrix, tools, wheelhouse
from whisperx_matrix.errors import BuildError, NetworkError

SIX_WHEEL_SHA = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"


def test_read_lock_joins_continuations_and_evaluates_markers_for_the_target(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text(
        SIX_LOCK_BODY + "pywin32==306 ; sys_platform == 'win32' \\\n    --hash=sha256:aa\n"
        "tomli==2.0.1 ; python_version < '3.11' \\\n    --hash=sha256:bb\n"
    )
    pins, target = wheelhouse.read_lock(lock, wheelhouse.Target("3.11", "x86_64-manylinux_2_28"))
    assert [p.spec() for p in pins] == ["six==1.16.0"]
    assert SIX_WHEEL_SHA in pins[0].hashes and len(pins[0].hashes) == 2
    assert target.pip_platform == "manylinux_2_28_x86_64" and target.abi == "cp311"
    pins310, _ = wheelhouse.read_lock(lock, wheelhouse.Target("3.10", "x86_64-manylinux_2_28"))
    assert "tomli==2.0.1" in [p.spec() for p in pins310]


def test_verify_names_the_missing_distribution(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text(SIX_LOCK_BODY)
    empty = tmp_path / "wh"
    empty.mkdir()
    with pytest.raises(BuildError, match=r"lacks six==1\.16\.0 \(no file for it") as err:
        wheelhouse.verify(lock, empty)
    assert "wheelhouse" in (err.value.hint or "")
    (empty / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"not the real wheel")
    wheelhouse.verify(lock, empty)  # names only: passes
    with pytest.raises(BuildError, match="sha256 the lock does not allow"):
        wheelhouse.verify(lock, empty, check_hashes=True)


@pytest.mark.network
def test_wheelhouse_then_offline_build(
    tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = write_lock(tiny_project)
    dest = tmp_path / "wheelhouse"
    monkeypatch.chdir(tiny_project)
    assert cli.main(["wheelhouse", "tiny", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "1 locked distributions" in out and "--offline --wheelhouse" in out
    wheel = dest / "six-1.16.0-py2.py3-none-any.whl"
    assert wheel.is_file() and wheelhouse.sha256_file(wheel) == SIX_WHEEL_SHA
    wheelhouse.verify(lock, dest, check_hashes=True)
    assert cli.main(["wheelhouse", "tiny", "--dest", str(dest), "--verify"]) == 0

    # No index, no cache: only the wheelhouse can serve six.
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-uv-cache"))
    m = matrix.load(tiny_project / "matrix.toml")
    result = build.build(m, m.get("tiny"), selftest=False, offline=True, wheelhouse=dest)
    assert result.state == "built" and (tiny_project / "envs" / "tiny" / build.STAMP).is_file()

    # The same build from a folder that lacks the wheel: refused by name before uv runs...
    shutil.rmtree(dest)
    dest.mkdir()
    with pytest.raises(BuildError, match=r"wheelhouse .* lacks six==1\.16\.0"):
        wheelhouse.verify(lock, dest)
    # ...and the build checks the folder the same way before uv (which would only say "No solution found").
    with pytest.raises(BuildError, match=r"wheelhouse .* lacks six==1\.16\.0"):
        build.build(m, m.get("tiny"), selftest=False, offline=True, wheelhouse=dest, force=True)
    assert (tiny_project / "envs" / "tiny" / build.STAMP).is_file()  # the env built before is still in force


# ---------------------------------------------------------------- the target's tags (pure)

MANYLINUX_2_28 = wheelhouse.Target("3.11", "x86_64-manylinux_2_28")


def _accepted(target: wheelhouse.Target) -> set[Tag]:
    """The tags pip accepts for these options (pip builds its list with packaging.tags the same way)."""
    version = tuple(int(x) for x in target.python.split("."))
    return {*cpython_tags(version, target.abis, target.platforms), *compatible_tags(version, "cp311", target.platforms)}


def test_platform_tags_go_down_every_older_manylinux_never_to_plain_linux() -> None:
    tags = wheelhouse.platform_tags("x86_64-manylinux_2_28")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert [t for t in tags if t.startswith("manylinux_2_")] == [f"manylinux_2_{m}_x86_64" for m in range(28, 4, -1)]
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert tags.index("manylinux2014_x86_64") == tags.index("manylinux_2_17_x86_64") + 1  # PEP 600 aliases
    assert "linux_x86_64" not in tags and len(tags) == len(set(tags))
    # Other architectures start at glibc 2.17 (manylinux2014 brought them); the legacy spelling works too.
    arm = wheelhouse.platform_tags("aarch64-manylinux_2_28")
    assert arm[-2:] == ("manylinux_2_17_aarch64", "manylinux2014_aarch64")
    assert wheelhouse.platform_tags("x86_64-manylinux2014")[:2] == ("manylinux_2_17_x86_64", "manylinux2014_x86_64")
    for bad in ("x86_64-unknown-linux-gnu", "linux", "aarch64-apple-darwin", "aarch64-manylinux_2_12"):
        with pytest.raises(BuildError, match="cannot name the wheel tags"):
            wheelhouse.platform_tags(bad)


def test_pip_args_name_every_platform_and_abi_once() -> None:
    args = MANYLINUX_2_28.pip_args()
    assert args[:4] == ["--implementation", "cp", "--python-version", "3.11"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--platform"] == list(MANYLINUX_2_28.platforms)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--abi"] == ["cp311", "abi3", "none"]


@pytest.mark.parametrize(
    ("filename", "fits"),
    [
        ("hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("grpcio-1.85.3-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl", True),
        ("nvidia_cuda_nvrtc_cu12-12.8.93-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl", True),
        ("av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl", True),
        ("six-1.16.0-py2.py3-none-any.whl", True),
        ("grpcio-1.85.3-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", False),
        ("x-1.0-cp311-cp311-manylinux_2_31_x86_64.whl", False),  # newer glibc than the target's
        ("x-1.0-cp311-cp311-linux_x86_64.whl", False),
        ("hf_xet-1.8.0-cp38-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl", False),
    ],
)
def test_target_tags_accept_the_wheels_of_the_locks(filename: str, fits: bool) -> None:
    _, _, _, tags = parse_wheel_filename(filename)
    assert bool(tags & _accepted(MANYLINUX_2_28)) is fits


def test_one_platform_and_one_abi_missed_hf_xet_and_grpcio() -> None:
    """What the wheelhouse passed before: pip matches --platform/--abi exactly, so both wheels were refused."""
    old = {
        *cpython_tags((3, 11), ["cp311"], ["manylinux_2_28_x86_64"]),
        *compatible_tags((3, 11), "cp311", ["manylinux_2_28_x86_64"]),
    }
    for name in (
        "hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "grpcio-1.85.3-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    ):
        assert not parse_wheel_filename(name)[3] & old


# ---------------------------------------------------------------- pip's failures, read (captured output)

# pip 26.3's output, captured; index addresses and local paths replaced.
PIP_NO_WHEEL = """\
Looking in indexes: https://index.example/simple
Collecting hf-xet==1.8.0 (from -r requirements.txt (line 1))
  Downloading hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl (4.3 MB)
ERROR: Could not find a version that satisfies the requirement docopt==0.6.2 (from versions: none)
ERROR: No matching distribution found for docopt==0.6.2
"""

PIP_SDIST_BUILD_FAILED = """\
Looking in indexes: https://index.example/simple
Collecting hf-xet==1.8.0 (from -r requirements.txt (line 1))
  Downloading hf_xet-1.8.0.tar.gz (1.0 MB)
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
  Preparing metadata (pyproject.toml): started
  Preparing metadata (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Preparing metadata (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [20 lines of output]
      Checking for Rust toolchain....
      Running `maturin pep517 write-dist-info --metadata-directory /tmp/pip-modern-metadata-x --interpreter /venv/bin/python`
          Updating crate index
      warning: spurious network error (3 tries remaining): [6] Could not resolve hostname (Could not resolve host: crates.example)
      error: failed to get `pyo3` as a dependency of package `hf_xet v1.8.0 (/tmp/pip-download-x/hf_xet)`

      Caused by:
        download of config.json failed
      💥 maturin failed
      Error running maturin: Command '['maturin', 'pep517', 'write-dist-info']' returned non-zero exit status 1.
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed

× Encountered error while generating package metadata.
╰─> hf-xet

note: This is an issue with the package mentioned above, not pip.
hint: See above for details.
"""

PIP_HASH_MISMATCH = """\
Looking in indexes: https://index.example/simple
Collecting six==1.16.0 (from -r requirements.txt (line 1))
  Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes. Otherwise, examine the package contents carefully; someone may have tampered with them.
    six==1.16.0 from https://files.example/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl (from -r requirements.txt (line 1)):
        Expected sha256 1111111111111111111111111111111111111111111111111111111111111111
             Got        8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
"""

PIP_UNREACHABLE = """\
Looking in indexes: http://127.0.0.1:9/simple
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError("HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] Connection refused")': /simple/six/
ERROR: Could not find a version that satisfies the requirement six==1.16.0 (from versions: none)
ERROR: No matching distribution found for six==1.16.0
"""


def test_parse_no_wheel_for_the_target() -> None:
    [f] = wheelhouse.parse_pip_failure(PIP_NO_WHEEL)
    assert (f.what, f.name, f.kind) == ("docopt==0.6.2", "docopt", "no-match")
    assert f.reason == "Could not find a version that satisfies the requirement docopt==0.6.2 (from versions: none)"


def test_parse_sdist_that_failed_to_build_names_it_and_the_build_error() -> None:
    [f] = wheelhouse.parse_pip_failure(PIP_SDIST_BUILD_FAILED)
    assert (f.what, f.kind) == ("hf-xet", "build")
    assert f.reason.startswith("metadata-generation-failed: error: failed to get `pyo3`")  # not the "warning:" line


def test_parse_hash_mismatch() -> None:
    [f] = wheelhouse.parse_pip_failure(PIP_HASH_MISMATCH)
    assert (f.what, f.kind) == ("six==1.16.0", "hash")
    assert "six-1.16.0-py2.py3-none-any.whl has sha256 8abb2f1d" in f.reason and "allows 11111111" in f.reason


def test_parse_unreachable_index_is_the_network_not_a_missing_wheel() -> None:
    [f] = wheelhouse.parse_pip_failure(PIP_UNREACHABLE)
    assert (f.what, f.kind) == ("six==1.16.0", "network")
    assert f.reason == (
        "the index is unreachable: Failed to establish a new connection: [Errno 111] Connection "
        "refused (fetching /simple/six/)"
    )


def test_parse_falls_back_to_the_last_line() -> None:
    [f] = wheelhouse.parse_pip_failure("Collecting x==1\nsomething odd happened\n")
    assert (f.what, f.kind, f.reason) == ("x==1", "other", "something odd happened")


def _fake_pip(monkeypatch: pytest.MonkeyPatch, outputs: list[str]) -> list[list[str]]:
    """pip download replaced: each call answers the next output (an empty one succeeds)."""
    calls: list[list[str]] = []

    def run(args, **kw):  # type: ignore[no-untyped-def]
        calls.append(list(args))
        out = outputs.pop(0)
        return tools.Completed(tuple(args), 1 if out else 0, "", out)

    monkeypatch.setattr(tools, "run", run)
    return calls


def test_failure_is_one_line_naming_the_distribution_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_pip(monkeypatch, [PIP_HASH_MISMATCH])
    pin = wheelhouse.Pin(canonicalize_name("six"), "1.16.0", frozenset({"11" * 32}))
    with pytest.raises(BuildError) as err:
        wheelhouse.fetch([pin], tmp_path, MANYLINUX_2_28)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("pip download failed for six==1.16.0 (1 locked distributions): six-1.16.0-py2")
    assert "nox -s lock" in (err.value.hint or "") and str(tmp_path / ".pip-download.log") in (err.value.hint or "")
    assert "DO NOT MATCH" in (tmp_path / ".pip-download.log").read_text()


def test_unreachable_index_is_a_network_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, [PIP_UNREACHABLE])
    pin = wheelhouse.Pin(canonicalize_name("six"), "1.16.0", frozenset({"11" * 32}))
    with pytest.raises(NetworkError, match="Connection refused"):
        wheelhouse.fetch([pin], tmp_path, MANYLINUX_2_28)


def test_a_pin_with_no_wheel_is_fetched_as_an_sdist_on_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_pip(monkeypatch, [PIP_NO_WHEEL, "", ""])
    pins = [
        wheelhouse.Pin(canonicalize_name(n), v, frozenset({h * 64 for h in hs}))
        for n, v, hs in (("docopt", "0.6.2", "a"), ("hf-xet", "1.8.0", "bcd"))
    ]
    messages: list[str] = []
    assert wheelhouse.fetch(pins, tmp_path, MANYLINUX_2_28, say=messages.append) == [pins[0]]
    assert messages == ["no wheel of docopt==0.6.2 fits the target: fetching its sdist on its own"]
    assert "--only-binary=:all:" in calls[0] and "--only-binary=:all:" in calls[1]
    assert "--no-binary=docopt" in calls[2] and "--only-binary=:all:" not in calls[2]
    assert all(c.count("--platform") == len(MANYLINUX_2_28.platforms) for c in calls)


def test_an_sdist_that_cannot_be_prepared_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, [PIP_NO_WHEEL.replace("docopt==0.6.2", "hf-xet==1.8.0"), PIP_SDIST_BUILD_FAILED])
    pin = wheelhouse.Pin(canonicalize_name("hf-xet"), "1.8.0", frozenset({"b" * 64}))
    with pytest.raises(BuildError) as err:
        wheelhouse.fetch([pin], tmp_path, MANYLINUX_2_28)
    assert "hf-xet" in str(err.value) and "metadata-generation-failed" in str(err.value)
    assert "with no wheel for the target" in str(err.value) and "a wheel for the target" in (err.value.hint or "")


# ---------------------------------------------------------------- against the index

COMMITTED_LOCKS = sorted((ROOT / "constraints").glob("*.txt"))
# Releases with no wheel at all (only an sdist, built offline from the wheelhouse with its build requirements).
SDIST_ONLY = {"docopt"}


def _pip_versions(name: str, target: wheelhouse.Target, *, wheels: bool) -> set[str]:
    """Versions of ``name`` with a file pip would take for ``target`` (``pip index versions``: one index page)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "index",
            "versions",
            "--disable-pip-version-check",
            "--json",
            "--pre",
            *target.pip_args(),
            *(["--only-binary=:all:"] if wheels else []),
            name,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        return set()
    return set(json.loads(proc.stdout.strip().splitlines()[-1])["versions"])


def _pip_fetches(spec: str, target: wheelhouse.Target, *, wheels: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="wxm-pin-") as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-deps",
                "--dest",
                tmp,
                *target.pip_args(),
                *(["--only-binary=:all:"] if wheels else []),
                spec,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        return proc.returncode == 0


@pytest.mark.network
@pytest.mark.slow  # about 100 pip calls: 1.5-2 minutes on 2 busy cores
def test_every_locked_pin_has_a_wheel_for_its_target() -> None:
    """Every pin of every committed lock has a file on the configured index that fits the lock's target tags:
    a wheel, except the sdist-only releases named in SDIST_ONLY.

    Cheap: ``pip index versions --only-binary=:all:`` with the wheelhouse's own target options reads one index
    page per distribution and downloads nothing. (``pip install --dry-run --report`` downloads every wheel
    here, 3 GB per lock, when the index serves no separate metadata files.) ``pip index versions`` leaves out
    yanked releases, which an exact pin still gets (whisperx 3.7.3 is yanked): a pin it does not list is
    downloaded for real, alone, with the same options. Tags, not hashes: hashes are checked for real on the
    tricky wheels below and on every file by the wheelhouse itself.
    """
    wanted: dict[tuple[str, wheelhouse.Target], set[str]] = {}
    for lock in COMMITTED_LOCKS:
        pins, target = wheelhouse.read_lock(lock)
        for pin in pins:
            wanted.setdefault((pin.name, target), set()).add(pin.version)
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = dict(
            zip(
                wanted,
                pool.map(lambda key: _pip_versions(key[0], key[1], wheels=key[0] not in SDIST_ONLY), wanted),
                strict=True,
            )
        )
    unlisted = sorted(
        (name, v, target) for (name, target), versions in wanted.items() for v in versions - found[(name, target)]
    )
    gaps = [
        f"{name}=={v} ({target.platform})"
        for name, v, target in unlisted
        if not _pip_fetches(f"{name}=={v}", target, wheels=name not in SDIST_ONLY)
    ]
    assert not gaps, f"{len(gaps)} locked pins have no file for their target: {', '.join(gaps)}"


@pytest.mark.network
def test_tricky_wheels_download_for_the_target(tmp_path: Path) -> None:
    """The two wheels one platform tag and one ABI missed (hf-xet's abi3, grpcio's manylinux2014), downloaded
    for real with the lock's hashes: wheels, no sdist."""
    pins, target = wheelhouse.read_lock(ROOT / "constraints" / "stable-cu128.txt")
    tricky = [p for p in pins if p.name in ("hf-xet", "grpcio")]
    assert len(tricky) == 2
    assert wheelhouse.fetch(tricky, tmp_path, target) == []
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.endswith(".whl") for f in files), files
    assert not wheelhouse.missing(tricky, tmp_path, check_hashes=True)


def _unshare_works() -> bool:
    return (
        shutil.which("unshare") is not None
        and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0
    )


@pytest.mark.network
@pytest.mark.slow
def test_wheelhouse_of_an_abi3_manylinux2014_wheel_builds_with_the_network_cut(
    tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """six and hf-xet 1.8.0 (cp38-abi3-manylinux2014 only): the wheelhouse fetches the wheel, then the cell
    builds in a network namespace with no interface but loopback (``unshare -rn``) and an empty uv cache."""
    if not _unshare_works():
        pytest.skip("unshare -rn (a user and network namespace) is not permitted here")
    lock = write_lock(tiny_project, body=HF_XET_LOCK_BODY)
    dest = tmp_path / "wheelhouse"
    monkeypatch.chdir(tiny_project)
    assert cli.main(["wheelhouse", "tiny", "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == [
        "hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "six-1.16.0-py2.py3-none-any.whl",
    ]
    wheelhouse.verify(lock, dest, check_hashes=True)

    src = str(ROOT / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
        "UV_CACHE_DIR": str(tmp_path / "empty-uv-cache"),
    }
    links = subprocess.run(["unshare", "-rn", "cat", "/proc/net/dev"], capture_output=True, text=True, check=True)
    assert [ln.split(":")[0].strip() for ln in links.stdout.splitlines()[2:]] == ["lo"]  # no way out
    proc = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            "-m",
            "whisperx_matrix",
            "build",
            "tiny",
            "--offline",
            "--wheelhouse",
            str(dest),
            "--no-selftest",
        ],
        cwd=tiny_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    py = tiny_project / "envs" / "tiny" / "bin" / "python"
    check = subprocess.run(
        ["unshare", "-rn", str(py), "-c", "import hf_xet, six; print(six.__version__)"],
        capture_output=True,
        text=True,
        env=build.clean_env(),
    )
    assert check.returncode == 0 and check.stdout.strip() == "1.16.0", check.stderr

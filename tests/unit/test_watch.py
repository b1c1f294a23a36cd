"""`nox -s watch` end to end on a stand-in index: no network. Real wheels with tiny real ELF files (gcc -nostdlib;
the fatbins by nvcc) are built from tests/data/watch/index.toml and served from a file:// PEP 503 index that pip
(``pip index versions``) and uv read. The stand-in project's locks are resolved from the index as it was (without the
releases marked ``new``); the watch reads it as it is today, audits the candidates' wheels and predicts.

What the stand-in world holds, and what the watch must find in it:

- torch 2.12.0 and 2.12.1 (CUDA 13.2, sm_90 + sm_120) and 2.13.0 (sm_90 only): candidates for the 2.12 and 2.13 lines,
  cu132 from their nvidia-cuda-runtime; 2.12.0 superseded; torch 2.13 has no torchaudio ("unknown").
- ctranslate2 4.9.0, a CUDA 13 build that dlopens libcublas.so.13: the working cell's bump misses it in its cu12 stack.
- nvidia-cublas 13.2.0.9 (what the torch candidates resolve) and 13.3.0.5 (what none does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_elves import build_cuda_so, build_so, need

from whisperx_matrix import cli, lock, matrix, tomlfile
from whisperx_matrix.audit.loader import SearchEnv
from whisperx_matrix.watch import run_watch
from whisperx_matrix.watch.apply import ApplyError, apply
from whisperx_matrix.watch.candidates import Candidate, with_fragments
from whisperx_matrix.watch.render import markdown, text

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ELF wheels and glibc's loader model")

DATA = Path(__file__).resolve().parents[1] / "data" / "watch"
TODAY = "2026-12-01"
WHEEL_TAG = "py3-none-manylinux_2_28_x86_64"
FIXED = (2026, 1, 1, 0, 0, 0)


# --- the stand-in world ---------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(dest: Path, name: str, version: str, requires: list[str], files: dict[str, bytes]) -> Path:
    """A real wheel: the files, METADATA with Requires-Dist, WHEEL and RECORD (hashes and sizes)."""
    dist = name.replace("-", "_")
    tag = WHEEL_TAG if files else "py3-none-any"
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    ).encode()
    members[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: test_watch\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    )
    record = "".join(f"{p},{_record_hash(b)},{len(b)}\n" for p, b in members.items()) + f"{info}/RECORD,,\n"
    members[f"{info}/RECORD"] = record.encode()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zi = zipfile.ZipInfo(member, FIXED)
            zi.external_attr = 0o755 << 16 if member.endswith((".so",)) or ".so." in member else 0o644 << 16
            zf.writestr(zi, data)
    return path


class Elves:
    """Builds the ELF files of index.toml's recipes: stubs to link against by soname, fatbins once per arch set."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.fatbins: dict[tuple[str, ...], bytes] = {}

    def stub(self, soname: str) -> Path:
        path = self.work / "stubs" / soname
        if not path.exists():
            build_so(path, soname=soname, symbol="s_" + "".join(c if c.isalnum() else "_" for c in soname))
        return path

    def fatbin(self, archs: list[str]) -> bytes:
        key = tuple(archs)
        if key not in self.fatbins:
            out = self.work / "fatbins" / "_".join(key) / "libtorch_cuda.so"
            gencodes = [f"arch=compute_{a[3:]},code={a}" for a in archs]
            build_cuda_so(out, gencodes, extra=["-Xlinker", "-soname=libtorch_cuda.so"])
            self.fatbins[key] = out.read_bytes()
        return self.fatbins[key]

    def build(self, rel: str, recipe: dict[str, Any], n: int) -> bytes:
        if "fatbin" in recipe:
            return self.fatbin(recipe["fatbin"])
        out = self.work / "objects" / str(n) / Path(rel).name
        build_so(
            out,
            soname=recipe.get("soname"),
            needed=[self.stub(s) for s in recipe.get("needed", [])],
            rpath=recipe.get("rpath", []),
            strings=recipe.get("strings", []),
            symbol="f" + str(n),
        )
        return out.read_bytes()


def build_world(root: Path) -> tuple[str, str]:
    """Two file:// indexes of the same wheels: the past one (no ``new`` releases) and today's."""
    from pep503 import build_index

    need("gcc")
    need("nvcc")
    data, _ = tomlfile.read_toml(DATA / "index.toml", missing_hint="tests/data/watch/index.toml")
    elves = Elves(root / "elves")
    past, today = [], []
    for n, wheel in enumerate(data["wheel"]):
        files = {rel: elves.build(rel, recipe, n) for rel, recipe in wheel.get("files", {}).items()}
        path = make_wheel(root / "wheels", wheel["name"], wheel["version"], wheel.get("requires", []), files)
        today.append(path)
        if not wheel.get("new"):
            past.append(path)
    return (build_index(root / "past", past).as_uri(), build_index(root / "today", today).as_uri())


def isolate(mp: pytest.MonkeyPatch, index: str, cache: Path) -> None:
    """pip and uv see only ``index``: no pip configuration, no find-links, no other index, our own caches."""
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")):
            mp.delenv(key)
    mp.setenv("PIP_CONFIG_FILE", os.devnull)
    mp.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    mp.setenv("UV_NO_CONFIG", "1")
    mp.setenv("UV_CACHE_DIR", str(cache / "uv"))
    mp.setenv("WXM_CACHE", str(cache / "wxm"))
    use_index(mp, index)


def use_index(mp: pytest.MonkeyPatch, index: str) -> None:
    mp.setenv("PIP_INDEX_URL", index)
    mp.setenv("UV_DEFAULT_INDEX", index)


def no_cuda_env() -> SearchEnv:
    """This machine's loader without its CUDA toolkit (its ld.so.cache may list one): only the wheels provide CUDA."""
    system = SearchEnv.system(None)
    cache = {k: v for k, v in system.cache.items() if "cuda" not in v and "cublas" not in v}
    return SearchEnv(cache=cache, default_dirs=system.default_dirs)


def copy_project(dest: Path) -> Path:
    shutil.copytree(DATA / "project", dest)
    (dest / "constraints").mkdir()
    (dest / "reports").mkdir()
    shutil.copyfile(DATA / "matrix.json", dest / "reports" / "matrix.json")
    return dest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stand-in index, the project locked from its past, and one watch run on it today."""
    root = tmp_path_factory.mktemp("watch-world")
    past, today = build_world(root)
    project = copy_project(root / "project")
    mp = pytest.MonkeyPatch()
    try:
        isolate(mp, past, root / "cache")
        m = matrix.load(project / "matrix.toml")
        for status in lock.lock_all(m, m.cells):
            assert status.state == "written", status
        use_index(mp, today)
        result, found = run_watch(
            m, out=root / "out", results=project / "reports" / "matrix.json", env=no_cuda_env(), today=TODAY, say=print
        )
        yield {"root": root, "project": project, "result": result, "found": found, "out": root / "out", "today": today}
    finally:
        mp.undo()


def _release(world: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in world["result"]["releases"] if r["name"] == name)


def _cand(world: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in world["result"]["candidates"] if c["id"] == cid)


def _claim(cand: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in cand["claims"] if c["claim"] == cid)


# --- releases -------------------------------------------------------------------------------------------


def test_releases_newer_than_the_locks_each_with_its_candidate_or_why_none(world: dict[str, Any]) -> None:
    torch = _release(world, "torch")
    assert torch["locked"] == "2.11.0" and [n["version"] for n in torch["newer"]] == ["2.12.0", "2.12.1", "2.13.0"]
    assert all(n["date"] is None for n in torch["newer"])  # pip's index client gives no upload dates
    assert torch["candidates"] == ["stable-torch212-cu132", "stable-torch213-cu132"]
    assert torch["no_candidate"]["2.12.0"].startswith("superseded by 2.12.1")
    ct2 = _release(world, "ctranslate2")
    assert [n["version"] for n in ct2["newer"]] == ["4.9.0"] and ct2["candidates"] == ["stable-cu128-ctranslate2-4.9.0"]
    cublas = _release(world, "nvidia-cublas")
    assert set(cublas["resolved_by"]["13.2.0.9"]) == {"stable-torch212-cu132", "stable-torch213-cu132"}
    assert "no candidate resolves it" in cublas["no_candidate"]["13.3.0.5"]
    audio = _release(world, "torchaudio")
    assert "stable-torch212-cu132" in audio["resolved_by"]["2.12.1"]
    for current in ("whisperx", "torchcodec", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"):
        assert _release(world, current)["newer"] == [], current
    assert "date unknown" in world["result"]["dates"] or "dates unknown" in world["result"]["dates"]
    assert world["result"]["sms"] == [120, 90]  # the target, then the GPU the recorded probe saw


# --- candidates -----------------------------------------------------------------------------------------


def test_a_torch_candidate_is_a_cell_like_stable_cu130_with_the_family_the_index_has(world: dict[str, Any]) -> None:
    cand = _cand(world, "stable-torch212-cu132")
    path = Path(cand["file"])
    assert path.read_text() == cand["fragment"] and path.parent == world["out"] / "cells"
    table = tomlfile.tomllib.loads(cand["fragment"])["cells"][0]
    assert table["cuda"] == "cu132"  # nvidia-cuda-runtime 13.2.51
    assert table["overrides"] == ["torch==2.12.1", "torchaudio==2.12.1", "torchcodec==0.12.0"]
    assert table["pins"] == {"whisperx": "3.8.6"} and table["python"] == ["3.11", "3.12"]
    assert "aliases" not in table and table["channel"] == "stable"
    why = cand["family"]["why"]
    assert why["torchaudio"].endswith("it requires torch==2.12.1")
    assert why["torchcodec"].endswith("it declares no requirement on torch")
    assert "nvidia-cuda-runtime 13.2.51" in cand["family"]["cuda_from"]
    assert "# expect: predicted from the static audit; measure before committing" in cand["fragment"]
    # It is a cell the matrix accepts, and its locks (both Pythons) are the lock stage's own, fresh for that cell.
    m = matrix.load(world["project"] / "matrix.toml")
    trial = with_fragments(m, [cand["fragment"]])
    assert {"stable-torch212-cu132", "stable-torch212-cu132-py312"} <= set(trial.ids())
    assert cand["locks"] == ["stable-torch212-cu132", "stable-torch212-cu132-py312"]
    for lock_id in cand["locks"]:
        header = lock.read_header(world["out"] / "constraints" / f"{lock_id}.txt")
        assert header is not None and header.input_hash == lock.input_hash(lock.lock_inputs(trial, trial.get(lock_id)))


def test_a_companion_no_release_accepts_is_unknown_and_left_out(world: dict[str, Any]) -> None:
    cand = _cand(world, "stable-torch213-cu132")
    assert cand["family"]["versions"]["torchaudio"] is None
    assert cand["family"]["why"]["torchaudio"].startswith("unknown: no release >= 2.11.0 accepts torch 2.13.0")
    table = tomlfile.tomllib.loads(cand["fragment"])["cells"][0]
    assert not any(o.startswith("torchaudio") for o in table["overrides"])
    assert "torchaudio (left out)" in cand["fragment"]


# --- the static audit and what it predicts --------------------------------------------------------------


def test_the_arch_audit_predicts_a_torch_line_without_sm120(world: dict[str, Any]) -> None:
    cand = _cand(world, "stable-torch213-cu132")
    sm120, sm90 = cand["audit"]["per_sm"]["sm_120"], cand["audit"]["per_sm"]["sm_90"]
    assert sm120["reasons"] == ["arch-unsupported:sm_120"] and "SASS sm_90;" in sm120["torch"]
    assert sm90["runnable"] and sm90["reasons"] == []
    assert cand["expect"] == {"status": "fail", "reason": "arch-unsupported:sm_120"}
    assert cand["expect_sm"] == {"90": {"status": "pass"}}
    assert cand["outcome"]["kind"] == "changed" and "fail (arch-unsupported:sm_120)" in cand["outcome"]["text"]


def test_a_torch_candidate_re_resolves_ctranslate2_and_the_cublas12_failure_goes(world: dict[str, Any]) -> None:
    """stable-cu130 fails for libcublas.so.12 (CTranslate2 4.8.5); its torch 2.12 candidate resolves CTranslate2 4.9.0
    too, which loads libcublas.so.13, as torch does: no static failure is left. Predicted, never a pass."""
    cand = _cand(world, "stable-torch212-cu132")
    assert cand["audit"]["per_sm"]["sm_120"] == {
        "runnable": True,
        "reasons": [],
        "torch": "torch SASS sm_90 sm_120; PTX none",
    }
    assert cand["audit"]["closure_missing"] == [] and cand["expect"] == {"status": "pass"}
    outcome = cand["outcome"]
    assert outcome["kind"] == "changed" and "its static failure goes (missing-soname:libcublas.so.12" in outcome["text"]
    assert "build and suite" in outcome["predicted"]
    claim = _claim(cand, "cu13-lacks-cublas12")
    assert (claim["before"], claim["after"], claim["kind"]) == ("confirmed", "contradicted", "verdict-changes")
    assert any(
        w.startswith("+ measured: stable-cu130 (torch 2.12.1): libcublas.so.12 not wanted") for w in claim["why"]
    )


def test_a_new_torch_line_is_a_new_row_of_the_switch_claim(world: dict[str, Any]) -> None:
    with_sm120 = _claim(_cand(world, "stable-torch212-cu132"), "switch-212")
    assert (with_sm120["before"], with_sm120["after"], with_sm120["kind"]) == (
        "contradicted",
        "confirmed",
        "verdict-changes",
    )
    assert (
        "+ measured: stable-torch212-cu132: torch 2.12.1 (cu132, default index): has sm_120 SASS" in with_sm120["why"]
    )
    without = _claim(_cand(world, "stable-torch213-cu132"), "switch-212")
    assert (without["before"], without["after"], without["kind"]) == (
        "contradicted",
        "contradicted",
        "evidence-changes",
    )


def test_the_working_cell_bump_misses_cublas13_and_its_suite_claim_is_not_predicted(world: dict[str, Any]) -> None:
    cand = _cand(world, "stable-cu128-ctranslate2-4.9.0")
    assert cand["base"] == "stable-cu128" and tomlfile.tomllib.loads(cand["fragment"])["cells"][0]["pins"] == {
        "whisperx": "3.8.6",
        "torch": "2.8.0",
        "torchaudio": "2.8.0",
        "ctranslate2": "4.9.0",
    }
    assert cand["audit"]["per_sm"]["sm_120"]["reasons"] == ["missing-soname:libcublas.so.13"]
    assert any(
        m.startswith("libcublas.so.13 <- ctranslate2.libs/libctranslate2-b2") for m in cand["audit"]["closure_missing"]
    )
    assert cand["outcome"] == {
        "kind": "changed",
        "predicted": "fail (missing-soname:libcublas.so.13)",
        "text": "stable-cu128 passes -> fail (missing-soname:libcublas.so.13)",
    }
    lacks = _claim(cand, "working-lacks-cublas13")
    assert (lacks["before"], lacks["after"], lacks["kind"]) == ("contradicted", "confirmed", "verdict-changes")
    passes = _claim(cand, "working-passes")
    assert passes["kind"] == "needs-suite" and passes["after"] is None and "static only" in passes["why"][0]


# --- output ---------------------------------------------------------------------------------------------


def test_json_text_and_the_pull_request_body(world: dict[str, Any]) -> None:
    result = world["result"]
    assert json.loads(json.dumps(result)) == result
    assert set(result) >= {"releases", "candidates", "claims_before", "sms", "dates"}
    words = text(result)
    assert "stable-torch212-cu132: torch 2.12.1 (locked 2.11.0), made from stable-cu130" in words
    assert "predicted verdict changes (static only: build and suite not run):" in words
    assert "switch-212: contradicted -> confirmed with stable-torch212-cu132" in words
    body = markdown(result)
    assert body.startswith("Releases newer than the locks") and "did not run" in body.splitlines()[0]
    assert "| switch-212 | contradicted | confirmed |" in body and "```toml" in body
    assert str(world["root"]) not in body  # a pull request's body names no machine path
    for cand in result["candidates"]:
        assert f"### `{cand['id']}`" in body


# --- --apply --------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return proc.stdout


def _repo(tmp_path: Path) -> Path:
    repo = copy_project(tmp_path / "repo")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "watch@example.invalid")
    _git(repo, "config", "user.name", "watch test")
    return repo


def test_apply_commits_the_cells_and_their_locks_on_a_branch_of_their_own(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path)
    for lock_file in (world["project"] / "constraints").glob("*.txt"):
        shutil.copyfile(lock_file, repo / "constraints" / lock_file.name)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the project")
    isolate(monkeypatch, world["today"], world["root"] / "cache")
    found: list[Candidate] = world["found"]
    said = apply(matrix.load(repo / "matrix.toml"), found, today=TODAY)
    assert said.startswith("--apply: committed 3 candidate cell(s)") and f"watch/{TODAY}" in said
    assert _git(repo, "branch", "--show-current").strip() == f"watch/{TODAY}"
    assert _git(repo, "status", "--porcelain").strip() == ""
    changed = set(_git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert "matrix.toml" in changed and "constraints/stable-torch212-cu132-py312.txt" in changed
    m = matrix.load(repo / "matrix.toml")
    assert {"stable-torch212-cu132", "stable-torch213-cu132", "stable-cu128-ctranslate2-4.9.0"} <= set(m.ids())
    assert all(s.state == "fresh" for s in lock.check(m, m.cells)), lock.check(m, m.cells)
    assert "stable-torch212" not in _git(repo, "show", "main:matrix.toml")  # the branch it started from is as it was
    _git(repo, "switch", "-q", "main")
    with pytest.raises(ApplyError, match="already exists"):
        apply(matrix.load(repo / "matrix.toml"), found, today=TODAY)


def test_apply_refuses_a_dirty_tree_in_one_line_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repo(tmp_path)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the project")
    (repo / "requirements.txt").write_text("whisperx\n")
    monkeypatch.setenv("WXM_MATRIX", str(repo / "matrix.toml"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/never-asked")  # it must stop before asking
    assert cli.main(["watch", "--apply"]) == ApplyError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("error: --apply refuses a dirty tree: 1 changed file(s), e.g. requirements.txt")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2  # the cause, and the hint


def test_an_unreachable_index_is_one_error_with_a_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(tmp_path / "project")
    (project / "constraints" / "stable-cu128.txt").write_text("torch==2.8.0\n")
    isolate(monkeypatch, "http://127.0.0.1:9/simple", tmp_path / "cache")
    monkeypatch.setenv("WXM_MATRIX", str(project / "matrix.toml"))
    assert cli.main(["watch", "--package", "torch", "--out", str(tmp_path / "out")]) == 6
    err = capsys.readouterr().err
    assert "error: the package index could not be reached (pip index versions torch)" in err
    assert "hint: check the connection" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "watch.json").exists()

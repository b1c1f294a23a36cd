"""scripts/run_workflow_job.py: a workflow job run step by step from the YAML itself (the stand-in runner used on
the GPU machine). Real bash, real files; only GitHub (artifacts, secrets) is stood in for, as the script says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("run_workflow_job", ROOT / "scripts" / "run_workflow_job.py")
rwj = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rwj)  # type: ignore[union-attr]

WORKFLOW = """\
name: t
env:
  TOP: top
jobs:
  cell:
    runs-on: [self-hosted]
    steps:
      - uses: actions/checkout@0000000000000000000000000000000000000000
      - name: write
        env:
          CELL: ${{ matrix.cell }}
          HF_TOKEN: ${{ secrets.HF_TOKEN }}
        run: |
          mkdir -p "out/$CELL"
          echo "$TOP $CELL token-set=${HF_TOKEN:+yes}" > "out/$CELL/r.txt"
      - name: fail
        run: exit 3
      - name: skipped after a failure
        run: echo never > never.txt
      - name: upload
        if: always()
        uses: actions/upload-artifact@0000000000000000000000000000000000000000
        with:
          name: reports-${{ matrix.cell }}
          path: out/
  merge:
    runs-on: [self-hosted]
    steps:
      - uses: actions/download-artifact@0000000000000000000000000000000000000000
        with:
          pattern: reports-*
          path: got
      - run: cat got/*/*/r.txt > merged.txt
"""


def test_a_job_runs_its_own_steps_with_env_matrix_secrets_and_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = tmp_path / "wf.yml"
    wf.write_text(WORKFLOW)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_value_123")
    arts = tmp_path / "arts"
    rc = rwj.run_job(wf, "cell", matrix={"cell": "c1"}, inputs={}, artifacts=arts, record=tmp_path / "rec.json")
    assert rc == 1  # the failing step fails the job
    assert (tmp_path / "out" / "c1" / "r.txt").read_text() == "top c1 token-set=yes\n"
    assert not (tmp_path / "never.txt").exists()  # success() steps stop after a failure; always() ones run
    assert (arts / "reports-c1" / "c1" / "r.txt").exists()
    steps = json.loads((tmp_path / "rec.json").read_text())["steps"]
    assert [s.get("rc") for s in steps] == [0, 0, 3, None, 0] and steps[3]["skipped"]
    assert "hf_fake_value_123" not in (tmp_path / "rec.json").read_text()
    assert rwj.run_job(wf, "merge", matrix={}, inputs={}, artifacts=arts) == 0
    assert (tmp_path / "merged.txt").read_text() == "top c1 token-set=yes\n"


def test_unknown_expressions_and_actions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(rwj.WorkflowError, match="expression not supported"):
        rwj.substitute("${{ github.workspace.x }}", {"matrix": {}})
    with pytest.raises(rwj.WorkflowError, match="expression not supported"):
        rwj.substitute("${{ steps.x.conclusion }}", {"matrix": {}})
    with pytest.raises(rwj.WorkflowError, match="action not supported"):
        rwj.run_action("docker/build-push-action@v6", {}, tmp_path, print)


def test_the_real_gpu_workflow_is_understood() -> None:
    """Every step of the cell and report jobs is something this runner can run (no unknown action or expression)."""
    import yaml

    data = yaml.safe_load((ROOT / ".github" / "workflows" / "gpu-matrix.yml").read_text())
    for job in ("cell", "report", "bench", "bench-large-v3"):
        for step in data["jobs"][job]["steps"]:
            if "uses" in step:
                assert step["uses"].split("@")[0] in (
                    "actions/checkout",
                    "actions/upload-artifact",
                    "actions/download-artifact",
                    "actions/cache/restore",
                    "actions/cache/save",
                )
            else:
                ctx = {"matrix": {"cell": "x"}, "inputs": {}, "secrets": {}, "github": {"ref": "x"}, "steps": {}}
                for value in [step["run"], *(step.get("env") or {}).values()]:
                    rwj.substitute(str(value), ctx)


CACHED = """\
name: t
jobs:
  cell:
    runs-on: [self-hosted]
    steps:
      - id: key
        run: echo "key=k-$(cat input.txt)" >> "$GITHUB_OUTPUT"
      - uses: actions/cache/restore@0000000000000000000000000000000000000000
        id: restore
        with:
          path: store
          key: ${{ steps.key.outputs.key }}
      - name: work, only on a miss
        env:
          HIT: ${{ steps.restore.outputs.cache-hit }}
        run: |
          mkdir -p store
          if [ "$HIT" != true ]; then echo "ran $(cat input.txt)" >> runs.log; echo "$(cat input.txt)" > store/result; fi
      - if: always()
        uses: actions/cache/save@0000000000000000000000000000000000000000
        with:
          path: store
          key: ${{ steps.key.outputs.key }}
"""


def test_cache_actions_restore_what_a_key_saved_and_step_outputs_reach_later_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in for actions/cache: a key saved by one run is restored by the next, so the work runs once per
    input; a new input is a new key and runs again; a saved key is never overwritten."""
    wf = tmp_path / "wf.yml"
    wf.write_text(CACHED)
    monkeypatch.chdir(tmp_path)
    caches = tmp_path / "caches"

    def job() -> int:
        import shutil

        shutil.rmtree(tmp_path / "store", ignore_errors=True)  # a fresh workspace, as an ephemeral runner has
        return rwj.run_job(wf, "cell", matrix={}, inputs={}, artifacts=tmp_path / "arts", caches=caches)

    (tmp_path / "input.txt").write_text("a")
    assert job() == 0 and job() == 0
    assert (tmp_path / "runs.log").read_text() == "ran a\n"  # the second job restored k-a and ran nothing
    assert (caches / "k-a" / "result").read_text() == "a\n"
    (tmp_path / "input.txt").write_text("b")
    assert job() == 0
    assert (tmp_path / "runs.log").read_text() == "ran a\nran b\n"
    assert sorted(p.name for p in caches.iterdir()) == ["k-a", "k-b"]

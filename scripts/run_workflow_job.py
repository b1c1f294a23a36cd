#!/usr/bin/env python3
"""Run one job of a GitHub Actions workflow on this machine, step by step, as a self-hosted runner would.

The steps, their `env:` and their `if:` come from the workflow file itself, never from a copy of its commands,
so a run here tests the workflow as written. For a machine that stands in for the self-hosted GPU runner (the
lent GPU machine has no network and no GitHub): `actions/checkout` is the checkout this runs in,
`actions/upload-artifact` copies its `path` into ARTIFACTS/<name>, `actions/download-artifact` copies the
artifacts matching its `pattern` back, and `actions/cache/restore` and `actions/cache/save` keep `path` in
CACHES/<key> (a saved key is never overwritten, as on GitHub). Any other action is an error.

    run_workflow_job.py .github/workflows/gpu-matrix.yml cell --matrix cell=stable-cu128-py312 \
        --artifacts /tmp/artifacts --record steps.json

Expressions: ${{ matrix.X }}, ${{ inputs.X }}, ${{ secrets.X }} (from this environment, never printed),
${{ github.ref }}, ${{ steps.ID.outputs.X }} (what a step with that id wrote to $GITHUB_OUTPUT, or an action's
outputs), and always()/success()/failure() in `if:`. Anything else stops the run with its text.
Needs PyYAML.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class WorkflowError(Exception):
    pass


def substitute(text: str, context: dict[str, dict[str, str]]) -> str:
    def one(m: re.Match[str]) -> str:
        expr = m.group(1)
        step = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
        if step:
            return context.get("steps", {}).get(f"{step.group(1)}.{step.group(2)}", "")
        scope, _, key = expr.partition(".")
        if scope in context and key and re.fullmatch(r"[\w-]+", key):
            return context[scope].get(key, "")
        raise WorkflowError(f"expression not supported here: ${{{{ {expr} }}}}")

    return _EXPR.sub(one, text)


def should_run(condition: str | None, failed: bool) -> bool:
    """`if:` of a step: success() by default; always(), failure() and success() understood."""
    cond = _EXPR.sub(lambda m: m.group(1), str(condition or "success()")).strip()
    if cond == "always()":
        return True
    if cond == "failure()":
        return failed
    if cond == "success()":
        return not failed
    raise WorkflowError(f"step condition not supported here: {condition!r}")


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    elif src.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def run_action(
    uses: str, with_: dict[str, str], artifacts: Path, say: Any, caches: Path | None = None
) -> tuple[int, dict[str, str]]:
    """One action's exit code and outputs."""
    name = uses.split("@", 1)[0]
    if name in ("actions/cache/restore", "actions/cache/save"):
        if caches is None:
            raise WorkflowError(f"{uses} needs --caches (where the stand-in keeps saved caches)")
        key, path = with_["key"], Path(with_["path"])
        stored = caches / key
        if name == "actions/cache/restore":
            hit = stored.is_dir()
            if hit:
                _copy(stored, path)
            say(f"  cache restore {key}: {'hit' if hit else 'miss'}")
            return 0, {"cache-hit": "true" if hit else "false", "cache-primary-key": key}
        if stored.exists():
            say(f"  cache save {key}: already saved (a key is never overwritten)")
            return 0, {}
        if not path.exists():
            say(f"  cache save {key}: nothing at {path}")
            return 0, {}
        _copy(path, stored)
        say(f"  cache save {key}: {path}")
        return 0, {}
    return run_action_plain(uses, with_, artifacts, say), {}


def run_action_plain(uses: str, with_: dict[str, str], artifacts: Path, say: Any) -> int:
    name = uses.split("@", 1)[0]
    if name == "actions/checkout":
        say("  checkout: this checkout")
        return 0
    if name == "actions/upload-artifact":
        src = Path(with_["path"])
        if not src.exists():
            if with_.get("if-no-files-found", "warn") == "error":
                say(f"  upload-artifact: nothing at {src}")
                return 1
            say(f"  upload-artifact: nothing at {src} (warn)")
            return 0
        _copy(src, artifacts / with_["name"])
        say(f"  upload-artifact: {src} -> {with_['name']}")
        return 0
    if name == "actions/download-artifact":
        dest = Path(with_.get("path", "."))
        found = sorted(p for p in artifacts.iterdir() if fnmatch.fnmatch(p.name, with_.get("pattern", "*")))
        for art in found:
            _copy(art, dest / art.name)
        say(f"  download-artifact: {', '.join(p.name for p in found) or 'none'} -> {dest}")
        return 0
    raise WorkflowError(f"action not supported on this stand-in runner: {uses}")


def run_job(
    workflow: Path,
    job: str,
    *,
    matrix: dict[str, str],
    inputs: dict[str, str],
    artifacts: Path,
    record: Path | None = None,
    caches: Path | None = None,
) -> int:
    data = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    jobs = data.get("jobs") or {}
    if job not in jobs:
        raise WorkflowError(f"no job {job!r} in {workflow} (jobs: {', '.join(jobs)})")
    spec = jobs[job]
    secrets = {k: v for k, v in os.environ.items() if k in ("HF_TOKEN", "GITHUB_TOKEN")}
    context = {
        "matrix": matrix,
        "inputs": inputs,
        "secrets": secrets,
        "github": {"ref": os.environ.get("GITHUB_REF", "refs/heads/main")},
        "steps": {},  # "ID.NAME" -> a step's output
    }
    base_env = dict(os.environ)
    for scope in (data.get("env") or {}, spec.get("env") or {}):
        base_env.update({k: substitute(str(v), context) for k, v in scope.items()})
    artifacts.mkdir(parents=True, exist_ok=True)
    steps_out: list[dict[str, Any]] = []
    failed = False
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    outputs = Path(tempfile.mkstemp(prefix="github-output-")[1])
    for i, step in enumerate(spec.get("steps") or [], 1):
        name = step.get("name") or step.get("uses") or f"step {i}"
        if not should_run(step.get("if"), failed):
            steps_out.append({"step": name, "skipped": True})
            continue
        say(f"::step {i} {name}")
        t0 = time.perf_counter()
        if "uses" in step:
            with_ = {k: substitute(str(v), context) for k, v in (step.get("with") or {}).items()}
            rc, got = run_action(step["uses"], with_, artifacts, say, caches)
        else:
            env = dict(base_env, GITHUB_OUTPUT=str(outputs))
            env.update({k: substitute(str(v), context) for k, v in (step.get("env") or {}).items()})
            script = substitute(str(step["run"]), context)
            outputs.write_text("")
            rc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=env).returncode
            got = dict(ln.split("=", 1) for ln in outputs.read_text().splitlines() if "=" in ln)
        if step.get("id"):
            context["steps"].update({f"{step['id']}.{k}": v for k, v in got.items()})
        seconds = round(time.perf_counter() - t0, 1)
        steps_out.append({"step": name, "rc": rc, "seconds": seconds})
        say(f"::step {i} {name}: exit {rc} [{seconds} s]")
        failed = failed or rc != 0
    if record is not None:
        record.write_text(
            json.dumps({"workflow": workflow.name, "job": job, "matrix": matrix, "steps": steps_out}, indent=2) + "\n"
        )
    return 1 if failed else 0


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise WorkflowError(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workflow", type=Path)
    p.add_argument("job")
    p.add_argument("--matrix", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--input", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where artifacts are kept between jobs")
    p.add_argument("--record", type=Path, help="write each step's exit code and seconds here (JSON)")
    p.add_argument("--caches", type=Path, default=None, help="where actions/cache keeps saved keys (a folder)")
    args = p.parse_args(argv)
    try:
        return run_job(
            args.workflow,
            args.job,
            matrix=_pairs(args.matrix),
            inputs=_pairs(args.input),
            artifacts=args.artifacts,
            record=args.record,
            caches=args.caches,
        )
    except (WorkflowError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

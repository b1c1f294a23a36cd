"""``--apply``: the candidates on a branch of their own. A new branch ``watch/<date>`` (never the one checked out),
the fragments appended to matrix.toml, their locks written by the lock stage's own code (what ``nox -s lock --
<cells>`` runs), one commit. A dirty tree is refused before anything is downloaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import tools
from ..errors import FatalError, LockError
from ..fsutil import atomic_write_text
from ..lock import REGENERATE, lock_all, lock_path
from ..matrix import Matrix
from ..matrix import load as load_matrix
from .candidates import Candidate


class ApplyError(FatalError):
    """--apply cannot go ahead (a dirty tree, a branch that exists, git failing)."""

    exit_code = 13


def _git(root: Path, *args: str) -> tools.Completed:
    try:
        return tools.run(["git", *args], cwd=root)
    except OSError as exc:
        raise ApplyError(f"cannot run git: {exc}", hint="install git, or drop --apply") from None


def refuse_dirty(root: Path) -> None:
    """ApplyError unless ``root`` is a git checkout whose tracked files have no change (staged or not)."""
    proc = _git(root, "status", "--porcelain", "--untracked-files=no")
    if not proc.ok:
        raise ApplyError(
            f"--apply needs a git checkout: {proc.last_error_line()}", hint="run it in the project's clone"
        )
    changed = [ln[3:] for ln in proc.stdout.splitlines() if ln.strip()]
    if changed:
        raise ApplyError(
            f"--apply refuses a dirty tree: {len(changed)} changed file(s), e.g. {changed[0]}",
            hint="commit or set aside your changes, then run nox -s watch -- --apply again",
        )


def apply(m: Matrix, found: Sequence[Candidate], *, today: str) -> str:
    """Create the branch, append the fragments, lock the new cells, commit. Returns what was done, in a line."""
    root = m.root
    if not found:
        return "--apply: no candidate, nothing to commit (no branch made)"
    refuse_dirty(root)
    branch = f"watch/{today}"
    if _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").ok:
        raise ApplyError(f"branch {branch} already exists", hint=f"delete it (git branch -D {branch}) or rename it")
    made = _git(root, "switch", "-c", branch)
    if not made.ok:
        raise ApplyError(f"git switch -c {branch} failed: {made.last_error_line()}")
    text = m.path.read_text(encoding="utf-8").rstrip("\n") + "\n"
    for cand in found:
        text += "\n" + cand.fragment()
    atomic_write_text(m.path, text)
    new = load_matrix(m.path)
    ids = {c.id for c in found}
    cells = [c for c in new.cells if c.id in ids or any(c.id.startswith(i + "-py") for i in ids)]
    results = lock_all(new, cells)
    failed = [r for r in results if r.state not in ("written", "fresh")]
    if failed:
        raise LockError(
            f"--apply on {branch}: could not lock {', '.join(f'{r.lock_id} ({r.detail})' for r in failed)}",
            hint=f"the fragments are in matrix.toml on {branch}, uncommitted; fix or drop them, then {REGENERATE}",
        )
    files = [m.path.name] + [str(lock_path(new, c).relative_to(root)) for c in cells]
    added = _git(root, "add", "--", *dict.fromkeys(files))
    message = (
        f"watch: candidate cells {', '.join(sorted(ids))} (nox -s watch -- --apply, {today}); expect is predicted "
        "from the static audit: measure before committing"
    )
    done = _git(root, "commit", "-q", "-m", message) if added.ok else added
    if not done.ok:
        raise ApplyError(f"git commit on {branch} failed: {done.last_error_line()}")
    return f"--apply: committed {len(found)} candidate cell(s) and {len(cells)} lock(s) on branch {branch}"

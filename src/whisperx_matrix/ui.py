"""The host side's console: progress bars on stderr and tables as plain text, both through rich.

rich is imported only when a bar is drawn or a table rendered: ``preflight`` runs before anything is installed,
and off a terminal no bar needs it. Cellside code never imports this module: it runs in the cells' own Python,
which has the standard library only.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


_say_lock = threading.Lock()


def say(msg: str) -> None:
    """One progress line on stderr, whole even when the matrix's worker threads speak at once."""
    with _say_lock:
        print(msg, file=sys.stderr, flush=True)


def interactive() -> bool:
    """Whether a live bar may draw: stderr is a terminal (not a dumb one) and this is not CI, whose log keeps
    plain lines."""
    dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    return sys.stderr.isatty() and not dumb and not os.environ.get("CI")


class Bar:
    """One task of the live display; every method does nothing when the display is off."""

    def __init__(self, live: Progress | None, task: TaskID | None) -> None:
        self._live = live
        self._task = task

    @property
    def shown(self) -> bool:
        return self._live is not None

    def advance(self, n: int = 1, note: str | None = None) -> None:
        if self._live is not None and self._task is not None:
            self._live.update(self._task, advance=n)
        if note is not None:
            self.note(note)

    def note(self, text: str) -> None:
        """What is being done now, shown after the bar: its tail, where a long path ends in the file's name."""
        if self._live is not None and self._task is not None:
            self._live.update(self._task, note=text[-60:])


# One live display for the whole process: rich allows only one at a time, and the matrix run builds cells on
# several threads at once, each with its own bar.
_lock = threading.Lock()
_live: Progress | None = None
_bars = 0


def _new_live() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
        console=Console(stderr=True, highlight=False),
        transient=True,  # the bar goes when the work ends; the log lines printed above it stay
        redirect_stdout=False,  # stdout may be a file or a pipe: it must never receive the console's output
        redirect_stderr=True,  # lines printed to stderr while the bar runs go above it, whole
    )


@contextmanager
def progress(total: int | None, label: str, *, enabled: bool = True) -> Iterator[Bar]:
    """A transient progress bar on stderr for ``total`` steps (``None``: unknown, a pulse with the time taken).

    Drawn only when ``enabled`` and :func:`interactive`: off a terminal or in CI nothing is drawn, so logs keep
    only the lines the work prints itself. Bars opened while one is showing (nested or on other threads) share
    its display, one row each."""
    global _live, _bars
    if not (enabled and interactive()):
        yield Bar(None, None)
        return
    with _lock:
        if _live is None:
            _live = _new_live()
            _live.start()
        _bars += 1
        live = _live
        task = live.add_task(label, total=total, note="")
    try:
        yield Bar(live, task)
    finally:
        with _lock:
            live.remove_task(task)
            _bars -= 1
            if _bars == 0:
                live.stop()
                _live = None


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    title: str | None = None,
    right: Collection[int] = (),
    indent: int = 0,
) -> str:
    """``rows`` under ``headers`` as plain text (no colour codes), each column as wide as its widest cell.

    The width is the table's own, never the terminal's: a log reads the same from any terminal and no cell is
    cut or wrapped. ``right``: indexes of the columns aligned right (numbers). ``indent``: spaces before each
    line. Cells are text, never rich markup (a "[...]" in a cell stays as it is)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Under the header, one ASCII rule; no other lines: a table reads the same in a log file as on a terminal.
    rule_under_header = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
    grid = Table(box=rule_under_header, show_edge=False, pad_edge=False, padding=(0, 1), header_style="")
    for i, header in enumerate(headers):
        grid.add_column(Text(header), justify="right" if i in right else "left", no_wrap=True)
    for row in rows:
        grid.add_row(*(Text(str(cell)) for cell in row))
    width = Console(file=io.StringIO(), width=10_000).measure(grid).maximum
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False, highlight=False).print(grid)
    text = f"{title}\n{out.getvalue()}" if title else out.getvalue()
    return "\n".join(" " * indent + line.rstrip() if line.strip() else "" for line in text.splitlines()).rstrip("\n")

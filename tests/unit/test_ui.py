"""The host side's console: tables render to plain text, and progress bars draw only on a terminal outside CI."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from whisperx_matrix import cli, ui


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_table_is_plain_aligned_text() -> None:
    text = ui.table(["NAME", "SIZE"], [["torch", "2.1 GB"], ["six [py2]", "0.0 GB"]], right=(1,), indent=2)
    lines = text.splitlines()
    assert lines[0].startswith("  NAME") and lines[0].endswith("SIZE")
    assert set(lines[1].strip()) <= {"-", " "}
    assert "six [py2]" in lines[3]  # a cell is text, never rich markup
    assert lines[2].endswith("2.1 GB") and lines[3].endswith("0.0 GB")
    assert len({len(line) for line in lines[2:]}) == 1  # right-aligned numbers end in one column
    assert all(line == line.rstrip() for line in lines)


def test_table_has_no_colour_and_ignores_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["a-rather-long-cell-id-that-would-not-fit-in-twenty-columns", "[bold]x[/bold]"]]
    plain = ui.table(["CELL", "NOTE"], rows, title="cells")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.setattr("sys.stdout", _Terminal())
    assert ui.table(["CELL", "NOTE"], rows, title="cells") == plain
    assert "\x1b" not in plain and "[bold]x[/bold]" in plain
    assert plain.splitlines()[0] == "cells" and len(plain.splitlines()) == 4  # title, header, rule, one row


def test_progress_is_off_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert not ui.interactive()
    with ui.progress(3, "work") as bar:
        assert not bar.shown
        bar.advance(note="a file")
        bar.note("something")
    assert capsys.readouterr().err == ""


def test_progress_is_off_in_ci_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr("sys.stderr", _Terminal())
    monkeypatch.delenv("CI", raising=False)
    assert ui.interactive()
    monkeypatch.setenv("CI", "true")
    assert not ui.interactive()
    with ui.progress(3, "work") as bar:
        assert not bar.shown
    monkeypatch.delenv("CI")
    with ui.progress(3, "work", enabled=False) as bar:  # and off when the caller says so (audit --no-progress)
        assert not bar.shown


def test_bars_on_a_terminal_share_one_display_and_leave_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", terminal)
    seen = []

    def worker(n: int) -> None:
        with ui.progress(2, f"thread {n}") as bar:
            seen.append(ui._live)
            bar.advance(2)

    with ui.progress(None, "outer") as outer:
        assert outer.shown
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(seen) == 3 and len({id(live) for live in seen}) == 1  # one live display for all of them
    assert ui._live is None and ui._bars == 0


def test_list_prints_a_table_of_the_cells(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WXM_MATRIX", str(Path(__file__).resolve().parents[2] / "matrix.toml"))
    assert cli.main(["list", "stable-cu128"]) == 0
    header, rule, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["CELL", "ALIASES", "CHANNEL", "CUDA", "EXPECT"]
    assert row.split()[:4] == ["stable-cu128", "cu128", "stable", "cu128"]

"""The report's freshness: per key package the newest release judged beside the newest on the index, read through
pip's own index client (a stand-in runner here: never the network), and a plain line when the matrix is behind."""

from __future__ import annotations

from collections.abc import Sequence

from whisperx_matrix import freshness, report, tools


def _pip(answers: dict[str, str]):  # type: ignore[no-untyped-def]
    """A stand-in for `pip index versions NAME`: the "Available versions:" line pip prints, or a network error."""

    def run(args: Sequence[str]) -> tools.Completed:
        name = args[args.index("versions") + 1]
        if name not in answers:
            return tools.Completed(tuple(args), 1, "", "ERROR: Could not find a version that satisfies the requirement")
        if answers[name] == "offline":
            return tools.Completed(
                tuple(args), 1, "", "Failed to establish a new connection: Name or service not known"
            )
        return tools.Completed(tuple(args), 0, f"{name} (x)\nAvailable versions: {answers[name]}\n", "")

    return run


CELLS = [
    {"id": "stable-cu128", "versions": {"torch": "2.8.0", "whisperx": "3.8.6"}},
    {"id": "stable-cu130", "versions": {"torch": "2.11.0", "whisperx": "3.8.6"}},
    {"id": "option1-stable-cu124", "versions": {"torch": "2.5.1", "whisperx": "3.4.2"}},
]


def test_behind_where_the_index_has_a_newer_final_release_than_any_cell_judged() -> None:
    run = _pip({"torch": "2.16.0rc1, 2.15.0, 2.13.0+cpu, 2.11.0, 2.8.0", "whisperx": "3.8.6, 3.8.7rc1, 3.8.5"})
    record = freshness.judge(CELLS, freshness.collect(("torch", "whisperx"), run=run), None)
    assert record["packages"]["torch"] == {
        "judged": "2.11.0",
        "judged_in": "stable-cu130",
        "index": "2.15.0",
        "behind": True,
    }
    assert record["packages"]["whisperx"]["behind"] is False  # a release candidate is not a release
    assert record["behind"] == ["torch"]
    text = freshness.lines(record)
    assert text[0].startswith("The matrix is behind the index (read ") and text[0].endswith(
        "on 1 of 2 key packages: torch."
    )
    assert "torch: newest judged 2.11.0 (stable-cu130); newest on the index 2.15.0 (behind)" in text
    assert text[-1].startswith("Release dates: upload dates unknown")


def test_an_unreachable_index_is_recorded_and_never_fails_the_run() -> None:
    record = freshness.judge(CELLS, freshness.collect(("torch",), run=_pip({"torch": "offline"})), None)
    assert "packages" not in record and "could not be reached" in record["error"]
    assert freshness.lines(record)[0].startswith("Freshness unknown: the index could not be read on ")


def test_the_report_header_states_freshness_and_old_results_render_without_it() -> None:
    result = {"schema": 1, "target_sm": 120, "cells": [], "claims": [], "generated_at": "t"}
    assert "behind" not in report.render_markdown(result)
    result["freshness"] = freshness.judge(CELLS, freshness.collect(("torch",), run=_pip({"torch": "2.15.0"})), None)
    md, html = report.render_markdown(result), report.render_html(result, None)
    for page in (md, html):
        assert "The matrix is behind the index" in page and "newest on the index 2.15.0" in page
    assert md.index("behind the index") < md.index("## Claims of the document")


def test_judged_again_on_other_cells_and_read_from_their_locks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A merge judges the index as read against its own cells; a stable cell's committed lock and a floating
    cell's kept lock count as judged versions too (torchvision is in no self-test record)."""
    record = freshness.collect(("torch", "torchvision"), run=_pip({"torch": "2.15.0", "torchvision": "0.29.2"}))
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints" / "stable-cu132.txt").write_text(
        "torch==2.15.0 \\\n    --hash=sha256:00\ntorchvision==0.29.2\n"
    )
    cells = [
        {"id": "stable-cu132", "versions": {"torch": "2.15.0"}, "lock": {"file": "constraints/stable-cu132.txt"}},
        {"id": "fresh", "versions": {"torch": "2.8.0"}, "lock": {"floating": True, "text": "torchvision==0.23.0\n"}},
    ]
    judged = freshness.judge(cells, record, tmp_path)
    assert judged["behind"] == [] and judged["packages"]["torchvision"]["judged_in"] == "stable-cu132"
    assert freshness.judge(cells[1:], judged, tmp_path)["behind"] == ["torch", "torchvision"]


def test_the_lines_read_the_same_whatever_order_the_record_holds_its_packages() -> None:
    """A report is written from the run's record and re-rendered from its JSON (keys sorted): the same lines."""
    run = _pip({"whisperx": "3.8.6", "torch": "2.15.0"})
    record = freshness.judge(CELLS, freshness.collect(("whisperx", "torch"), run=run), None)
    assert list(record["packages"]) == ["whisperx", "torch"]  # the order the index was asked in
    reordered = record | {"packages": dict(sorted(record["packages"].items()))}
    assert freshness.lines(record) == freshness.lines(reordered)
    assert [ln.split(":")[0] for ln in freshness.lines(record)[1:3]] == ["torch", "whisperx"]

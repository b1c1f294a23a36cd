"""The report stage: Markdown/HTML/PNG/JSON of a realistic result, merge of per-cell CI results, the README's
claims block, atomic writes with an injected failure, token redaction, and the HTML in a real headless Chromium."""

from __future__ import annotations

import copy
import html
import json
import os
import random
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from whisperx_matrix import cli, report, verdict
from whisperx_matrix.report import ReportError

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data" / "report"
needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install 'whisperx-matrix[report]')"
)
CHROMIUM_APT = "chromium"  # the Debian package .ci/run installs for the browser test


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture
def sample() -> dict[str, Any]:
    return _load("sample-result.json")


def _table_rows(md: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with ``| first_header |``, split into cells."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").replace("\\|", "\0").split("|")])
    return rows


def _cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """cli.main, the real catch site, with only this command registered (other commands' modules may be
    mid-edit in a shared tree; they have their own tests)."""
    assert "whisperx_matrix.report" in cli.COMMAND_MODULES
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("whisperx_matrix.report",))
    return cli.main(["report", *argv])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------- the data


def test_sample_covers_every_verdict_and_its_totals_hold(sample: dict[str, Any]) -> None:
    verdicts = [c["verdict"] for c in sample["cells"]]
    # the sample predates "incomplete" (its old totals must keep rendering as they did); _newer() adds one
    assert set(verdicts) == set(verdict.VERDICTS) - {"incomplete"}
    assert [c["id"] for c in sample["cells"] if c["verdict"] == "not-testable"] == ["nightly-cu128", "nightly-cu130"]
    assert (
        sample["totals"]
        == verdict.totals(sample["cells"])
        == {"cells": 9, "as_expected": 4, "unexpected": 3, "not_testable": 2}
    )
    for cell in sample["cells"]:
        assert set(cell["checks"]) == set(report.CHECKS), cell["id"]


@pytest.mark.parametrize(
    ("check", "kind"),
    [
        (None, "none"),
        ({"status": "skip", "expected": True}, "none"),
        ({"status": "pass", "expected": True}, "ok"),
        ({"status": "fail", "expected": True}, "expected-fail"),
        ({"status": "fail", "expected": False}, "unexpected"),
        ({"status": "pass", "expected": False}, "unexpected"),
        ({"status": "fail", "expected": "fail"}, "expected-fail"),  # expected given as the expected status
        ({"status": "pass", "expected": "fail"}, "unexpected"),
    ],
)
def test_check_kind_truth_table(check: dict[str, Any] | None, kind: str) -> None:
    assert report.check_kind(check) == kind


@pytest.mark.parametrize(
    ("name", "status", "expected", "detail", "label"),
    [
        ("arch", "fail", True, "arch-unsupported:sm_120: SASS sm_50..sm_90", "sm_120 ✗"),
        ("arch", "pass", True, "sm_120 SASS in torch", "sm_120 ✓"),
        ("closure", "fail", True, "missing-soname:libcublas.so.12 (dlopen)", "libcublas.so.12"),
        ("closure", "pass", False, "libcublas.so.12 found only through LD_LIBRARY_PATH", "libcublas.so.12"),
        ("selftest", "fail", False, "ModuleNotFoundError: No module named 'omegaconf'", "no omegaconf"),
        ("suite", "skip", True, "not run: the self-test failed", "not run"),
        ("lock", "skip", True, "index-unreachable: pytorch-nightly-cu128", "unreachable"),
    ],
)
def test_short_labels(name: str, status: str, expected: bool, detail: str, label: str) -> None:
    assert report.short_label(name, {"status": status, "expected": expected, "detail": detail}, 120) == label


def test_short_labels_of_passes_and_given_labels() -> None:
    assert report.short_label("build", {"status": "pass", "expected": True, "seconds": 41.7}, 120) == "ok 42 s"
    assert report.short_label("lock", {"status": "fail", "expected": False, "label": "stale"}, 120) == "stale"


# ---------------------------------------------------------------------------------------------- Markdown


def test_markdown_headline_cells_and_claims(sample: dict[str, Any]) -> None:
    md = report.render_markdown(sample)
    assert "**9 cells: 4 as expected, 3 unexpected, 2 not testable here (target sm_120)**" in md.splitlines()

    cells = _table_rows(md, "cell")
    assert [r[0] for r in cells] == [f"`{c['id']}`" for c in sample["cells"]]
    by_id = {r[0].strip("`"): r for r in cells}
    assert all(len(r) == 6 for r in cells)
    assert {r[1] for r in cells} == {"x86_64"}  # the platform column: results before the axis were all x86_64
    assert by_id["stable-cu130"][2:5] == ["fail `missing-soname:libcublas.so.12`", "pass", "**unexpected-pass**"]
    assert by_id["option1-stable-cu124"][2:5] == [
        "fail `arch-unsupported:sm_120`",
        "fail `arch-unsupported:sm_120`",
        "failed-as-expected",
    ]
    assert by_id["doc-recipe-cu128-unpatched"][4] == "**wrong-reason**"
    assert by_id["stable-cu126"][2:5] == ["pass", "fail `arch-unsupported:sm_120`", "**unexpected-failure**"]
    assert by_id["nightly-cu130"][4] == "not-testable"
    assert "&lt;- ctranslate2/libctranslate2.so.4.6.0" in by_id["stable-cu130"][5]  # raw '<' never reaches the PR

    claims = _table_rows(md, "claim")
    assert [r[0].split("<br>")[0] for r in claims] == [f"`{c['id']}`" for c in sample["claims"]]
    driver = claims[0]
    assert driver[1] == "“NVIDIA driver 565 or newer is required”" and driver[2] == "**contradicted**"
    assert "570.26" in driver[4] and "<br>565 is too old" in driver[4]  # multi-line evidence stays in its cell
    assert [r[2] for r in claims].count("not-testable") == 2

    alone = report.claims_markdown(sample)
    assert alone in md and alone.startswith("| claim | the document says | verdict | basis | evidence |")
    assert "| cell |" not in alone


def test_markdown_cells_escape_pipes_and_newlines(sample: dict[str, Any]) -> None:
    sample["cells"][0]["evidence"] = ["a | b", "two\nlines", "*all* of _it_, use_auth_token"]
    row = _table_rows(report.render_markdown(sample), "cell")[0]
    assert len(row) == 6 and row[5] == "a \0 b<br>two<br>lines<br>\\*all\\* of \\_it\\_, use_auth_token"


# ---------------------------------------------------------------------------------------------- verdicts first

ESCAPED = "\x1b[1mWeights only load failed\x1b[0m. Re-running \x1b]8;;file:///x\x07torch.load\x1b]8;;\x07 \x07\x00done"
LONG_TOKEN = (
    "/home/runner/envs/stable-cu130-cublas12-py312/lib/python3.12/site-packages/"
    + "nvidia/cu13/" * 24
    + "lib/libcublasLt.so.13.0.0.19"
)
PARTIAL = "CPU and static only; GPU part not run"
PARTS = [
    {"part": "option 1 fails on sm_120", "verdict": "confirmed"},
    {"part": "the GPU is not detected at all", "verdict": "contradicted"},
]
UNOBSERVED = "GPU part: not run (no GPU: nvidia-smi not found, no /dev/nvidia* device nodes)"
CONTEXT_TEXT = "stable-cu128 (torch 2.8.0) carries sm_120 SASS"


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value] if value else []


def _newer(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with what the verdict stage writes since issue #21 (an incomplete cell and what it did not
    observe, a mixed claim with its parts, a partial verdict, an evidence item shown as context), a message with
    terminal escapes, and a long token with no space wherever text must wrap."""
    r = copy.deepcopy(result)
    cells = r["cells"]
    first = cells[0]
    first["evidence"] = [*_as_list(first.get("evidence")), ESCAPED, LONG_TOKEN]
    first["observed"]["reasons"] = [*first["observed"].get("reasons", []), f"missing-soname:{LONG_TOKEN}"]
    first["checks"]["closure"]["detail"] = f"{first['checks']['closure'].get('detail', '')} {LONG_TOKEN}"
    passed = next(c for c in reversed(cells) if c["verdict"] == "as-expected")
    passed["verdict"] = "incomplete"
    passed["observed"] = {"status": "pass", "reasons": [], "unobserved": [UNOBSERVED]}
    r["totals"] = {**verdict.totals(cells), "incomplete": sum(c["verdict"] == "incomplete" for c in cells)}

    mixed, partial = r["claims"][0], r["claims"][1]
    mixed.update(verdict="mixed", parts=copy.deepcopy(PARTS))
    mixed["evidence"] = [*_as_list(mixed.get("evidence")), LONG_TOKEN]
    partial.update(verdict="confirmed", partial=PARTIAL)
    partial["evidence"] = [
        *_as_list(partial.get("evidence")),
        {"basis": "measured", "cell": "stable-cu128", "text": CONTEXT_TEXT, "context": True},
    ]
    return r


def test_the_report_leads_with_the_claims(sample: dict[str, Any]) -> None:
    md = report.render_markdown(sample)
    at = [md.index(h) for h in ("**9 cells:", "Generated ", "## Claims of the document\n", "## Cells\n")]
    assert at == sorted(at)
    assert _table_rows(md, "claim") and _table_rows(md, "cell")

    sample["probes"] = [{"label": "h200", "gpu": {"present": True, "name": "H200", "sm": 90, "driver": "580"}}]
    page = report.render_html(sample, b"\x89PNG fake")
    at = [
        page.index(s)
        for s in (
            'id="headline"',
            'class="meta"',
            'id="claims"',
            'id="cells"',
            'id="grid"',
            'id="checks"',
            'id="probes"',
        )
    ]
    assert at == sorted(at)
    md = report.render_markdown(sample)
    assert md.index("## Cells\n") < md.index("## GPU probes\n")


def test_red_is_only_for_the_unexpected() -> None:
    red = report.COLOURS["unexpected"]
    assert len(set(report.COLOURS.values())) == len(report.COLOURS)  # one colour, one meaning
    assert set(report.VERDICT_KIND) == set(verdict.VERDICTS) | {"incomplete"}
    assert {v for v, k in report.VERDICT_KIND.items() if report.COLOURS[k] == red} == set(verdict.UNEXPECTED)
    assert report.VERDICT_KIND["failed-as-expected"] == "expected-fail"
    assert report.VERDICT_KIND["as-expected"] == "ok"
    assert report.VERDICT_KIND["not-testable"] == "none"
    assert report.VERDICT_KIND["incomplete"] == "incomplete" and report.COLOURS["incomplete"] != red
    # a contradicted claim is a finding about the document, not an unexpected outcome
    assert set(report.CLAIM_KIND) == {"confirmed", "contradicted", "mixed", "not-testable"}
    assert red not in {report.COLOURS[k] for k in report.CLAIM_KIND.values()}
    assert report.CLAIM_KIND["confirmed"] == "ok" and report.CLAIM_KIND["not-testable"] == "none"
    assert len({report.COLOURS[k] for k in report.CLAIM_KIND.values()}) == 4
    # the check squares keep check_kind's four kinds: red exactly when the status was not the expected one
    assert report.LEGEND.keys() == {"ok", "expected-fail", "unexpected", "none"}
    assert report.check_kind({"status": "fail", "expected": True}) == "expected-fail"
    assert report.check_kind({"status": "fail", "expected": False}) == "unexpected"


def test_html_colours_verdicts_by_kind(sample: dict[str, Any]) -> None:
    page = report.render_html(_newer(sample), None)
    assert '<td class="v contradicted">contradicted</td>' in page  # the sample's last claim
    assert '<td class="v mixed">mixed' in page
    assert '<td class="v incomplete">incomplete</td>' in page
    assert '<td class="v unexpected">unexpected-pass</td>' in page
    css = page.split("<style>", 1)[1].split("</style>", 1)[0]
    for kind, colour in report.COLOURS.items():
        assert f"td.v.{kind}{{background:{colour}" in css
    assert "td.v.contradicted{background:" + report.COLOURS["unexpected"] not in css
    for what in ("claims", "cells", "checks"):  # the checks' legend is in the grid when there is one
        assert f'id="legend-{what}"' in page
    assert 'id="legend-checks"' not in report.render_html(sample, b"\x89PNG fake")
    claims_legend = page.split('id="legend-claims">', 1)[1].split("</p>", 1)[0]
    assert report.COLOURS["unexpected"] not in claims_legend and "contradicted" in claims_legend


def test_markdown_renders_parts_partials_context_and_unobserved(sample: dict[str, Any]) -> None:
    newer = _newer(sample)
    md = report.render_markdown(newer)
    claims = {r[0].split("<br>")[0].strip("`"): r for r in _table_rows(md, "claim")}
    mixed, partial = claims[newer["claims"][0]["id"]], claims[newer["claims"][1]["id"]]
    assert mixed[2] == (
        "**mixed**<br>option 1 fails on sm_120: confirmed<br>the GPU is not detected at all: contradicted"
    )
    assert partial[2] == f"confirmed ({PARTIAL})"
    assert partial[4].endswith(f"<br>context, not judged: measured: {CONTEXT_TEXT}")
    assert claims["driver-565"][2] != "**contradicted**"  # it is the mixed one now
    assert [r[2] for r in _table_rows(md, "claim")].count("**contradicted**") == 1  # bold as before
    assert report.claims_markdown(newer) in md

    cells = {r[0].strip("`"): r for r in _table_rows(md, "cell")}
    incomplete = next(c["id"] for c in newer["cells"] if c["verdict"] == "incomplete")
    assert (
        cells[incomplete][3]
        == "pass<br>not observed: GPU part: not run (no GPU: nvidia-smi not found, no /dev/nvidia\\* device nodes)"
    )
    assert cells[incomplete][4] == "incomplete"  # not bold: nothing unexpected happened
    assert "**9 cells: 3 as expected, 3 unexpected, 2 not testable here, 1 incomplete (target sm_120)**" in md


def test_html_renders_parts_partials_context_and_unobserved(sample: dict[str, Any]) -> None:
    newer = _newer(sample)
    page = report.render_html(newer, None)
    assert (
        '<td class="v mixed">mixed<div class="part">option 1 fails on sm_120: confirmed</div>'
        '<div class="part">the GPU is not detected at all: contradicted</div></td>'
    ) in page
    assert f'<td class="v ok">confirmed<span class="partial"> ({PARTIAL})</span></td>' in page
    assert f"<div>context, not judged: measured: {CONTEXT_TEXT}</div>" in page
    assert (
        "<div>not observed: GPU part: not run (no GPU: nvidia-smi not found, no /dev/nvidia* device nodes)</div>"
        in page
    )


def test_old_results_render_as_before(sample: dict[str, Any]) -> None:
    """No key of issue #21: the claims, cells and headline read exactly as they did."""
    old = "9 cells: 4 as expected, 3 unexpected, 2 not testable here (target sm_120)"
    assert report.headline(sample) == old
    assert report.headline(dict(sample, totals={**sample["totals"], "incomplete": 0})) == old
    assert report.headline(dict(sample, totals=None)) == old  # counted from the cells
    md = report.render_markdown(sample)
    assert "context, not judged" not in md and "not observed" not in md
    assert [r[2] for r in _table_rows(md, "claim")] == [
        f"**{c['verdict']}**" if c["verdict"] == "contradicted" else c["verdict"] for c in sample["claims"]
    ]
    page = report.render_html(sample, None)
    assert 'class="part"' not in page
    assert report.headline(dict(sample, totals={**sample["totals"], "incomplete": 2})) == (
        "9 cells: 4 as expected, 3 unexpected, 2 not testable here, 2 incomplete (target sm_120)"
    )


def test_claim_parts_given_as_pairs() -> None:
    claim = {"verdict": "mixed", "parts": [["a", "confirmed"], ("b", "contradicted")], "partial": ""}
    assert report.claim_verdict(claim) == ("mixed", "", ["a: confirmed", "b: contradicted"])


# ---------------------------------------------------------------------------------------------- files


@needs_matplotlib
def test_write_report_html_png_json(sample: dict[str, Any], tmp_path: Path) -> None:
    sample["cells"][5]["evidence"].append('<script>alert("pwned")</script> & "quotes"')
    paths = report.write_report(sample, tmp_path / "reports")
    assert {k: p.name for k, p in paths.items()} == {
        "png": "matrix.png",
        "md": "matrix.md",
        "html": "matrix.html",
        "json": "matrix.json",
    }
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(p.name for p in paths.values())

    png = paths["png"].read_bytes()
    width, height = _png_size(png)
    assert 1000 <= width <= 2000 and 500 <= height <= 1500, (width, height)
    assert len(png) > 20_000

    page = paths["html"].read_text(encoding="utf-8")
    assert page.count('<tr id="cell-') == 9
    for cell in sample["cells"]:
        assert f'<tr id="cell-{cell["id"]}">' in page
    assert '<td class="v unexpected">unexpected-pass</td>' in page
    assert '<td class="v expected-fail">failed-as-expected</td>' in page
    assert '<td class="v none">not-testable</td>' in page
    import base64

    src = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(src) == png  # the page carries the PNG itself: one self-contained file
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    for remote in ('src="http', "src='http", 'href="http', "url(", "<link", "<script"):
        assert remote not in page  # nothing is fetched from anywhere

    assert json.loads(paths["json"].read_text()) == sample  # pretty, sorted, and the result itself
    assert paths["json"].read_text().startswith('{\n  "cells": [')
    assert "<script>" not in paths["md"].read_text()


# ---------------------------------------------------------------------------------------------- merge


def test_merge_two_one_cell_results_and_rejudge_claims() -> None:
    a, b = _load("cell-stable-cu128.json"), _load("cell-stable-cu130-cublas12.json")
    seen = []

    def judge(cells, probes):  # type: ignore[no-untyped-def]
        seen.append(sorted(cells))
        return [{"id": "claim-x", "verdict": "confirmed", "evidence": [], "bases": []}]

    merged = report.merge_results([a, b], sources=["a.json", "b.json"], judge=judge)
    assert [c["id"] for c in merged["cells"]] == ["stable-cu128", "stable-cu130-cublas12"]
    assert merged["totals"] == {"cells": 2, "as_expected": 2, "unexpected": 0, "not_testable": 0}
    assert merged["selectors"] == ["stable-cu128", "stable-cu130-cublas12"]
    assert merged["generated_at"] == b["generated_at"]
    assert merged["seconds"]["total"] == pytest.approx(a["seconds"]["total"] + b["seconds"]["total"])
    assert seen == [["stable-cu128", "stable-cu130-cublas12"]]  # judged once, on the union
    assert merged["claims"] == [{"id": "claim-x", "verdict": "confirmed", "evidence": [], "bases": []}]
    assert [m["source"] for m in merged["merged_from"]] == ["a.json", "b.json"]
    assert report.merge_results([a, b])["claims"] == []  # no verdict stage, no claims: never picked from an input


def test_merge_keeps_the_later_run_of_a_cell_whatever_the_input_order(sample: dict[str, Any]) -> None:
    rerun = _load("cell-stable-cu130.json")
    for inputs in ([sample, rerun], [rerun, sample]):
        merged = report.merge_results(inputs, order=[c["id"] for c in sample["cells"]])
        ids = [c["id"] for c in merged["cells"]]
        assert ids == [c["id"] for c in sample["cells"]]
        later = max((sample, rerun), key=lambda r: r["generated_at"])
        assert merged["cells"][ids.index("stable-cu130")] == next(
            c for c in later["cells"] if c["id"] == "stable-cu130"
        )


def _split(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A full result as CI's fan-out would give it: one result per cell, and one holding the GPU probes."""
    parts = [dict(result, cells=[c], probes=[], claims=[], selectors=[c["id"]]) for c in result["cells"]]
    return parts + [dict(result, cells=[], probes=result.get("probes") or [], claims=[], selectors=[])]


def test_merging_per_cell_results_in_any_order_gives_the_full_runs_verdicts() -> None:
    """The published report split into per-cell results, merged in several orders: every order re-judges to the
    same claims as the full run (and as the report itself)."""
    full = report.load_result(ROOT / "reports" / "matrix.json")
    order, judge = report.matrix_judge(ROOT)
    expected = judge({c["id"]: c for c in full["cells"]}, full.get("probes") or [])
    assert expected == full["claims"]
    parts = _split(full)
    orders = [
        parts,
        parts[::-1],
        random.Random(7).sample(parts, len(parts)),
        random.Random(11).sample(parts, len(parts)),
    ]
    merged = [report.merge_results(o, order=order, judge=judge) for o in orders]
    for m in merged:
        assert m["claims"] == expected
        assert [c["id"] for c in m["cells"]] == [c["id"] for c in full["cells"]]
    assert len({json.dumps({k: v for k, v in m.items() if k != "merged_from"}, sort_keys=True) for m in merged}) == 1


def test_merge_orders_by_matrix_and_refuses_mixed_targets() -> None:
    a, b = _load("cell-stable-cu128.json"), _load("cell-stable-cu130-cublas12.json")
    merged = report.merge_results([b, a], order=["stable-cu128", "stable-cu130-cublas12"])
    assert [c["id"] for c in merged["cells"]] == ["stable-cu128", "stable-cu130-cublas12"]
    b["target_sm"] = 90
    with pytest.raises(ReportError, match="different target"):
        report.merge_results([a, b])


@needs_matplotlib
def test_cli_merges_a_folder_of_ci_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    for i, name in enumerate(["cell-stable-cu128.json", "cell-stable-cu130-cublas12.json"]):
        (results / f"job-{i}").mkdir(parents=True)  # one folder per downloaded CI artifact
        shutil.copy(DATA / name, results / f"job-{i}" / name)
    (results / "job-0" / "timings.json").write_text('{"not": "a result"}')
    out = tmp_path / "reports"
    assert _cli(monkeypatch, "--merge", str(results), "--out", str(out)) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout.startswith("2 cells: 2 as expected, 0 unexpected, 0 not testable here (target sm_120)")
    assert "skipping" in stderr and "timings.json" in stderr
    merged = json.loads((out / "matrix.json").read_text())
    assert [c["id"] for c in merged["cells"]] == ["stable-cu128", "stable-cu130-cublas12"]
    assert sorted(p.name for p in out.iterdir()) == ["matrix.html", "matrix.json", "matrix.md", "matrix.png"]

    # re-render the merged result elsewhere: the same JSON comes back
    again = tmp_path / "again"
    assert _cli(monkeypatch, str(out / "matrix.json"), "--out", str(again)) == 0
    assert (again / "matrix.json").read_bytes() == (out / "matrix.json").read_bytes()


def test_cli_errors_are_one_line_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _cli(monkeypatch, str(bad), "--out", str(tmp_path / "r")) == ReportError.exit_code
    assert "is not JSON" in capsys.readouterr().err
    assert _cli(monkeypatch, "--out", str(tmp_path / "r")) == ReportError.exit_code
    assert _cli(monkeypatch, "--merge", str(tmp_path / "missing"), "--out", str(tmp_path / "r")) != 0
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------- README


def test_update_readme_replaces_only_between_markers(sample: dict[str, Any], tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before = "# whisperx-matrix\n\nIntro | with a pipe.\n\n"
    after = "\n\n## Layout\n\nText after.\n"
    readme.write_text(before + f"{report.CLAIMS_START}\nold table\n{report.CLAIMS_END}" + after)
    assert report.update_readme(readme, sample) is True
    text = readme.read_text()
    assert text.startswith(before + report.CLAIMS_START) and text.endswith(report.CLAIMS_END + after)
    inner = text.split(report.CLAIMS_START)[1].split(report.CLAIMS_END)[0]
    assert "old table" not in inner and report.claims_markdown(sample) in inner
    assert "9 cells: 4 as expected" in inner
    assert report.update_readme(readme, sample) is False  # unchanged: no rewrite
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]

    readme.write_text("no markers here\n")
    with pytest.raises(ReportError, match="claims:start"):
        report.update_readme(readme, sample)
    assert readme.read_text() == "no markers here\n"


# ---------------------------------------------------------------------------------------------- atomicity


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@needs_matplotlib
def test_a_failure_while_drawing_the_png_leaves_the_old_report(
    sample: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "reports"
    report.write_report(sample, out)
    old = _snapshot(out)

    newer = copy.deepcopy(sample)
    newer["generated_at"] = "2026-11-26T09:00:00+0000"

    def boom(result: Any) -> bytes:
        raise RuntimeError("injected: the PNG step crashed")

    monkeypatch.setattr(report, "render_png", boom)
    with pytest.raises(RuntimeError, match="injected"):
        report.write_report(newer, out)
    assert _snapshot(out) == old  # same four files, same bytes, no temp file


@needs_matplotlib
def test_a_failure_while_writing_the_png_leaves_the_old_report(
    sample: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "reports"
    report.write_report(sample, out)
    old = _snapshot(out)
    newer = copy.deepcopy(sample)
    newer["generated_at"] = "2026-11-26T09:00:00+0000"
    real_fsync = os.fsync
    calls = []

    def fsync_failing_on_the_png(fd: int) -> None:  # the first temp written is the PNG's
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(28, "No space left on device (injected)")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_on_the_png)
    with pytest.raises(OSError, match="injected"):
        report.write_report(newer, out)
    assert _snapshot(out) == old


@needs_matplotlib
def test_a_failure_between_renames_never_shows_a_new_json_with_old_files(
    sample: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "reports"
    report.write_report(sample, out)
    old = _snapshot(out)
    newer = copy.deepcopy(sample)
    newer["generated_at"] = "2026-11-26T09:00:00+0000"
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "matrix.html":
            raise OSError(5, "Input/output error (injected)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="injected"):
        report.write_report(newer, out)
    now = _snapshot(out)
    assert sorted(now) == sorted(old)  # nothing deleted, no temp file left
    assert now["matrix.json"] == old["matrix.json"] and now["matrix.html"] == old["matrix.html"]


# ---------------------------------------------------------------------------------------------- secrets

FAKE_TOKEN = "hf_FAKEfakeFAKEfake0123456789abcdefXYZ"


@needs_matplotlib
def test_a_token_in_the_environment_never_reaches_a_written_file(
    sample: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("CI_JOB_TOKEN", "ci-job-secret-42")
    cell = sample["cells"][0]
    cell["evidence"].append(f"huggingface-cli login --token {FAKE_TOKEN}")
    cell["checks"]["selftest"]["label"] = FAKE_TOKEN  # drawn into the PNG square (as text, redacted first)
    cell["checks"]["arch"]["detail"] = f"HF_TOKEN={FAKE_TOKEN} ci-job-secret-42"
    sample["claims"][0]["evidence"] += f"\nread with {FAKE_TOKEN}"
    sample["machine"]["description"] += f" {FAKE_TOKEN}"

    out = tmp_path / "reports"
    paths = report.write_report(sample, out)
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{report.CLAIMS_START}\n{report.CLAIMS_END}\n")
    report.update_readme(readme, sample)
    for path in [*paths.values(), readme]:
        data = path.read_bytes()
        assert FAKE_TOKEN.encode() not in data, path.name
        assert b"ci-job-secret-42" not in data, path.name
    assert "--token ***" in paths["json"].read_text()
    assert "read with \\*\\*\\*" in readme.read_text()  # Markdown-escaped: GitHub shows ***


# ---------------------------------------------------------------------------------------------- terminal escapes


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("\x1b[1mWeights only load failed\x1b[0m.", "Weights only load failed."),
        ("\x1b[38;5;196mred\x1b[m \x1b[2K\x1b[1;31;40mbold\x1b[0m", "red bold"),
        ("see \x1b]8;;https://pytorch.org\x1b\\the docs\x1b]8;;\x1b\\ here", "see the docs here"),
        ("\x1b]0;window title\x07kept", "kept"),
        ("charset \x1b(Bswitch, keypad \x1b=mode", "charset switch, keypad mode"),
        ("a\r\nb\rc\x00d\x08e\x7ff\x9b1mg\x1b", "a\nbcdefg"),
        ("tabs\tand\nnewlines stay; ünïcödé — ✓ too", "tabs\tand\nnewlines stay; ünïcödé — ✓ too"),
    ],
)
def test_plain_strips_escapes_and_control_characters(text: str, plain: str) -> None:
    assert report.plain(text) == plain


def test_redacted_makes_every_string_plain_keys_too() -> None:
    assert report.redacted({"k\x1b[1m": ["\x1b[0mv", {"x": "\x1b[31my\x1b[0m"}], "n": 1}) == {
        "k": ["v", {"x": "y"}],
        "n": 1,
    }


@needs_matplotlib
def test_no_escape_code_reaches_any_file(sample: dict[str, Any], tmp_path: Path) -> None:
    """torch's UnpicklingError carries ESC[1m ... ESC[0m: none of it reaches matrix.md, .html or .json (nor the
    README's claims block), and the words stay."""
    sample["claims"][0]["evidence"] = [
        {"basis": "measured", "text": "\x1b[1mWeights only load failed\x1b[0m", "cell": "stable-cu126"}
    ]
    newer = _newer(sample)
    paths = report.write_report(newer, tmp_path / "reports")
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{report.CLAIMS_START}\n{report.CLAIMS_END}\n")
    report.update_readme(readme, newer)
    for path in [paths["md"], paths["html"], paths["json"], readme]:
        data = path.read_bytes()
        assert b"\x1b" not in data and b"\\u001b" not in data and b"\x07" not in data, path.name
        assert b"\\u0007" not in data and b"\\u0000" not in data, path.name
        assert b"Weights only load failed" in data, path.name
    assert b"Weights only load failed. Re-running torch.load done" in paths["json"].read_bytes()


@needs_matplotlib
def test_the_same_result_renders_byte_identically(sample: dict[str, Any], tmp_path: Path) -> None:
    newer = _newer(sample)
    first = report.write_report(newer, tmp_path / "a")
    again = report.write_report(copy.deepcopy(newer), tmp_path / "b")
    for kind in report.FILES:
        assert first[kind].read_bytes() == again[kind].read_bytes(), kind


# ---------------------------------------------------------------------------------------------- a real browser


class _CellsTable(HTMLParser):
    """Counts the rows of <table id="cells"> and the images with a data: URI."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.rows = 0
        self.body_rows = 0
        self.in_body = False
        self.data_images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.data_images += 1
        if tag == "table" and (a.get("id") == "cells" or self.depth):
            self.depth += 1
        elif self.depth == 1 and tag == "tbody":
            self.in_body = True
        elif self.depth == 1 and tag == "tr":
            self.rows += 1
            self.body_rows += self.in_body

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif tag == "tbody" and self.depth == 1:
            self.in_body = False


def _chromium(*args: str, profile: Path, size: str = "1400,2000") -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={size}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@needs_matplotlib
@pytest.mark.skipif(
    shutil.which("chromium") is None, reason=f"chromium is not installed: apt-get install -y {CHROMIUM_APT} (Debian)"
)
def test_the_html_renders_in_headless_chromium(sample: dict[str, Any], tmp_path: Path) -> None:
    sample["cells"][0]["evidence"].append("<script>document.title='pwned'</script>")
    page = report.write_report(sample, tmp_path / "reports")["html"]
    url = page.resolve().as_uri()

    dom = _chromium("--dump-dom", url, profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    table = _CellsTable()
    table.feed(dom.stdout)
    assert table.body_rows == len(sample["cells"]) == 9 and table.rows == 10  # + the header row
    assert table.data_images == 1
    assert "pwned</title>" not in dom.stdout and "&lt;script&gt;" in dom.stdout  # the script stayed text

    shot = tmp_path / "shot.png"
    run = _chromium(f"--screenshot={shot}", url, profile=tmp_path / "profile-shot")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (1400, 2000)
    assert len(data) > 50_000, "the screenshot is nearly empty"
    from PIL import Image  # matplotlib's own dependency

    with Image.open(shot) as img:
        colours = img.convert("RGB").resize((140, 200)).getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) one colour"
    rgb = {c for _, c in colours}
    # the verdict colours of the tables made it to the screen (resizing blends edges: look for near matches)
    for hex_colour in (report.COLOURS["ok"], report.COLOURS["unexpected"], report.COLOURS["expected-fail"]):
        target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert any(sum(abs(a - b) for a, b in zip(c, target, strict=True)) < 24 for c in rgb), hex_colour


# Written into a copy of the page: what the browser laid out, as JSON in <pre id="probe">.
_PROBE = """<script>
(() => {
  const d = document.documentElement, top = id => document.getElementById(id).getBoundingClientRect().top;
  const wide = [...document.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > d.clientWidth + 0.5)
    .slice(0, 8).map(e => e.tagName + "#" + e.id + "." + e.className + " " + (e.textContent || "").slice(0, 60));
  const facts = {scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, innerWidth: window.innerWidth,
    claims: top("claims"), cells: top("cells"), grid: top("grid"), checks: top("checks"), wide: wide};
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(facts);
  document.body.appendChild(pre);
})();
</script>"""


def _richest_result() -> dict[str, Any]:
    """The committed report's result (the richest real one), else the sample; with every field of issue #21."""
    try:
        result = report.load_result(ROOT / "reports" / "matrix.json")
    except ReportError:  # being regenerated: the sample has every verdict too
        result = _load("sample-result.json")
    return _newer(result)


@needs_matplotlib
@pytest.mark.skipif(
    shutil.which("chromium") is None, reason=f"chromium is not installed: apt-get install -y {CHROMIUM_APT} (Debian)"
)
def test_the_html_fits_1280_px_and_leads_with_the_claims(tmp_path: Path) -> None:
    """Headless chromium at 1280 px: no horizontal scroll (long sonames and paths wrap, the checks table's
    columns fit), the claims above the cells, the grid below both; and a screenshot 1280 px wide."""
    page = report.write_report(_richest_result(), tmp_path / "reports")["html"]
    text = page.read_text(encoding="utf-8")
    assert LONG_TOKEN in text and "\x1b" not in text
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")

    dom = _chromium("--dump-dom", probed.resolve().as_uri(), profile=tmp_path / "profile-dom", size="1280,1000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the probe did not run: " + dom.stdout[-500:]
    facts = json.loads(html.unescape(found.group(1)))
    assert facts["innerWidth"] == 1280, facts
    assert facts["scrollWidth"] <= facts["clientWidth"] <= facts["innerWidth"], facts  # no horizontal scroll
    assert facts["wide"] == [], facts  # no element sticks out past the right edge
    assert facts["claims"] < facts["cells"] < facts["grid"] < facts["checks"], facts

    shot = tmp_path / "matrix.png"
    run = _chromium(
        f"--screenshot={shot}", page.resolve().as_uri(), profile=tmp_path / "profile-shot", size="1280,1000"
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    assert _png_size(shot.read_bytes()) == (1280, 1000)
    from PIL import Image  # matplotlib's own dependency

    with Image.open(shot) as img:  # the claims lead: a claim verdict's colour is on the first screen
        rgb = {c for _, c in img.convert("RGB").resize((128, 100)).getcolors(maxcolors=1_000_000) or []}

    def shown(kind: str) -> bool:
        target = tuple(int(report.COLOURS[kind][i : i + 2], 16) for i in (1, 3, 5))
        return any(sum(abs(a - b) for a, b in zip(c, target, strict=True)) < 24 for c in rgb)

    # Which verdicts fit on the first screen depends on the evidence's length; that some claim verdict does not.
    assert any(shown(kind) for kind in set(report.CLAIM_KIND.values()) - {"none"}), sorted(rgb)[:20]


def test_a_floating_cell_says_what_it_floated_to() -> None:
    """A latest or nightly cell's row names the versions it resolved to at run time and its lock's digest."""
    cell = {
        "id": "fresh-install",
        "expected": {"status": "pass"},
        "observed": {"status": "pass", "reasons": []},
        "verdict": "as-expected",
        "versions": {"whisperx": "3.8.6", "torch": "2.8.0", "pyannote-audio": "4.0.7"},
        "lock": {"floating": True, "index_note": "the default package index", "sha256": "sha256:" + "ab" * 32},
    }
    result = {"schema": 1, "target_sm": 120, "cells": [cell], "claims": []}
    line = "floated to: whisperx 3.8.6, torch 2.8.0, pyannote-audio 4.0.7 (resolved at run time from the default package index; lock sha256 sha256:abababababab)"
    assert line in report.render_markdown(result)
    assert line in report.render_html(result, None)
    stable = dict(cell, lock={"file": "constraints/stable-cu128.txt", "sha256": "sha256:00"})
    assert "floated to" not in report.render_markdown(dict(result, cells=[stable]))

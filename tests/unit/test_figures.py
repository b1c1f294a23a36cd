"""whisperx_matrix.figures: the READMEs' measured numbers are rendered from the results files.

The drift test fails when README.md or benchmarks/results/README.md differ from what the committed results render
(fix: `nox -s figures -- --update`). The other tests run the renderer on small hand-made JSON.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from whisperx_matrix import cli, figures
from whisperx_matrix.errors import FiguresError
from whisperx_matrix.figures import fmt

ROOT = Path(__file__).resolve().parents[2]
BUILD = "benchmarks/results/build-2026-01-02.json"


def _build() -> dict:
    return {
        "cell": "stable-cu128",
        "lock": "stable-cu128.txt",
        "steps": {
            "ours_cold_s": 40.5,
            "ours_warm_s": 1.5,
            "ours_noop_s": 0.25,
            "selftest_s": 30.0,
            "selftest_passed": True,
            "raw_uv_cold_s": 45.0,
            "raw_uv_warm_s": 3.0,
            "pip_cold_s": 200.0,
        },
        "env_disk_bytes": 7_000_000_000,
        "pip_env_disk_bytes": 8_000_000_000,
        "ratios": {
            "ours_warm_vs_raw_uv_warm": 0.5,
            "ours_cold_vs_raw_uv_cold": 0.9,
            "pip_cold_over_ours_warm": 133.3,
            "pip_cold_over_ours_cold": 4.9,
        },
        "targets": {"no-op under 1 s": True, "cold at least 5x faster than pip cold": False},
        "machine": {"cores": 4, "memory_gib": 16},
    }


def _results(**docs: tuple[str, dict]) -> figures.Results:
    return figures.Results({kind: figures.Doc(path, data) for kind, (path, data) in docs.items()})


# ---------------------------------------------------------------------------------------- the committed READMEs


def test_readmes_match_what_the_committed_results_render() -> None:
    stale = figures.drift(ROOT)
    assert not stale, (
        f"blocks out of date with benchmarks/results/: {stale}; "
        "run: python -m whisperx_matrix figures --update (nox -s figures -- --update)"
    )


def test_every_block_of_every_document_has_its_markers() -> None:
    for doc, blocks in figures.DOCUMENTS.items():
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert set(figures.blocks_in(text, blocks, where=doc)) == set(blocks)


def test_a_field_missing_from_a_committed_file_is_named_not_blanked(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    path = next((tmp_path / "benchmarks" / "results").glob("build-*.json"))
    data = json.loads(path.read_text())
    del data["steps"]["ours_noop_s"]
    path.write_text(json.dumps(data))
    with pytest.raises(FiguresError) as err:
        figures.render(figures.Results.load(tmp_path))
    assert str(err.value) == f"benchmarks/results/{path.name}: no field steps.ours_noop_s"


# ---------------------------------------------------------------------------------------- reading fields


def test_doc_names_the_file_and_the_field_of_every_bad_value() -> None:
    doc = figures.Doc("benchmarks/results/x-2026-01-01.json", {"a": {"b": None, "c": "fast", "d": [1, 2]}})
    for keys, why in ((("a", "z"), "no field a.z"), (("a", "b"), "null field a.b"), (("a", "d", 5), "no field a.d.5")):
        with pytest.raises(FiguresError, match=rf"^benchmarks/results/x-2026-01-01\.json: {why}$"):
            doc.get(*keys)
    with pytest.raises(FiguresError, match=r"x-2026-01-01\.json: not a number \('fast'\) in field a\.c$"):
        doc.num("a", "c")
    assert doc.num("a", "d", 1) == 2
    sub = doc.sub("a")
    with pytest.raises(FiguresError, match=r": no field a\.q$"):  # a part of a file still names the whole path
        sub.get("q")


def test_stage_lookup_names_what_it_looked_for() -> None:
    run = figures.Doc(
        "benchmarks/results/t.json",
        {
            "stages": [
                {"stage": "align", "status": "ok", "file": "a.wav", "wall_s": 1.0},
                {"stage": "align", "status": "error", "file": "b.wav"},
            ]
        },
        ("tiny_en",),
    )
    assert run.stage(stage="align").num("wall_s") == 1.0
    with pytest.raises(
        FiguresError,
        match=r"^benchmarks/results/t\.json: no stage with status=ok, stage=align, "
        r"file=b\.wav in tiny_en\.stages$",
    ):
        run.stage(stage="align", file="b.wav")


def test_results_use_the_newest_file_of_each_kind_and_name_a_missing_kind(tmp_path: Path) -> None:
    folder = tmp_path / "benchmarks" / "results"
    folder.mkdir(parents=True)
    (folder / "build-2026-01-01.json").write_text(json.dumps({"date": "old"}))
    (folder / "build-2026-02-01.json").write_text(json.dumps({"date": "new"}))
    (folder / "build-2026-02-01.png").write_bytes(b"")
    r = figures.Results.load(tmp_path)
    assert r["build"].path == "benchmarks/results/build-2026-02-01.json" and r["build"].get("date") == "new"
    assert "build-2026-02-01.png" in r.files
    with pytest.raises(FiguresError, match=r"no results file benchmarks/results/audit-\*\.json"):
        r["audit"]
    (folder / "audit-2026-01-01.json").write_text("{not json")
    with pytest.raises(FiguresError, match=r"benchmarks/results/audit-2026-01-01\.json: cannot read it as JSON"):
        figures.Results.load(tmp_path)


# ---------------------------------------------------------------------------------------- renderers on hand-made JSON


def test_build_blocks_render_every_number_from_the_file() -> None:
    r = _results(build=(BUILD, _build()))
    noop = " ".join(figures.build_noop(r).split())
    assert f"(0.25 s in [`{BUILD}`]({BUILD}))" in noop
    table = figures.build_block(r)
    for row in (
        "| ours, no-op re-run | 0.25 |",
        "| ours, cold (empty uv cache) | 40.5 |",
        "| plain pip into a fresh venv, no cache (the guide's way) | 200 |",
    ):
        assert row in table.splitlines()
    flat = " ".join(table.split())
    assert "The env takes 7.0 GB on disk (pip's: 8.0 GB)" in flat
    assert "4 cores; the self-test passed" in flat
    assert "no-op under 1 s: met; cold at least 5x faster than pip cold: **missed**." in flat


def test_a_missing_field_in_hand_made_json_is_an_error_naming_file_and_field() -> None:
    data = _build()
    del data["ratios"]["pip_cold_over_ours_cold"]
    with pytest.raises(FiguresError, match=rf"^{BUILD}: no field ratios\.pip_cold_over_ours_cold$"):
        figures.build_block(_results(build=(BUILD, data)))
    data = _build()
    data["steps"]["ours_noop_s"] = None
    with pytest.raises(FiguresError, match=rf"^{BUILD}: null field steps\.ours_noop_s$"):
        figures.build_noop(_results(build=(BUILD, data)))


def test_audit_block() -> None:
    audit = {
        "cell": "stable-cu128",
        "machine": {"cores": 2},
        "audit": {
            "repeat": 3,
            "site": {"elf_files": 500, "elf_bytes": 7_100_000_000, "audit_s": 1.2615},
            "library": {
                "path": "./x/torch/lib/libtorch_cuda.so",
                "bytes": 1_015_000_000,
                "audit_s": 0.0275,
                "cuobjdump_s": 4.9489,
                "speedup": 179.8,
            },
        },
    }
    text = " ".join(figures.audit_block(_results(audit=("benchmarks/results/audit-2026-01-01.json", audit))).split())
    assert "best of 3 runs" in text
    assert "the whole `stable-cu128` cell (500 ELF files, 7.1 GB) in 1.26 s" in text
    assert "`libtorch_cuda.so` (1.0 GB) in 0.0275 s, 179.8x faster than `cuobjdump` (4.95 s)" in text
    del audit["audit"]["library"]["speedup"]
    with pytest.raises(FiguresError, match=r"audit-2026-01-01\.json: no field audit\.library\.speedup$"):
        figures.audit_block(_results(audit=("benchmarks/results/audit-2026-01-01.json", audit)))


def test_ctranslate2_arch_comes_from_the_matrix_audit() -> None:
    report = {
        "cells": [
            {
                "id": "old",
                "versions": {"ctranslate2": "4.4.0"},
                "arch": {"packages": {"ctranslate2": {"sass": ["sm_70"], "ptx": ["compute_70 (PTX 7.0)"]}}},
            },
            {
                "id": "new",
                "versions": {"ctranslate2": "4.8.5"},
                "arch": {
                    "packages": {"ctranslate2": {"sass": ["sm_53", "sm_86", "sm_80"], "ptx": ["compute_86 (PTX 8.7)"]}}
                },
            },
        ]
    }
    r = _results(report=(figures.REPORT, report))
    assert fmt._ctranslate2_arch(r, "4.8.5") == ("sm_86", "compute_86", "new")
    with pytest.raises(FiguresError, match=r"reports/matrix\.json: no cell with versions\.ctranslate2 = 9\.9"):
        fmt._ctranslate2_arch(r, "9.9")


def test_suite_cell_counts_outcomes_and_names_failures() -> None:
    cell = figures.Doc(
        "s.json",
        {
            "cell": "stable-cu130",
            "tests": [
                {"test": "test_a", "outcome": "passed"},
                {"test": "test_b", "outcome": "failed", "error": "AssertionError: missing-soname:libx.so.1: libx <- y"},
                {"test": "test_c", "outcome": "failed", "error": "Failed: missing-soname:libx.so.1: not found"},
            ],
        },
    )
    assert figures._suite_cell(cell) == (
        "as `stable-cu130`, 1 passed and 2 failed (`test_b`, `test_c`: `missing-soname:libx.so.1`)"
    )


def test_wrap_never_breaks_a_code_span() -> None:
    text = "word " * 20 + "`uv pip install -r constraints/stable-cu128.txt` " + "word " * 20
    lines = figures.wrap(text.strip()).splitlines()
    assert all(len(ln) <= 115 for ln in lines)
    assert any("`uv pip install -r constraints/stable-cu128.txt`" in ln for ln in lines)


# ---------------------------------------------------------------------------------------- markers, --update, --check


def test_replace_blocks_touches_only_the_text_between_markers() -> None:
    text = "head 1.0 s\n<!-- a:start -->\nold 0.2 s\n<!-- a:end -->\ntail 9 GB\n"
    assert (
        figures.replace_blocks(text, {"a": "new 0.31 s"}, where="R.md")
        == "head 1.0 s\n<!-- a:start -->\nnew 0.31 s\n<!-- a:end -->\ntail 9 GB\n"
    )
    for bad in ("no markers", "<!-- a:end -->\n<!-- a:start -->", "<!-- a:start -->\n<!-- a:start -->\n<!-- a:end -->"):
        with pytest.raises(FiguresError, match=r"^R\.md: block a needs exactly one"):
            figures.replace_blocks(bad, {"a": "x"}, where="R.md")


def test_cli_check_names_each_drifted_block_and_update_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / BUILD).write_text(json.dumps(_build()))
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n<!-- figures:build-noop:start -->\nno-op (0.2 s)\n<!-- figures:build-noop:end -->\n\n"
        "<!-- figures:build:start -->\n<!-- figures:build:end -->\nend\n"
    )
    monkeypatch.setattr(
        figures,
        "DOCUMENTS",
        {"README.md": {"figures:build-noop": figures.build_noop, "figures:build": figures.build_block}},
    )
    assert cli.main(["figures", "--check", "--root", str(tmp_path)]) == FiguresError.exit_code
    out, err = capsys.readouterr()
    assert "README.md: block figures:build-noop differs" in out and "README.md: block figures:build differs" in out
    assert "2 figure block(s) out of date: README.md#figures:build-noop, README.md#figures:build" in err
    assert cli.main(["figures", "--update", "--root", str(tmp_path)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n<!-- figures:build-noop:start -->\n") and text.endswith(
        "<!-- figures:build:end -->\nend\n"
    )
    assert "(0.25 s in" in text and "| ours, no-op re-run | 0.25 |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "benchmarks"]  # no temp file left behind
    assert cli.main(["figures", "--check", "--root", str(tmp_path)]) == 0
    assert cli.main(["figures", "--update", "--root", str(tmp_path)]) == 0
    assert "every block is up to date" in capsys.readouterr().out


def test_update_writes_nothing_when_a_block_cannot_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    data = _build()
    del data["steps"]["raw_uv_cold_s"]
    (tmp_path / BUILD).write_text(json.dumps(data))
    before = "<!-- figures:build-noop:start -->\nold\n<!-- figures:build-noop:end -->\n<!-- figures:build:start -->\n<!-- figures:build:end -->\n"
    (tmp_path / "README.md").write_text(before)
    monkeypatch.setattr(
        figures,
        "DOCUMENTS",
        {"README.md": {"figures:build-noop": figures.build_noop, "figures:build": figures.build_block}},
    )
    with pytest.raises(FiguresError, match=r"build-2026-01-02\.json: no field steps\.raw_uv_cold_s"):
        figures.update(tmp_path)
    assert (tmp_path / "README.md").read_text() == before


def test_align_and_diarize_sentence_compares_each_stage_alone_with_the_two_overlapped() -> None:
    """Hand-made sweep: the fastest equivalent single-stage lever per stage is picked (a faster one that changes the
    outputs is not, nor one recorded as not run), and the sentence says whether overlapping the two still saves
    time."""
    from whisperx_matrix.figures.pipeline import _align_diarize_text

    def sweep(overlapped: float) -> figures.Doc:
        return figures.Doc(
            "benchmarks/results/pipeline-gpu-x-2026-01-01.json",
            {
                "runs": {
                    "reference": {"stages_s": {"align": 12.0, "diarize": 24.0}},
                    "combined": {"stages_s": {"align+diarize (overlapped)": overlapped}},
                },
                "levers": {
                    "align_numpy_trellis": {"stages": ["align"], "lever_s": 5.5, "equivalent": True},
                    "embedding_fp16": {"stages": ["diarize"], "lever_s": 4.5, "equivalent": True},
                    "segmentation_step_0.2": {"stages": ["diarize"], "lever_s": 3.0, "equivalent": False},
                    "overlap_align_diarize": {"stages": ["align", "diarize"], "lever_s": 1.0, "equivalent": True},
                    "align_not_run": {"stages": ["align"], "lever_s": None, "equivalent": False},
                },
            },
        )

    slow = " ".join(_align_diarize_text(sweep(10.5)).split())
    assert "alignment 5.50 s (alignment's trellis in numpy (opt-in patch 0002))" in slow
    assert "diarization 4.50 s (fp16 autocast inside the embedding model); alignment is the longer" in slow
    assert "take 10.5 s, no less than the two one after the other (10.0 s): overlapping saves no time now." in slow
    fast = " ".join(_align_diarize_text(sweep(7.0)).split())
    assert "take 7.00 s, 3.00 s less than the two one after the other (10.0 s)." in fast


def test_older_transcribe_figures_point_to_the_whole_pipeline_measured_since() -> None:
    """The committed results: both READMEs say the later figure, a link from the top level and the bare name
    beside the results. Expected text written out, read from the file with plain json, not the renderer's own
    formatter: the pipeline file's tiny.en whole pipeline and its target, and the large-v3-shaped figure."""
    from whisperx_matrix.figures.pipeline import pipeline_since

    r = figures.Results.load(ROOT)
    path = r["pipeline"].path
    targets = json.loads((ROOT / path).read_text(encoding="utf-8"))["targets"]
    tiny, large = targets["whole_pipeline_tiny_en"], targets["whole_pipeline_large_v3"]
    # re-judged by #22's bar: tiny.en's 86.1x short of 100x; the large-v3-shaped run decoded a near-empty transcript
    assert (tiny["rtf"], tiny["met"], tiny["min_rtf"], large["rtf"]) == (86.12, False, 100, None)
    top = " ".join(pipeline_since(r).split())
    assert top.endswith(
        f"[`{path}`]({path})): the whole pipeline with tiny.en at 86.1x, short of the 100x target; "
        "large-v3-shaped not measured."
    ), top
    beside = " ".join(pipeline_since(r, beside_results=True).split())
    assert beside.endswith(
        f"`{r['pipeline'].name}`): the whole pipeline with tiny.en at 86.1x, short of the 100x target; "
        "large-v3-shaped not measured."
    ), beside
    without = figures.Results({k: v for k, v in r.docs.items() if k != "pipeline"})
    assert pipeline_since(without) == ""

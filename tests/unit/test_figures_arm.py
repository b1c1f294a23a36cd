"""README's ARM section is rendered from the report's aarch64 cells (#25): each sentence reads its fact, so a fact
flipped in a copy of a cell record changes the sentence."""

from __future__ import annotations

import copy
from typing import Any

from whisperx_matrix.figures.readme import arm_block
from whisperx_matrix.figures.results import REPORT, Doc, Results
from whisperx_matrix.report.data import platform_text

NOT_RUN = "not-run: platform aarch64 (this machine is x86_64): its 127 locked wheels fetched"


def _arm_cell(cid: str, python: str, *, cpu_only: list[str], sass: list[str]) -> dict[str, Any]:
    return {
        "id": cid,
        "python": python,
        "platform": "aarch64-manylinux_2_28",
        "verdict": "failed-as-expected",
        "versions": {"torch": "2.15.0", "ctranslate2": "4.8.5"},
        "lock": {"file": f"constraints/{cid}.txt"},
        "arch": {"packages": {"torch": {"sass": sass, "ptx": []}}, "cpu_only": cpu_only},
        "checks": {"build": {"status": "skip", "detail": NOT_RUN}, "closure": {"status": "pass"}},
    }


def _report(cells: list[dict[str, Any]]) -> Results:
    return Results({"report": Doc(REPORT, {"cells": cells})})


SASS = ["sm_80", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_110", "sm_120", "sm_121a"]
CELLS = [
    {
        "id": "stable-cu128-aarch64",
        "python": "3.11",
        "platform": "aarch64-manylinux_2_28",
        "verdict": "failed-as-expected",
        "lock": {"unresolvable": "Because torchcodec==0.7.0 has no wheels with a matching platform tag"},
        "checks": {},
    },
    _arm_cell("stable-cu132-aarch64", "3.11", cpu_only=["ctranslate2"], sass=SASS),
    _arm_cell("stable-cu132-py312-aarch64", "3.12", cpu_only=["ctranslate2"], sass=SASS),
]


def test_the_arm_section_names_each_cells_findings_and_the_nearest_install() -> None:
    text = " ".join(arm_block(_report(CELLS)).split())
    assert "3 linux-aarch64 cells" in text
    assert "`stable-cu128-aarch64` (Python 3.11): does not install: Because torchcodec==0.7.0" in text
    assert (
        "torch's kernels run on GH200 (sm_90), GB200 (sm_100), Jetson AGX Thor (sm_110), DGX Spark (GB10) (sm_121)"
        in text
    )
    assert "ctranslate2 4.8.5 is a CPU-only build" in text
    # a finding shared by several cells (a cell's Python variants) is one item naming them all
    assert "- `stable-cu132-aarch64`, `stable-cu132-py312-aarch64` (Python 3.11, 3.12; torch 2.15.0): torch's" in text
    assert "The nearest is `stable-cu132-py312-aarch64`" in text  # Python 3.12 first: what the ARM OSes ship


def test_flipped_facts_change_the_sentences() -> None:
    cells = copy.deepcopy(CELLS)
    cells[1]["arch"]["cpu_only"] = []  # a CTranslate2 with GPU code on aarch64
    cells[2]["arch"]["packages"]["torch"]["sass"] = ["sm_80", "sm_90"]
    text = " ".join(arm_block(_report(cells)).split())
    assert "Cells whose whole stack carries GPU code: `stable-cu132-aarch64`" in text
    assert "no aarch64 cell gives WhisperX GPU transcription" not in text
    assert "torch's kernels run on GH200 (sm_90), not on GB200 (sm_100), Jetson AGX Thor (sm_110)" in text
    assert "holds no linux-aarch64 cell" in arm_block(_report([]))


def test_the_platform_column_says_when_a_cell_was_judged_statically() -> None:
    assert platform_text({}) == "x86_64"  # results written before the axis: every lock was x86_64
    assert platform_text(CELLS[1]) == "aarch64 (static)"
    assert platform_text({"platform": "aarch64-manylinux_2_28", "checks": {"build": {"detail": "built"}}}) == "aarch64"

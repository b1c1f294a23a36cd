"""The watch's parts as truth tables: reading pip's answers, what counts as newer, the CUDA tag, the fragment's TOML,
and the predictions made from cell records (no index, no wheels: tests/unit/test_watch.py runs the whole)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from whisperx_matrix import releases as rel
from whisperx_matrix import tools, verdict
from whisperx_matrix.errors import NetworkError
from whisperx_matrix.tomlfile import tomllib
from whisperx_matrix.watch import candidates as cands
from whisperx_matrix.watch import predict as pr


def _pip(stdout: str = "", stderr: str = "", rc: int = 0):  # type: ignore[no-untyped-def]
    return lambda args: tools.Completed(tuple(args), rc, stdout, stderr)


def test_pip_index_versions_is_read_from_its_available_versions_line() -> None:
    out = "torch (2.15.0)\nAvailable versions: 2.15.0, 2.14.1, 2.13.0+cpu, 2.13.0\n  INSTALLED: 2.11.0\n"
    assert rel.pip_versions("torch", run=_pip(out)) == ["2.15.0", "2.14.1", "2.13.0+cpu", "2.13.0"]
    assert rel.parse_pip_versions("WARNING: nothing\n") is None


def test_no_such_project_is_a_note_and_a_dead_index_is_one_network_error() -> None:
    missing = "ERROR: No matching distribution found for nvidia-nope\n"
    assert rel.pip_versions("nvidia-nope", run=_pip(stderr=missing, rc=1)) is None
    dead = (
        "WARNING: Retrying (Retry(total=0, connect=None)) after connection broken by "
        "'NewConnectionError(\"Failed to establish a new connection: [Errno 111] Connection refused\")'\n" + missing
    )
    with pytest.raises(NetworkError, match=r"could not be reached \(pip index versions torch\)") as info:
        rel.pip_versions("torch", run=_pip(stderr=dead, rc=1))
    assert info.value.hint and "nothing was written" in info.value.hint


@pytest.mark.parametrize(
    ("locked", "versions", "pre", "newer", "ignored"),
    [
        ("2.11.0", ["2.15.0", "2.12.1", "2.11.0", "2.10.0"], False, ["2.12.1", "2.15.0"], []),
        ("2.11.0", ["2.13.0+cpu", "2.13.0"], False, ["2.13.0"], ["2.13.0+cpu: a local version, not an index release"]),
        ("2.11.0", ["2.12.0rc1", "2.12.0"], False, ["2.12.0"], []),
        ("2.11.0", ["2.12.0rc1"], True, ["2.12.0rc1"], []),
        ("0.8.0", ["0.8.1.post1", "0.8.1"], False, ["0.8.1", "0.8.1.post1"], []),
    ],
)
def test_newer_than_the_lock(locked: str, versions: list[str], pre: bool, newer: list[str], ignored: list[str]) -> None:
    assert rel.newer_than(locked, versions, pre=pre) == (newer, ignored)


def test_one_candidate_per_minor_line_and_the_cuda_tag_of_the_runtime() -> None:
    assert rel.newest_per_line(["2.14.0", "2.12.1", "2.12.0", "2.14.1", "2.15.0"]) == {
        "2.12": "2.12.1",
        "2.14": "2.14.1",
        "2.15": "2.15.0",
    }
    assert rel.cuda_tag({"torch": "2.15.0", "nvidia-cuda-runtime": "13.2.86"}) == "cu132"
    assert rel.cuda_tag({"nvidia-cuda-runtime-cu12": "12.8.90"}) == "cu128"
    assert rel.cuda_tag({"torch": "2.15.0+cpu"}) is None


def test_locked_versions_take_the_highest_pin_of_every_lock(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("torch==2.8.0 \\\n    --hash=sha256:aa\nnvidia-cublas==13.1.0.3\n")
    (tmp_path / "b.txt").write_text("# a comment\ntorch==2.11.0\nwhisperx==3.8.6\n")
    (tmp_path / "c.txt").write_text("torch==2.11.0\n")
    locked = rel.locked_versions(tmp_path)
    assert locked["torch"] == rel.Locked("torch", "2.11.0", ("b", "c"))
    assert rel.watched_names(locked) == ["torch", "whisperx", "nvidia-cublas"]
    assert rel.watched_names(locked, ["Torch"]) == ["torch"]


def test_a_fragment_is_toml_the_matrix_reads_back() -> None:
    raw = {
        "id": "stable-torch215-cu132",
        "summary": 'a "quoted" summary',
        "channel": "stable",
        "cuda": "cu132",
        "python": ["3.11", "3.12"],
        "pins": {"whisperx": "3.8.6", "pyannote-audio": "4.0.7"},
        "overrides": ["torch==2.15.0"],
        "patches": False,
    }
    cand = cands.Candidate("stable-torch215-cu132", "torch", "2.15.0", "2.11.0", "stable-cu130", {}, raw, ["why"])
    cand.expect = {"status": "fail", "reason": "missing-soname:libcublas.so.12"}
    cand.expect_sm = {90: {"status": "pass"}}
    table = tomllib.loads(cand.fragment())["cells"][0]
    assert table == raw | {"expect": cand.expect, "expect_sm": {"90": {"status": "pass"}}}
    assert cand.fragment().startswith("# why\n[[cells]]\nid = ")
    assert "# expect: predicted from the static audit; measure before committing" in cand.fragment()
    cand.predicted = False
    assert "# expect: NOT predicted, copied from stable-cu130" in cand.fragment()


def test_a_version_goes_where_the_cell_names_it() -> None:
    raw: dict[str, Any] = {"pins": {"whisperx": "3.8.6"}, "overrides": ["torch==2.11.0", "torchaudio==2.11.0"]}
    cands._set_version(raw, "torch", "2.15.0", prefer="overrides")
    cands._set_version(raw, "torchaudio", None, prefer="overrides")  # unknown: its line goes
    cands._set_version(raw, "torchvision", "0.29.2", prefer="overrides")
    cands._set_version(raw, "ctranslate2", "4.9.0", prefer="pins")
    cands._set_version(raw, "whisperx", "3.9.0", prefer="overrides")
    assert raw == {
        "pins": {"whisperx": "3.9.0", "ctranslate2": "4.9.0"},
        "overrides": ["torch==2.15.0", "torchvision==0.29.2"],
    }


# --- predictions from records ---------------------------------------------------------------------------


def _pred(**per_sm: list[str]) -> pr.Prediction:
    return pr.Prediction(per_sm={int(k[2:]): {"runnable": not v, "reasons": v, "torch": ""} for k, v in per_sm.items()})


def _rec(reasons: list[str], *, suite: bool = True, verdict_: str = "as-expected") -> dict[str, Any]:
    rec: dict[str, Any] = {"observed": {"reasons": reasons}, "verdict": verdict_}
    if suite:
        rec["suite"] = {"tests": [{"test": "t", "outcome": "failed" if reasons else "passed"}]}
    return rec


@pytest.mark.parametrize(
    ("now", "base", "kind", "says"),
    [
        (["missing-soname:libcublas.so.12"], _rec(["missing-soname:libcublas.so.12"]), "unchanged", "the same failure"),
        (["arch-unsupported:sm_120"], _rec([]), "changed", "b passes -> fail (arch-unsupported:sm_120)"),
        ([], _rec(["missing-soname:libcublas.so.12"]), "changed", "its static failure goes"),
        ([], _rec(["UnpicklingError:weights_only"]), "unknown", "the static audit cannot say"),
        ([], _rec([]), "unchanged", "no static failure either"),
        ([], None, "unknown", "no judged run of b"),
        ([], _rec([], verdict_="not-testable"), "unknown", "no judged run of b"),
    ],
)
def test_the_outcome_beside_the_base_cell(now: list[str], base: dict[str, Any] | None, kind: str, says: str) -> None:
    change = pr.outcome_change(_pred(sm120=now), base, "b", 120)
    assert change["kind"] == kind and says in change["text"]
    if not now:
        assert "build and suite" in change["predicted"]  # never called a pass


def test_expect_is_predicted_per_sm_or_copied_and_said_so() -> None:
    from whisperx_matrix.matrix import Expectation

    class Base:
        expect = Expectation("fail", "missing-soname:libcublas.so.12")
        expect_sm = {120: Expectation("fail", "arch-unsupported:sm_120")}

    pred = _pred(sm120=["arch-unsupported:sm_120"], sm90=[])
    assert pr.predicted_expectation(pred, [120, 90], fallback=Base()) == (  # type: ignore[arg-type]
        {"status": "fail", "reason": "arch-unsupported:sm_120"},
        {90: {"status": "pass"}},
    )
    assert pr.predicted_expectation(pr.Prediction(), [120], fallback=Base()) == (  # type: ignore[arg-type]
        {"status": "fail", "reason": "missing-soname:libcublas.so.12"},
        {120: {"status": "fail", "reason": "arch-unsupported:sm_120"}},
    )


def _cell(cid: str, torch: str, sass: list[str], *, missing: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "id": cid,
        "cuda": "cu130",
        "versions": {"torch": torch},
        "arch": {"packages": {"torch": {"sass": sass, "ptx": []}}},
        "closure": {"missing_sonames": list(missing), "loaded": {}},
        "observed": {"reasons": [f"missing-soname:{m}" for m in missing]},
        "suite": {"tests": [{"test": "t", "outcome": "passed"}]},
        "verdict": "as-expected",
    }


def test_claims_before_and_after_a_candidate() -> None:
    claims = [
        verdict.Claim("switch", "q", ("old",), "first-stable-with-arch", {"sm": 120, "torch": "2.12"}),
        verdict.Claim("soname", "q", ("base",), "missing-soname", {"soname": "libcublas.so.12", "cell": "base"}),
        verdict.Claim("works", "q", ("base",), "cell-passes", {"cell": "base"}),
        verdict.Claim("elsewhere", "q", ("old",), "max-arch", {"package": "torch", "max_sm": 90}),
    ]
    cells = {
        "old": _cell("old", "2.8.0", ["sm_90", "sm_120"]),
        "base": _cell("base", "2.11.0", ["sm_90", "sm_120"], missing=("libcublas.so.12",)),
    }
    record = _cell("cand", "2.12.1", ["sm_90", "sm_120"]) | {"static_only": True}
    got = {c["claim"]: c for c in pr.predict_claims(claims, cells, [], record, base_id="base", row=True)}
    assert set(got) == {"switch", "soname", "works"}  # a claim the candidate cannot touch is not judged again
    assert (got["switch"]["before"], got["switch"]["after"], got["switch"]["kind"]) == (
        "contradicted",
        "confirmed",
        "verdict-changes",
    )
    assert (got["soname"]["before"], got["soname"]["after"]) == ("confirmed", "contradicted")
    assert got["works"]["kind"] == "needs-suite" and got["works"]["after"] is None
    # A bump of another package is no new torch row.
    not_row = {c["claim"] for c in pr.predict_claims(claims, cells, [], record, base_id="base", row=False)}
    assert not_row == {"soname", "works"}


def test_the_sms_audited_are_the_target_then_the_gpus_the_runs_saw() -> None:
    probes = [{"gpu": {"present": True, "sm": 90}}, {"gpu": {"present": False, "sm": 80}}]
    assert pr.results_sms(120, probes, [{"gpu": {"present": True, "sm": 120}}]) == [120, 90]
    assert pr.results_sms(120, [], []) == [120]

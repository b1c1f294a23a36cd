"""Verdicts: reason tokens from real error lines, the cell truth table, claims loading and each check."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperx_matrix import matrix, verdict
from whisperx_matrix.errors import ConfigError
from whisperx_matrix.matrix import Expectation

ROOT = Path(__file__).resolve().parents[2]
MATRIX = matrix.load(ROOT / "matrix.toml")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # Lines as the self-test and the cell suite really report them (recorded from our cells).
        ("TypeError: Inference.__init__() got an unexpected keyword argument 'use_auth_token'", "TypeError:use_auth_token"),
        ("RuntimeError: Library libcublas.so.12 is not found or cannot be loaded", "missing-soname:libcublas.so.12"),
        ("OSError: libcudnn_ops_infer.so.8: cannot open shared object file: No such file or directory",
         "missing-soname:libcudnn_ops_infer.so.8"),
        ("AssertionError: missing-soname:libcublas.so.12: libcublas.so.12 <- ctranslate2", "missing-soname:libcublas.so.12"),
        ("Failed: arch-unsupported:sm_120: CUDA error: no kernel image", "arch-unsupported:sm_120"),
        ("AttributeError: module 'torchaudio' has no attribute 'AudioMetaData'", "AttributeError:torchaudio.AudioMetaData"),
        ("ModuleNotFoundError: No module named 'omegaconf'", "missing-module:omegaconf"),
        ("UnpicklingError: Weights only load failed. This file can still be loaded", "UnpicklingError:weights_only"),
        ("arch-unsupported:sm_120", "arch-unsupported:sm_120"),
        ("ValueError: something else entirely", "ValueError:something-else-entirely"),
    ],
)
def test_classify_truth_table(line: str, reason: str) -> None:
    assert verdict.classify(line) == reason


FAIL_CUBLAS = Expectation("fail", "missing-soname:libcublas.so.12")


@pytest.mark.parametrize(
    ("expected", "reasons", "testable", "result"),
    [
        (Expectation("pass"), [], True, "as-expected"),
        (Expectation("pass"), ["missing-soname:libcublas.so.12"], True, "unexpected-failure"),
        (FAIL_CUBLAS, ["missing-soname:libcublas.so.12"], True, "failed-as-expected"),
        (FAIL_CUBLAS, ["arch-unsupported:sm_120", "missing-soname:libcublas.so.12"], True, "failed-as-expected"),
        (FAIL_CUBLAS, ["missing-soname:libcupti.so.13"], True, "wrong-reason"),
        (FAIL_CUBLAS, [], True, "unexpected-pass"),
        (FAIL_CUBLAS, [], False, "not-testable"),
    ],
)
def test_cell_verdict_truth_table(expected: Expectation, reasons: list[str], testable: bool, result: str) -> None:
    assert verdict.judge_cell(expected, reasons, testable=testable) == result
    assert (result in verdict.UNEXPECTED) == (result in ("wrong-reason", "unexpected-pass", "unexpected-failure"))


def test_real_claims_load_and_cover_the_documents_statements() -> None:
    claims = verdict.load_claims(ROOT / "claims.toml", MATRIX)
    assert {c.id for c in claims} >= {
        "driver-565", "stable-251-sm90", "option1-not-detected", "option2-libcupti13", "option3-works",
        "pyannote4-torch210", "patch-use-auth-token", "ld-library-path", "switch-stable-26",
    }


def test_claim_naming_an_unknown_cell_is_rejected_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "claims.toml"
    bad.write_text('schema = 1\n[[claims]]\nid = "x"\nquote = "q"\ncells = ["stable-cu129"]\ncheck = "max-arch"\n')
    with pytest.raises(ConfigError, match="unknown cell 'stable-cu129' \\(did you mean stable-cu128"):
        verdict.load_claims(bad, MATRIX)


def test_claim_with_unknown_check_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "claims.toml"
    bad.write_text('schema = 1\n[[claims]]\nid = "x"\nquote = "q"\ncells = ["stable-cu128"]\ncheck = "max-archs"\n')
    with pytest.raises(ConfigError, match="unknown check 'max-archs'"):
        verdict.load_claims(bad, MATRIX)


def _cell(cid: str, cuda: str, torch: str, sass: list[str], *, status: str = "pass", reasons: list[str] | None = None,
          missing: list[str] | None = None, loaded: dict[str, str] | None = None, ld_dep: bool = False) -> dict:
    return {"id": cid, "cuda": cuda, "versions": {"torch": torch, "whisperx": "3.8.6", "pyannote-audio": "4.0.7"},
            "verdict": "as-expected" if status == "pass" else "failed-as-expected",
            "observed": {"status": status, "reasons": reasons or []}, "evidence": [],
            "arch": {"packages": {"torch": {"sass": sass, "ptx": [], "runnable": True}}},
            "closure": {"missing_sonames": missing or [], "loaded": loaded or {}, "ld_library_path_dependent": ld_dep}}


def _claim(cid: str) -> verdict.Claim:
    return next(c for c in verdict.load_claims(ROOT / "claims.toml", MATRIX) if c.id == cid)


SM120 = ["sm_70", "sm_80", "sm_90", "sm_100", "sm_120"]
UPTO90 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def test_driver_claim_is_contradicted_by_cuda_128_minimum() -> None:
    outcomes = {"stable-cu126": _cell("stable-cu126", "cu126", "2.7.1", UPTO90),
                "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120)}
    v, evidence = verdict.check_driver_minimum(_claim("driver-565"), outcomes)
    assert v == "contradicted" and ">= 570.26" in evidence and "stable-cu126 (cu126)" in evidence


def test_max_arch_claim_confirmed_when_sm90_is_the_top() -> None:
    outcomes = {"option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90)}
    assert verdict.check_max_arch(_claim("stable-251-sm90"), outcomes)[0] == "confirmed"
    outcomes["option1-stable-cu124"]["arch"]["packages"]["torch"]["sass"] = SM120
    assert verdict.check_max_arch(_claim("stable-251-sm90"), outcomes)[0] == "contradicted"


def test_libcupti_claim_contradicted_when_it_resolves_and_cublas12_is_missing() -> None:
    cu130 = _cell("stable-cu130", "cu130", "2.11.0", SM120, status="fail", reasons=["missing-soname:libcublas.so.12"],
                  missing=["libcublas.so.12"], loaded={"libcupti.so.13": "nvidia/cu13/lib/libcupti.so.13 (nvidia-cuda-cupti 13.0.85)"})
    outcomes = {"stable-cu130": cu130, "nightly-cu130": {"verdict": "not-testable", "observed": {"note": "index unreachable"}}}
    v, evidence = verdict.check_missing_soname(_claim("option2-libcupti13"), outcomes)
    assert v == "contradicted"
    assert "libcupti.so.13 resolved to nvidia/cu13/lib/libcupti.so.13" in evidence
    assert "what is really missing: libcublas.so.12" in evidence and "index unreachable" in evidence


def test_option3_not_testable_without_the_nightly_index_but_cites_the_stable_proxy() -> None:
    outcomes = {"nightly-cu128": {"verdict": "not-testable", "observed": {"note": "index unreachable"}},
                "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120)}
    v, evidence = verdict.check_cell_passes(_claim("option3-works"), outcomes)
    assert v == "not-testable" and "stable-cu128 (torch 2.8.0), passes" in evidence


def test_ld_library_path_claim() -> None:
    outcomes = {c: _cell(c, "cu128", "2.8.0", SM120) for c in ("stable-cu128", "doc-recipe-cu128", "stable-cu130-cublas12")}
    assert verdict.check_needs_ld_library_path(_claim("ld-library-path"), outcomes)[0] == "contradicted"
    outcomes["stable-cu128"]["closure"]["ld_library_path_dependent"] = True
    assert verdict.check_needs_ld_library_path(_claim("ld-library-path"), outcomes)[0] == "confirmed"


def test_patch_claim_needs_both_halves() -> None:
    patched = _cell("doc-recipe-cu128", "cu128", "2.8.0", SM120)
    unpatched = _cell("doc-recipe-cu128-unpatched", "cu128", "2.8.0", SM120, status="fail", reasons=["TypeError:use_auth_token"])
    outcomes = {"doc-recipe-cu128": patched, "doc-recipe-cu128-unpatched": unpatched,
                "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120)}
    assert verdict.check_patch_needed(_claim("patch-use-auth-token"), outcomes)[0] == "confirmed"
    unpatched["observed"]["reasons"] = ["missing-module:omegaconf"]
    assert verdict.check_patch_needed(_claim("patch-use-auth-token"), outcomes)[0] == "contradicted"


def test_stable_with_blackwell_claim_names_the_first_stable_release() -> None:
    outcomes = {"stable-cu126": _cell("stable-cu126", "cu126", "2.7.1", UPTO90),
                "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120)}
    v, evidence = verdict.check_first_stable_with_arch(_claim("switch-stable-26"), outcomes)
    assert v == "contradicted" and "torch 2.7.1 (cu126, from the default index): no sm_120" in evidence


def test_a_check_that_cannot_read_its_data_is_not_testable_not_a_crash() -> None:
    [result] = verdict.judge_claims([_claim("stable-251-sm90")], {"option1-stable-cu124": {"verdict": "as-expected"}})
    assert result["verdict"] == "not-testable" and "could not evaluate" in result["evidence"]

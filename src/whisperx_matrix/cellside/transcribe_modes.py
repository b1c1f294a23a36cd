"""The stages of the transcription benchmark, one function each: imported by bench_transcribe.py (which puts this
folder on sys.path and runs them in order); no other script uses them.

The stage timer (Bench) records each stage as one dict; the functions here take the run's state (Run) and add
their records to it: the cold load and first calls, per audio file the WhisperX batched run (with its VAD time),
the batch-size sweep, faster-whisper sequential, alignment and diarization, then the other compute types.

Standard library only at import time (torch, whisperx and jiwer are imported inside the functions, from the cell);
no import of whisperx_matrix.
"""

from __future__ import annotations

import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import (
    CountingGenerator,
    Sampler,
    cap_new_tokens,
    count_text_tokens,
    cuda_jit_cache_state,
    ensure_punkt,
    error_line,
    is_oom,
    rtf,
    say,
    synthetic_align_model,
    synthetic_diarization,
    write_json,
)
from textnorm import normalise as normalise_words


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
            self._gpu_fields(rec, engine, sampler)
        msg = f"  {rec['status']}"
        if rec["status"] == "ok":
            msg += f" {rec['wall_s']} s" + (f", {rec['rtf']}x real time" if rec.get("rtf") else "")
        else:
            msg += f": {rec.get('error')}"
        say(msg)
        if record:
            self.stages.append(rec)
        return rec, result

    @staticmethod
    def _gpu_fields(rec: dict[str, Any], engine: str, sampler: Sampler) -> None:
        """The stage's GPU peak: torch's allocator for torch stages, the sampled process memory otherwise."""
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


@dataclass
class Run:
    """What the stages share: the command line, the stage timer, the data being written and the loaded models."""

    args: Any
    bench: Bench
    data: dict[str, Any]
    model_path: str
    model_weights: str
    primary: str
    sizes: list[int]
    load_kw: dict[str, Any]
    model: Any = None
    counter: Any = None
    vad_calls: list[float] = field(default_factory=list)
    encode: Callable[[str], list[int]] | None = None
    tmp: Path | None = None
    align_model: Any = None
    diar_pipe: Any = None


def where(a: dict[str, Any]) -> tuple[str, float, Any]:
    """(file name, seconds, samples) of one decoded audio file."""
    return Path(a["path"]).name, a["seconds"], a["samples"]


def wer(reference: str, texts: Any) -> float:
    import jiwer

    return round(jiwer.wer(normalise_words(reference), normalise_words(" ".join(texts))), 4)


# ------------------------------------------------------------------------------------------ the stages


def load_asr(r: Run, compute_type: str) -> tuple[dict[str, Any], Any]:
    """whisperx.load_model of the run's model in ``compute_type``, measured as the stage ``load[<type>]``."""
    import whisperx

    return r.bench.measure(
        f"load[{compute_type}]",
        None,
        lambda: whisperx.load_model(r.model_path, compute_type=compute_type, **r.load_kw),
        engine="ctranslate2+torch",
        weights=r.model_weights,
    )


def cold_start(r: Run, first_audio: Any) -> bool:
    """Load, then the first transcription of 30 s (CT2's PTX JIT on a fresh H100, cuDNN/cuBLAS init), then a
    second one. False (the data says why) when the load or the first call failed: every later stage would too."""
    bench, args, primary = r.bench, r.args, r.primary
    rec, model = load_asr(r, primary)
    if rec["status"] != "ok":
        r.data["ok"] = False
        r.data["error"] = rec.get("error")
        r.data["stages"] = bench.stages
        return False
    if args.max_new_tokens:
        r.data["max_length"] = cap_new_tokens(model, args.max_new_tokens)
    first = first_audio[: 30 * 16000]
    bs0 = r.sizes[0]
    jit_cache = cuda_jit_cache_state() if args.device == "cuda" else None
    bench.measure(
        "cold_first_call",
        len(first) / 16000,
        lambda: model.transcribe(first, batch_size=bs0, language="en"),
        engine="ctranslate2",
        weights=r.model_weights,
        extra={
            "note": "first transcription after load: includes "
            "lazy init and, on GPUs without SASS in ctranslate2's wheel, the PTX JIT",
            "cuda_jit_cache": jit_cache,
        },
    )
    if bench.stages[-1]["status"] != "ok":  # e.g. libcublas.so.12 missing: every later stage would fail the same way
        r.data.update(ok=False, error=bench.stages[-1].get("error"), stages=bench.stages)
        return False
    bench.measure(
        "warm_second_call",
        len(first) / 16000,
        lambda: model.transcribe(first, batch_size=bs0, language="en"),
        engine="ctranslate2",
        weights=r.model_weights,
    )
    r.model = model
    r.vad_calls = timed_vad(model)
    r.counter = CountingGenerator(model.model.model)
    model.model.model = r.counter
    hf_tok = model.model.hf_tokenizer

    def encode(t: str) -> list[int]:
        return hf_tok.encode(t, add_special_tokens=False).ids

    r.encode = encode
    return True


def score(
    r: Run, rec: dict[str, Any], res: Any, counter: Any, a: dict[str, Any], vad_calls: list[float] | None
) -> None:
    """Tokens (decoded and re-tokenised), the VAD part of the wall time, and WER for real weights, into ``rec``."""
    assert r.encode is not None
    secs = a["seconds"]
    texts = [s["text"] for s in res["segments"]]
    rec["tokens"] = counter.tokens
    rec["windows"] = counter.windows
    rec["tokens_per_window"] = round(counter.tokens / max(1, counter.windows), 1)
    rec["text_tokens"] = count_text_tokens(r.encode, texts)
    if vad_calls:
        rec["vad_s"] = round(sum(vad_calls), 3)
        rec["asr_only_s"] = round(rec["wall_s"] - rec["vad_s"], 3)
        rec["asr_only_rtf"] = rtf(secs, rec["asr_only_s"])
    if r.model_weights == "real":
        rec["wer"] = wer(a["reference"], texts)


def batched(r: Run, a: dict[str, Any], bs: int, label: str) -> dict[str, Any]:
    """WhisperX's batched transcription of one file at batch size ``bs`` (the segments kept as ``_segments``)."""
    name, secs, samples = where(a)
    ct = r.primary
    r.vad_calls.clear()
    r.counter.reset()
    rec, res = r.bench.measure(
        f"{label}[{ct},bs{bs}]",
        secs,
        lambda: r.model.transcribe(samples, batch_size=bs, language="en"),
        engine="ctranslate2",
        weights=r.model_weights,
        extra={"compute_type": ct, "batch_size": bs, "file": name, "kind": label},
    )
    if rec["status"] == "ok":
        score(r, rec, res, r.counter, a, r.vad_calls)
        rec["_segments"] = res["segments"]
    return rec


def vad_stage(r: Run, a: dict[str, Any], main: dict[str, Any]) -> None:
    """The VAD time inside the main batched call, as a stage of its own."""
    name, secs, _ = where(a)
    r.bench.stages.append(
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


def sequential(r: Run, a: dict[str, Any]) -> None:
    """faster-whisper sequential (no VAD batching), beam 5, same model object; skipped for random weights."""
    name, secs, samples = where(a)
    args, primary = r.args, r.primary
    if r.model_weights == "synthetic":
        r.bench.stages.append(
            {
                "stage": f"faster_whisper_sequential[{primary}]",
                "file": name,
                "status": "skipped: sequential decoding of random weights is meaningless (temperature "
                "fallback retries)",
                "weights": "synthetic",
            }
        )
        return

    def seq() -> tuple[list[Any], Any]:
        segs, info = r.model.model.transcribe(
            samples,
            beam_size=5,
            language="en",
            vad_filter=False,
            condition_on_previous_text=False,
            **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}),
        )
        return list(segs), info

    rec, res = r.bench.measure(
        f"faster_whisper_sequential[{primary}]",
        secs,
        seq,
        engine="ctranslate2",
        weights=r.model_weights,
        extra={"compute_type": primary, "file": name, "kind": "sequential", "beam_size": 5},
    )
    if rec["status"] == "ok":
        segs = res[0]
        rec["tokens"] = sum(len(s.tokens) for s in segs)
        rec["token_count"] = "sequential_tokens"
        rec["wer"] = wer(a["reference"], (s.text for s in segs))


def align(r: Run, a: dict[str, Any], segments: Any) -> None:
    """Alignment with the synthetic wav2vec2 (loaded at the first file that gets here)."""
    import whisperx

    name, secs, samples = where(a)
    device = r.args.device
    if r.align_model is None:
        _, r.align_model = r.bench.measure(
            "load_align_model",
            None,
            lambda: synthetic_align_model(device),
            engine="torch",
            weights="synthetic",
            extra={"file": name},
        )
        assert r.tmp is not None
        r.data["punkt"] = ensure_punkt(r.tmp)
    if r.align_model:
        am, meta = r.align_model
        r.bench.measure(
            "align",
            secs,
            lambda: whisperx.align(segments, am, meta, samples, device),
            engine="torch",
            weights="synthetic",
            extra={"file": name, "model": "wav2vec2-base shape (95M), random init, 29-char vocab"},
        )


def diarize(r: Run, a: dict[str, Any]) -> None:
    """Diarization with the synthetic-embedding pipeline (loaded at the first file that gets here)."""
    import torch

    name, secs, samples = where(a)
    args = r.args
    cap = args.diarize_max_seconds
    if cap is not None and secs > cap:
        r.bench.stages.append(
            {
                "stage": "diarize",
                "file": name,
                "weights": "synthetic",
                "status": f"skipped: audio longer than --diarize-max-seconds {cap:g} (CPU time)",
            }
        )
        return
    if r.diar_pipe is None:
        _, r.diar_pipe = r.bench.measure(
            "load_diarization",
            None,
            lambda: synthetic_diarization(args.device, args.diarize_batch),
            engine="torch",
            weights="synthetic",
            extra={"file": name},
        )
    if r.diar_pipe is None:
        return
    wave = torch.from_numpy(samples[None, :])
    pipe = r.diar_pipe
    rec, out = r.bench.measure(
        "diarize",
        secs,
        lambda: pipe({"waveform": wave, "sample_rate": 16000}),
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


def one_file(r: Run, a: dict[str, Any], longest: bool) -> None:
    """Every per-file stage of one audio file; the batch-size sweep only on the longest. A checkpoint after it."""
    args, bench = r.args, r.bench
    name, secs, _ = where(a)
    say(f"=== {name}: {secs:.1f} s of audio ===")
    f: dict[str, Any] = {
        "file": name,
        "audio_s": round(secs, 2),
        "decode_s": a["decode_s"],
        "decode_rtf": rtf(secs, a["decode_s"]),
        "stages": [],
    }
    start = len(bench.stages)
    # Primary: WhisperX batched at the first batch size; VAD timed inside it and as its own stage.
    main = batched(r, a, r.sizes[0], "whisperx_batched")
    if main["status"] == "ok":
        vad_stage(r, a, main)
    segments = main.pop("_segments", None)
    if longest:
        for bs in r.sizes[1:]:
            batched(r, a, bs, "batch_sweep").pop("_segments", None)
    if not args.no_sequential:
        sequential(r, a)
    # Alignment (synthetic wav2vec2) and diarization (synthetic embedding).
    if segments and not args.no_align:
        align(r, a, segments)
    if not args.no_diarize:
        diarize(r, a)
    f["stages"] = [s.get("stage") for s in bench.stages[start:]]
    r.data["files"].append(f)
    if args.out:  # a checkpoint: a run killed by a timeout still leaves what it measured
        write_json(args.out, {**r.data, "stages": bench.stages, "partial": True})


def compute_type(r: Run, ct: str, a: dict[str, Any]) -> None:
    """Another compute type (a second model load), batched at the first batch size on one file."""
    import torch

    args, bench = r.args, r.bench
    name, secs, samples = where(a)
    bs0 = r.sizes[0]
    _, m2 = load_asr(r, ct)
    if m2 is None:
        return
    if args.max_new_tokens:
        cap_new_tokens(m2, args.max_new_tokens)
    counter2 = CountingGenerator(m2.model.model)
    m2.model.model = counter2
    bench.measure(
        f"warmup[{ct}]",
        30,
        lambda: m2.transcribe(samples[: 30 * 16000], batch_size=bs0, language="en"),
        engine="ctranslate2",
        weights=r.model_weights,
    )
    counter2.reset()
    rec, res = bench.measure(
        f"compute_type[{ct},bs{bs0}]",
        secs,
        lambda: m2.transcribe(samples, batch_size=bs0, language="en"),
        engine="ctranslate2",
        weights=r.model_weights,
        extra={"compute_type": ct, "batch_size": bs0, "file": name, "kind": "compute_type"},
    )
    if rec["status"] == "ok":
        score(r, rec, res, counter2, a, None)
    m2 = None  # drop the second model before the next compute type loads (not del: the lambdas above name it)
    if args.device == "cuda":
        torch.cuda.empty_cache()

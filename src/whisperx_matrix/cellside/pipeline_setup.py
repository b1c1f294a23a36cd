"""The whole-pipeline benchmark's parts: the levers and the reference settings, the stage timer, the diarization
pipeline with its embedding precisions, and forced decoding for a random-weight model.

Imported by bench_pipeline.py and pipeline_runner.py, in a cell's own python (standard library only at import
time; no import of whisperx_matrix).
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

import benchkit as bt  # noqa: E402

SCHEMA = 1
STAGES = ("vad+asr", "align", "diarize", "assign_speakers")

# Each lever: the stages it changes, its group (alternatives for one setting), what it is, and whether it needs a
# patch to WhisperX or pyannote (none does: every lever here is a constructor argument, a setting, or the model
# object we hand to pyannote).
LEVERS: dict[str, dict[str, Any]] = {
    "embedding_batch_64": {
        "stages": ["diarize"],
        "group": "embedding_batch",
        "what": "SpeakerDiarization(embedding_batch_size=64) (reference 32)",
    },
    "embedding_batch_128": {
        "stages": ["diarize"],
        "group": "embedding_batch",
        "what": "SpeakerDiarization(embedding_batch_size=128) (reference 32)",
    },
    "embedding_tf32": {
        "stages": ["diarize"],
        "group": "embedding_precision",
        "what": "the embedding ResNet runs with TF32 allowed (cuDNN and matmul) inside its forward; "
        "pyannote switches TF32 off at every call, so the model we hand it turns it on for "
        "itself; fbank stays float32",
    },
    "embedding_fp16": {
        "stages": ["diarize"],
        "group": "embedding_precision",
        "what": "the embedding ResNet runs under torch.autocast(float16) inside its forward; fbank "
        "and the returned embeddings stay float32",
    },
    "segmentation_batch_128": {
        "stages": ["diarize"],
        "group": "segmentation_batch",
        "what": "SpeakerDiarization(segmentation_batch_size=128) (reference 32)",
    },
    "segmentation_step_0.2": {
        "stages": ["diarize"],
        "group": "segmentation_step",
        "what": "SpeakerDiarization(segmentation_step=0.2): a 2 s step for the 10 s window "
        "(reference 0.1, 1 s): half the windows, so half the embeddings",
    },
    "asr_batch_32": {
        "stages": ["vad+asr"],
        "group": "asr_batch",
        "what": "model.transcribe(batch_size=32) (reference 16)",
    },
    "align_audio_on_device": {
        "stages": ["align"],
        "group": "align_transfer",
        "what": "whisperx.align given the audio as a tensor already on the GPU: each segment's "
        "slice needs no host-to-device copy",
    },
    "align_numpy_trellis": {
        "stages": ["align"],
        "group": "align_trellis",
        "what": "the series' opt-in patch 0002-alignment-numpy-trellis: alignment's CTC trellis filled in numpy with "
        "the same float32 operations; its whisperx/alignment.py is a copy of the cell's with the patch applied, "
        "given by the host (--opt-in-align) and used for this run's align calls only",
        "patch": "0002-alignment-numpy-trellis",
    },
    "overlap_align_diarize": {
        "stages": ["align", "diarize"],
        "group": "overlap",
        "what": "diarization (audio only) runs in a second thread, on its own CUDA stream, "
        "while alignment (which needs the ASR segments) runs: same calls, same inputs",
    },
}
MEMORY_LEVERS: dict[str, str] = {
    "free_between_stages": "each stage's models loaded when the stage comes and freed when it is done (WhisperX's "
    "README does this for small GPUs): the ASR model alone first, then alignment and diarization; "
    "torch.cuda.empty_cache() after VAD (before CTranslate2 decodes) and after every stage. Single mode only "
    "(a sweep needs every model again); model loads and first calls stay outside the timed pipeline",
}
REFERENCE = {
    "batch_size": 16,
    "embedding_batch_size": 32,
    "segmentation_batch_size": 32,
    "segmentation_step": 0.1,
    "embedding_precision": "float32 (TF32 off, as pyannote sets it)",
    "align_audio": "numpy on the host",
    "align_trellis": "torch, per frame (WhisperX as released)",
    "stages": "one after another",
    "free_between_stages": False,
    "num_speakers": None,
}


def free_gpu_cache() -> None:
    """Drop what Python still holds, then hand torch's cached blocks back to the driver."""
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def load_patched_alignment(path: str | None) -> Any:
    """The alignment module of an opt-in patch's copy of whisperx/alignment.py (staged by the host), under a name of
    its own: whisperx.alignment stays as released."""
    import importlib.util

    if not path or not Path(path).is_file():
        raise bt.BenchError(f"no patched alignment.py to load (--opt-in-align): {path!r}")
    spec = importlib.util.spec_from_file_location("wxm_opt_in_alignment", path)
    assert spec is not None and spec.loader is not None  # a .py file path always gives both
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_levers(text: str | None, *, allowed: dict[str, Any]) -> list[str]:
    if text is None or text.strip() in ("", "none"):
        return []
    if text.strip() == "all":
        return list(allowed)
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise bt.BenchError(f"unknown lever(s) {', '.join(bad)}; known: {', '.join(allowed)}")
    return names


class Stage:
    """Times one stage: wall time, torch's peak (allocated and reserved) and NVML's whole-process peak."""

    def __init__(self, gpu: bool) -> None:
        self.gpu = gpu

    def __call__(self, name: str, fn: Callable[[], Any], audio_s: float | None = None) -> tuple[dict[str, Any], Any]:
        rec: dict[str, Any] = {"stage": name}
        if self.gpu:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        # The result leaves this frame in the return value only. This frame outlives the call (a traceback kept by
        # a library during the model load holds the chain of calling frames); with the result in a local here,
        # dropping the ASR model did not free it (a weakref on the CPU said so; the GPU runs of 2026-11-29 had
        # that bug: their align+diarize peak still held CTranslate2's weights).
        box: dict[str, Any] = {}
        with bt.Sampler(self.gpu) as sampler:
            t0 = time.perf_counter()
            try:
                box["result"] = fn()
                if self.gpu:
                    import torch

                    torch.cuda.synchronize()
                rec["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - a failed stage is data
                rec["status"] = "oom" if bt.is_oom(exc) else "error"
                rec["error"] = bt.error_line(exc)
                rec["where"] = traceback.format_exc().strip().splitlines()[-3:]
            wall = time.perf_counter() - t0
        rec["wall_s"] = round(wall, 3)
        if audio_s and rec["status"] == "ok":
            rec["rtf"] = bt.rtf(audio_s, wall)
        if self.gpu:
            import torch

            rec["torch_allocated_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            rec["torch_reserved_peak_mib"] = round(torch.cuda.max_memory_reserved() / 2**20)
            rec["process_peak_mib"] = None if sampler.gpu_peak is None else round(sampler.gpu_peak / 2**20)
            rec["process_peak_source"] = sampler.gpu_source
        rec["rss_peak_mib"] = round(sampler.rss_peak / 2**20)
        bt.say(
            f"  {name}: {rec['status']} {rec['wall_s']} s"
            + (f" ({rec['rtf']}x)" if rec.get("rtf") else "")
            + (f", process {rec.get('process_peak_mib')} MiB" if self.gpu else "")
            + (f": {rec.get('error')}" if rec.get("error") else "")
        )
        return rec, box.pop("result", None)


def embedding_model(precision: str) -> Any:
    """WeSpeakerResNet34 with random weights (seeded: every precision gets the same weights). ``precision``:
    float32 (as pyannote runs it), tf32 (TF32 allowed inside forward) or fp16 (autocast inside forward)."""
    import torch
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    class Embedding(WeSpeakerResNet34):
        def forward(self, waveforms: Any, weights: Any = None) -> Any:
            fbank = self.compute_fbank(waveforms)
            if self.fbank_only:
                return fbank
            if precision == "fp16" and fbank.is_cuda:
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.resnet(fbank, weights=weights)[1].float()
            if precision == "tf32" and fbank.is_cuda:
                old = (
                    torch.backends.cudnn.allow_tf32,
                    torch.backends.cuda.matmul.allow_tf32,
                )
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    return self.resnet(fbank, weights=weights)[1]
                finally:
                    (
                        torch.backends.cudnn.allow_tf32,
                        torch.backends.cuda.matmul.allow_tf32,
                    ) = old
            return self.resnet(fbank, weights=weights)[1]

    torch.manual_seed(0)
    return WeSpeakerResNet34() if precision == "float32" else Embedding()


def diarization_pipeline(
    device: str,
    *,
    embedding_batch: int = 32,
    segmentation_batch: int = 32,
    step: float = 0.1,
    precision: str = "float32",
) -> Any:
    """bench_transcribe's synthetic diarization pipeline, with the levers as arguments."""
    return bt.synthetic_diarization(
        device,
        embedding_batch,
        embedding=embedding_model(precision),
        step=step,
        segmentation_batch=segmentation_batch,
    )


def settings_for(levers: list[str]) -> dict[str, Any]:
    """The pipeline's settings with ``levers`` applied to the reference."""
    s = dict(REFERENCE)
    for lv in levers:
        if lv.startswith("embedding_batch_"):
            s["embedding_batch_size"] = int(lv.rsplit("_", 1)[1])
        elif lv == "embedding_tf32":
            s["embedding_precision"] = "tf32"
        elif lv == "embedding_fp16":
            s["embedding_precision"] = "fp16"
        elif lv.startswith("segmentation_batch_"):
            s["segmentation_batch_size"] = int(lv.rsplit("_", 1)[1])
        elif lv.startswith("segmentation_step_"):
            s["segmentation_step"] = float(lv.rsplit("_", 1)[1])
        elif lv.startswith("asr_batch_"):
            s["batch_size"] = int(lv.rsplit("_", 1)[1])
        elif lv == "align_audio_on_device":
            s["align_audio"] = "torch tensor on the GPU"
        elif lv == "align_numpy_trellis":
            s["align_trellis"] = "numpy (opt-in patch 0002-alignment-numpy-trellis)"
        elif lv == "overlap_align_diarize":
            s["stages"] = "diarization overlapped with alignment"
        elif lv == "free_between_stages":
            s["free_between_stages"] = True
    if str(s["embedding_precision"]).startswith("float32"):
        s["embedding_precision"] = "float32"
    return s


def turns_of(annotation: Any) -> list[list[Any]]:
    return [
        [round(seg.start, 3), round(seg.end, 3), str(label)]
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]


def words_of(result: dict[str, Any], *, speaker: bool = False) -> list[list[Any]]:
    """Each word with its start and end (and, from assign_word_speakers' result, its speaker): what a user reads."""
    return [
        [w.get("word", ""), w.get("start"), w.get("end")] + ([w.get("speaker")] if speaker else [])
        for s in result.get("segments", [])
        for w in s.get("words", [])
    ]


def forced_decoding(model_path: str, n: int) -> dict[str, Any]:
    """asr_options that make a random-weight model decode ``n`` tokens in every window, each a word, as speech does.

    - End-of-text is suppressed, so every window decodes to the limit; the limit is max_new_tokens = 2n - 2:
      CTranslate2's Whisper generate stops at max_length // 2 new tokens and faster-whisper passes max_length =
      prompt (2 tokens for an English-only vocabulary) + max_new_tokens (measured on the H200, issue #22).
    - Each token a word: random weights otherwise pick word pieces, punctuation and byte tokens (0.66 words a token
      from this vocabulary), and alignment and speaker assignment, whose work goes by words, would get two thirds
      of a real transcript's words (tiny.en: 0.92 words a token on the 20-minute file). A model made with
      make_synthetic_model.py --word-tokens-only has every other token's embedding row zeroed (its logit is then
      0, below the largest of 31,000 random ones), so only end-of-text needs suppressing. An older model gets the
      other 19,800 tokens suppressed by id instead: CTranslate2 builds that list for every row of the batch at
      every step (on the CPU here, batch 16 x beam 5, a 4M-parameter model: 17% to 100% more time a step), so
      the zeroed-rows model is the one to time."""
    model = Path(model_path)
    vocab = bt.read_vocabulary(model)
    eot = vocab.index("<|endoftext|>")
    word = bt.word_token_ids(vocab)
    mark = model / bt.SYNTHETIC_MARK
    zeroed = bool(mark.is_file() and json.loads(mark.read_text(encoding="utf-8")).get("word_tokens_only"))
    allowed = set(word)
    suppress = [eot] if zeroed else [i for i in range(len(vocab)) if i not in allowed]
    return {
        "asr_options": {
            "suppress_tokens": suppress,
            "suppress_blank": False,
            "max_new_tokens": 2 * n - 2,
        },
        "record": {
            "forced_tokens_per_window": n,
            "max_new_tokens": 2 * n - 2,
            "end_of_text_suppressed": eot,
            "word_tokens_allowed": len(word),
            "tokens_suppressed": len(suppress),
            "non_word_rows_zeroed": zeroed,
            "how": "end-of-text suppressed, so each window decodes to the limit (max_new_tokens = 2n - 2: CTranslate2 "
            "decodes max_length // 2); only word-start tokens of ASCII letters "
            + (
                "can win (the model's other embedding rows are zeroed), so each token is one word"
                if zeroed
                else "allowed (the others suppressed by id), so each token is one word"
            ),
        },
    }

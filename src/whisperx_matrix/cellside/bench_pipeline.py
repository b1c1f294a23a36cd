"""The whole WhisperX pipeline, stage by stage, with speed levers tried one at a time against a reference run.

Run by a cell's own python (not ours), like bench_transcribe.py, whose helpers it reuses (this folder is put on
sys.path). Usage (see --help):

    python -I bench_pipeline.py --device cuda --audio A.wav --out result.json [--model tiny.en] \
        [--mode sweep|single] [--levers L1,L2 | all | none] [--combine L1,L2] [--asr-only]

The pipeline, as WhisperX's README runs it: VAD + batched ASR (``model.transcribe``), alignment
(``whisperx.align``), diarization (pyannote's SpeakerDiarization), speaker assignment
(``whisperx.assign_word_speakers``). Every stage is timed; ``whole_pipeline_s`` is the wall time of all of them
in one go, audio already decoded (decoding is recorded apart).

Modes:
- ``sweep``: the reference configuration twice (the second run says how deterministic the stack is), then each
  lever alone (only the stages it changes are re-run; the other stages' outputs are the reference's), then the
  levers that are equivalent and faster, combined, as one whole pipeline. Each lever's outputs are compared with
  the reference's (equivalence.py): ``equivalence`` per trial.
- ``single``: one whole pipeline (or ``--asr-only``: VAD + ASR) in a fresh process with the levers in
  ``--combine``: the whole-process GPU memory peak (NVML) over the process's life, for the memory-budget table.

Weights: ASR as given (tiny.en real; a make_synthetic_model.py folder synthetic); alignment (wav2vec2-base shape)
and speaker embedding (WeSpeakerResNet34) synthetic, as in bench_transcribe.py: equivalence only, never accuracy.
Standard library only at import time; no import of whisperx_matrix. Bad input: one "error:" line, exit code 2.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

import bench_transcribe as bt  # noqa: E402
import equivalence as eq  # noqa: E402

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
                old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    return self.resnet(fbank, weights=weights)[1]
                finally:
                    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
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


def words_of(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [w.get("word", ""), w.get("start"), w.get("end")]
        for s in result.get("segments", [])
        for w in s.get("words", [])
    ]


class Pipeline:
    """The loaded models and the decoded audio; ``run`` does the stages for one configuration."""

    def __init__(self, args: argparse.Namespace, samples: Any, audio_s: float) -> None:
        self.args = args
        self.samples = samples
        self.audio_s = audio_s
        self.device = args.device
        self.gpu = args.device == "cuda"
        self.stage = Stage(self.gpu)
        self.loads: list[dict[str, Any]] = []
        self.asr: Any = None
        self.align_model: Any = None
        self.diar: dict[tuple[Any, ...], Any] = {}
        self.first_segments: Any = None  # the ASR warm-up's segments, for the alignment model's first call
        self.patched_alignment: Any = None  # whisperx/alignment.py with an opt-in patch, loaded when a lever asks
        self.head = samples[: 30 * 16000]  # each model's first call runs on this, untimed by any run
        # The file's speaker count, given to pyannote: with random embedding weights, clustering by threshold puts
        # every turn in one speaker, so DER between two runs would prove only the same speech regions; with the
        # count given, the turns must be split by their embeddings, and a lever that moves embeddings shows.
        self.speakers = {"num_speakers": args.num_speakers} if args.num_speakers else {}

    def load_asr(self, model_path: str, compute_type: str) -> None:
        import whisperx

        asr_options = {"max_new_tokens": self.args.max_new_tokens} if self.args.max_new_tokens else None
        rec, self.asr = self.stage(
            f"load_asr[{compute_type}]",
            lambda: whisperx.load_model(
                model_path,
                self.device,
                compute_type=compute_type,
                language="en",
                asr_options=asr_options,
                vad_method="pyannote",
                threads=self.args.threads,
            ),
        )
        self.loads.append(rec)
        if self.asr is None:
            raise RuntimeError(f"the ASR model did not load: {rec.get('error')}")
        if self.args.max_new_tokens:
            bt.cap_new_tokens(self.asr, self.args.max_new_tokens)

    def load_align(self) -> None:
        rec, got = self.stage("load_align", lambda: bt.synthetic_align_model(self.device))
        self.loads.append(rec)
        if got is None:
            raise RuntimeError(f"the alignment model did not load: {rec.get('error')}")
        self.align_model = got

    def diarizer(self, s: dict[str, Any]) -> Any:
        key = (
            s["embedding_batch_size"],
            s["segmentation_batch_size"],
            s["segmentation_step"],
            s["embedding_precision"],
        )
        if key not in self.diar:
            rec, pipe = self.stage(
                f"load_diarization[{'/'.join(map(str, key))}]",
                lambda: diarization_pipeline(
                    self.device, embedding_batch=key[0], segmentation_batch=key[1], step=key[2], precision=key[3]
                ),
            )
            self.loads.append(rec)
            if pipe is None:
                raise RuntimeError(f"the diarization pipeline did not load: {rec.get('error')}")
            import torch

            wave = torch.from_numpy(self.head[None, :])
            rec, _ = self.stage(
                f"diarize_first_call[{'/'.join(map(str, key))}]",
                lambda: pipe({"waveform": wave, "sample_rate": 16000}, **self.speakers),
                len(self.head) / 16000,
            )
            self.loads.append(rec)
            self.diar[key] = pipe
        return self.diar[key]

    def align_fn(self, s: dict[str, Any]) -> Callable[..., Any]:
        """whisperx.align, or the patched copy's ``align`` when the settings ask for the numpy trellis."""
        import whisperx

        if not s["align_trellis"].startswith("numpy"):
            return whisperx.align
        if self.patched_alignment is None:
            self.patched_alignment = load_patched_alignment(self.args.opt_in_align)
        return self.patched_alignment.align

    def _empty(self, s: dict[str, Any]) -> None:
        if s["free_between_stages"] and self.gpu:
            free_gpu_cache()

    def run(
        self,
        label: str,
        levers: list[str],
        *,
        only: list[str] | None = None,
        given: dict[str, Any] | None = None,
        asr_only: bool = False,
        free_asr: bool = False,
        between: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """One configuration. ``only``: the stages to run (the rest of the outputs come from ``given``, the
        reference's). ``between``: called once VAD + ASR is done (loading the later stages' models); its time is
        left out of ``whole_s``, as every configuration's model loads are. Returns {label, levers, settings,
        stages: [...], outputs: {text, words, turns}, whole_s}."""
        import torch
        import whisperx

        s = settings_for(levers)
        if self.args.batch_size and "asr_batch_32" not in levers:
            s["batch_size"] = self.args.batch_size
        s["num_speakers"] = self.args.num_speakers
        only = list(STAGES) if only is None else only
        if asr_only:
            only = ["vad+asr"]
        given = given or {}
        out: dict[str, Any] = {"label": label, "levers": levers, "settings": s, "stages": [], "ran": only}
        outputs: dict[str, Any] = {}
        bt.say(f"--- {label}: {', '.join(levers) or 'reference settings'}; stages {', '.join(only)} ---")
        diar_pipe: Any = self.diarizer(s) if "diarize" in only and between is None else None
        t_all = time.perf_counter()
        paused = 0.0

        transcript: Any = given.get("_transcript")
        if "vad+asr" in only:
            rec, transcript = self.stage(
                "vad+asr",
                lambda: self.asr.transcribe(self.samples, batch_size=s["batch_size"], language="en"),
                self.audio_s,
            )
            rec["batch_size"] = s["batch_size"]
            out["stages"].append(rec)
            if transcript is None:
                return out | {"ok": False, "error": rec.get("error")}
            outputs["text"] = " ".join(seg["text"].strip() for seg in transcript["segments"])
            if free_asr:
                import weakref

                held = weakref.ref(self.asr)
                self.asr = None
                gc.collect()
                out["asr_model_released"] = held() is None  # else something still holds it (see Stage)
            self._empty(s)
        if asr_only:
            out["whole_s"] = round(time.perf_counter() - t_all, 3)
            out["outputs"] = outputs
            return out | {"ok": True}
        if between is not None:
            t0 = time.perf_counter()
            try:
                between()
            except Exception as exc:  # noqa: BLE001 - the VAD + ASR stage already measured stays in the record
                out["between_stages_s"] = round(time.perf_counter() - t0, 3)
                return out | {"ok": False, "error": f"loading the later stages' models: {bt.error_line(exc)}"}
            paused = time.perf_counter() - t0
            out["between_stages_s"] = round(paused, 3)
            if "diarize" in only:
                diar_pipe = self.diarizer(s)

        audio_for_align: Any = self.samples
        if s["align_audio"].startswith("torch") and self.gpu:
            audio_for_align = torch.from_numpy(self.samples).to(self.device)
        am, meta = self.align_model if self.align_model else (None, None)

        align = self.align_fn(s)

        def do_align() -> Any:
            import copy

            return align(copy.deepcopy(transcript["segments"]), am, meta, audio_for_align, self.device)

        wave = torch.from_numpy(self.samples[None, :])

        def do_diarize() -> Any:
            return diar_pipe({"waveform": wave, "sample_rate": 16000}, **self.speakers)

        aligned = given.get("_aligned")
        diar_out = None
        if s["stages"].startswith("diarization overlapped") and "align" in only and "diarize" in only:
            box: dict[str, Any] = {}

            def worker() -> None:
                stream = torch.cuda.Stream() if self.gpu else None
                t0 = time.perf_counter()
                try:
                    if stream is not None:
                        with torch.cuda.stream(stream):
                            box["out"] = do_diarize()
                        stream.synchronize()
                    else:
                        box["out"] = do_diarize()
                except Exception as exc:  # noqa: BLE001
                    box["error"] = bt.error_line(exc)
                box["wall_s"] = round(time.perf_counter() - t0, 3)

            def both() -> Any:
                th = threading.Thread(target=worker)
                th.start()
                t0 = time.perf_counter()
                res = do_align()
                box["align_s"] = round(time.perf_counter() - t0, 3)
                th.join()
                if "error" in box:
                    raise RuntimeError(f"diarization thread: {box['error']}")
                return res

            rec, aligned = self.stage("align+diarize (overlapped)", both, self.audio_s)
            rec["align_s_within"] = box.get("align_s")
            rec["diarize_s_within"] = box.get("wall_s")
            out["stages"].append(rec)
            diar_out = box.get("out")
            if aligned is None or diar_out is None:
                return out | {"ok": False, "error": rec.get("error") or box.get("error")}
            self._empty(s)
        else:
            if "align" in only:
                rec, aligned = self.stage("align", do_align, self.audio_s)
                out["stages"].append(rec)
                if aligned is None:
                    return out | {"ok": False, "error": rec.get("error")}
                self._empty(s)
            if "diarize" in only:
                rec, diar_out = self.stage("diarize", do_diarize, self.audio_s)
                out["stages"].append(rec)
                if diar_out is None:
                    return out | {"ok": False, "error": rec.get("error")}
                rec["speakers_found"] = len(diar_out.speaker_diarization.labels())
                self._empty(s)
        if aligned is not None and ("align" in only):
            outputs["words"] = words_of(aligned)
        if diar_out is not None:
            outputs["turns"] = turns_of(diar_out.speaker_diarization)
        turns = outputs.get("turns", given.get("turns"))
        if "assign_speakers" in only and aligned is not None and turns is not None:
            import pandas as pd

            df = pd.DataFrame(turns, columns=["start", "end", "speaker"])
            rec, assigned = self.stage(
                "assign_speakers", lambda: whisperx.assign_word_speakers(df, aligned), self.audio_s
            )
            out["stages"].append(rec)
            if assigned is not None:
                outputs["speakers_by_word"] = [
                    w.get("speaker") for sg in assigned["segments"] for w in sg.get("words", [])
                ]
        out["whole_s"] = round(time.perf_counter() - t_all - paused, 3)
        out["whole_rtf"] = bt.rtf(self.audio_s, out["whole_s"])
        out["stage_sum_s"] = round(sum(r["wall_s"] for r in out["stages"]), 3)
        out["outputs"] = outputs
        out["_transcript"], out["_aligned"] = transcript, aligned
        return out | {"ok": True}


def public(run: dict[str, Any], keep_outputs: bool) -> dict[str, Any]:
    """A run record for the JSON: no Python objects; outputs only when asked (they are large)."""
    r = {k: v for k, v in run.items() if not k.startswith("_") and k != "outputs"}
    outs = run.get("outputs") or {}
    r["output_sizes"] = {
        "words": len(outs.get("words", [])),
        "turns": len(outs.get("turns", [])),
        "speakers": len({t[2] for t in outs.get("turns", [])}),
        "transcript_words": len(eq.normalise_words(outs.get("text", ""))),
    }
    if keep_outputs:
        r["outputs"] = outs
    return r


def compare(reference: dict[str, Any], other: dict[str, Any], stages: list[str]) -> dict[str, Any]:
    """Equivalence of ``other`` against ``reference`` on the outputs of the stages ``other`` ran."""
    keys = {"vad+asr": ["text"], "align": ["words"], "diarize": ["turns"]}
    want = [k for st in stages for k in keys.get(st, [])]
    ref = {k: reference["outputs"][k] for k in want if k in reference["outputs"]}
    oth = {k: other["outputs"][k] for k in want if k in other.get("outputs", {})}
    return eq.equivalence(ref, oth)


def stage_time(run: dict[str, Any], stages: list[str]) -> float | None:
    """Seconds ``run`` spent in ``stages`` (an overlapped align+diarize stage counts for both)."""
    total, seen = 0.0, False
    for r in run.get("stages", []):
        names = ["align", "diarize"] if r["stage"].startswith("align+diarize") else [r["stage"]]
        if any(n in stages for n in names) and r.get("status") == "ok":
            total += r["wall_s"]
            seen = True
    return round(total, 3) if seen else None


def choose_levers(trials: list[dict[str, Any]], combine: list[str] | None) -> list[str]:
    """The levers of the combined run: those handed over (``combine``) less any found not equivalent here, else the
    equivalent, faster ones of the trials that ran (a trial recorded as not run has no times to compare)."""
    if combine is not None:
        return eq.keep_given(combine, trials)
    ran = [t for t in trials if t.get("ok")]
    return eq.pick_levers([t | {"reference_s": min(x for x in (t["reference_s"], t["repeat_s"]) if x)} for t in ran])


def warm_up_asr(p: Pipeline) -> list[dict[str, Any]]:
    """The ASR model's first call on 30 s (cuBLAS set-up, CTranslate2's PTX JIT), so that no timed run pays it; its
    segments are kept for the alignment model's first call."""
    recs = []
    jit = bt.cuda_jit_cache_state() if p.gpu else None
    head_s = len(p.head) / 16000
    bs = p.args.batch_size or REFERENCE["batch_size"]
    rec, first = p.stage("asr_first_call", lambda: p.asr.transcribe(p.head, batch_size=bs, language="en"), head_s)
    rec["cuda_jit_cache"] = jit
    recs.append(rec)
    p.first_segments = None if first is None else first["segments"]
    if p.args.mode == "sweep":  # the ASR lever's batch size gets its first call too
        rec, _ = p.stage("asr_first_call[bs32]", lambda: p.asr.transcribe(p.head, batch_size=32, language="en"), head_s)
        recs.append(rec)
    return recs


def warm_up_align(p: Pipeline) -> list[dict[str, Any]]:
    """The alignment model's first calls (audio on the host, and on the GPU), untimed by any run."""
    import torch
    import whisperx

    recs: list[dict[str, Any]] = []
    if p.first_segments is None or not p.align_model:
        return recs
    am, meta = p.align_model
    head_s = len(p.head) / 16000
    segments = p.first_segments
    rec, _ = p.stage(
        "align_first_call",
        lambda: whisperx.align(copy.deepcopy(segments), am, meta, p.head, p.device),
        head_s,
    )
    recs.append(rec)
    if p.gpu:
        rec, _ = p.stage(
            "align_first_call[audio on device]",
            lambda: whisperx.align(copy.deepcopy(segments), am, meta, torch.from_numpy(p.head).to(p.device), p.device),
            head_s,
        )
        recs.append(rec)
    return recs


def empty_cache_after_vad(asr: Any) -> None:
    """Make WhisperX's VAD model empty torch's cache when it returns, before CTranslate2 decodes: its activations'
    cache would otherwise sit beside the decoder's memory. The instance gets a subclass (``transcribe`` checks
    ``issubclass(type(vad_model), Vad)``); the VAD's computation is unchanged."""
    vad = getattr(asr, "vad_model", None)
    if vad is None:
        return
    base = type(vad)

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        out = base.__call__(self, *args, **kwargs)
        free_gpu_cache()
        return out

    vad.__class__ = type(f"EmptyCacheAfter{base.__name__}", (base,), {"__call__": __call__})


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.decoder == "ffmpeg":
        bt.check_ffmpeg()
    levers = parse_levers(args.levers, allowed=LEVERS) if args.mode == "sweep" else []
    combine = parse_levers(args.combine, allowed=LEVERS | MEMORY_LEVERS) if args.combine is not None else None
    if args.mode == "sweep" and combine and "free_between_stages" in combine:
        raise bt.BenchError("free_between_stages frees each model after its stage: use it with --mode single")
    model_path, model_weights = bt.resolve_model(args.model)
    if model_weights == "synthetic" and not args.max_new_tokens:
        raise bt.BenchError("a synthetic (random-weight) model needs --max-new-tokens, or it decodes to the 448 limit")
    if not Path(args.audio).is_file():
        raise bt.BenchError(f"audio file not found: {args.audio}")
    bt.say("importing torch, whisperx ...")
    import torch

    bt.check_device(args.device, torch.cuda.is_available())
    args.threads = args.threads or max(1, min(8, os.cpu_count() or 1))
    torch.set_num_threads(args.threads)
    compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    t0 = time.perf_counter()
    samples = bt.decode(args.audio, args.decoder)
    decode_s = round(time.perf_counter() - t0, 3)
    audio_s = samples.size / 16000
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "ok": True,
        "mode": args.mode,
        "device": args.device,
        "model": args.model,
        "model_weights": model_weights,
        "compute_type": compute_type,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size or REFERENCE["batch_size"],
        "num_speakers": args.num_speakers,
        "file": Path(args.audio).name,
        "audio_s": round(audio_s, 2),
        "decode_s": decode_s,
        "versions": bt.versions(),
        "gpu": bt.gpu_info(),
        "weights": {
            "vad+asr": model_weights,
            "vad": "real (pyannote segmentation shipped in whisperx)",
            "align": "synthetic",
            "diarize": "synthetic (embedding); real (segmentation)",
        },
        "reference_settings": REFERENCE,
        "levers_known": {k: v["what"] for k, v in LEVERS.items()} | MEMORY_LEVERS,
        "patches": "levers that change WhisperX code are opt-in patches of the series, used from a patched copy of the "
        "cell's file for their runs only: "
        + ", ".join(f"{k} ({v['patch']})" for k, v in LEVERS.items() if v.get("patch"))
        + "; every other lever is a constructor argument, a setting, or the model object handed to pyannote",
        "opt_in_align": args.opt_in_align and Path(args.opt_in_align).name,
    }
    process = bt.Sampler(args.device == "cuda")  # the whole process, from before the first model load
    process.__enter__()
    p = Pipeline(args, samples, audio_s)
    bt.ensure_punkt(Path(args.work_dir or os.environ.get("TMPDIR", "/tmp")) / f"wxm-pipeline-{os.getpid()}")
    if p.gpu:  # the CUDA context alone: the floor every figure below stands on
        rec, _ = p.stage("cuda_init", lambda: torch.zeros(1, device=args.device))
        rec.pop("wall_s")  # Stage's synchronize makes the context before its clock starts: a memory figure only
        p.loads.append(rec)
    levers_here = (combine or []) if args.mode == "single" else []
    sequential = "free_between_stages" in levers_here
    p.load_asr(model_path, compute_type)
    if sequential and p.gpu:
        empty_cache_after_vad(p.asr)
    data["warmup"] = warm_up_asr(p)

    def load_rest() -> None:
        p.load_align()
        p.diarizer(settings_for(levers_here))
        data["warmup"] += warm_up_align(p)
        if sequential and p.gpu:  # the first calls' cache too, not only the stages'
            free_gpu_cache()

    if not args.asr_only and not sequential:
        load_rest()
    if sequential and p.gpu:
        free_gpu_cache()
    data["loads"] = p.loads
    # The opt-in patch's module, loaded now: a copy that does not load makes its lever "not run", not a lost sweep.
    if args.opt_in_align and any(LEVERS.get(lv, {}).get("patch") for lv in [*levers, *(combine or [])]):
        try:
            p.align_fn({"align_trellis": "numpy"})
        except Exception as exc:  # noqa: BLE001 - recorded, and the lever is then not run
            data["opt_in_align_error"] = bt.error_line(exc)
            args.opt_in_align = None

    if args.mode == "single":
        r = p.run(
            "single",
            levers_here,
            asr_only=args.asr_only,
            free_asr=sequential,
            between=load_rest if sequential and not args.asr_only else None,
        )
        process.__exit__()
        data["run"] = public(r, keep_outputs=False)
        data["ok"] = bool(r.get("ok"))
        data["process_peak_mib"] = None if process.gpu_peak is None else round(process.gpu_peak / 2**20)
        data["process_peak_source"] = (
            f"{process.gpu_source}: the whole process, sampled every 50 ms from before the "
            f"first model load to the end of the run"
            if process.gpu_source
            else None
        )
        data["device_used_peak_mib"] = (
            None if process.device_used_peak is None else round(process.device_used_peak / 2**20)
        )
        data["peak_rss_mib"] = round(process.rss_peak / 2**20)
        return data

    # sweep
    ref = p.run("reference", [])
    if not ref.get("ok"):
        raise RuntimeError(f"the reference run failed: {ref.get('error')}")
    repeat = p.run("reference_repeat", [])
    runs = [ref, repeat]
    trials = []
    rep_eq = compare(ref, repeat, list(STAGES)) if repeat.get("ok") else {"passes": False, "error": repeat.get("error")}
    for lv in levers:
        stages = LEVERS[lv]["stages"]
        if LEVERS[lv].get("patch") and not args.opt_in_align:  # the host could not stage the patch: said, not run
            why = f"not run: no loadable copy with {LEVERS[lv]['patch']} applied (--opt-in-align)" + (
                f": {data['opt_in_align_error']}" if data.get("opt_in_align_error") else ""
            )
            trials.append(
                {
                    "lever": lv,
                    "group": LEVERS[lv]["group"],
                    "stages": stages,
                    "ok": False,
                    "passes": False,
                    "error": why,
                }
            )
            bt.say(f"  lever {lv}: {why}")
            continue
        r = p.run(lv, [lv], only=stages, given=ref)
        runs.append(r)
        t: dict[str, Any] = {
            "lever": lv,
            "group": LEVERS[lv]["group"],
            "stages": stages,
            "what": LEVERS[lv]["what"],
            "reference_s": stage_time(ref, stages),
            "repeat_s": stage_time(repeat, stages),
            "ok": bool(r.get("ok")),
        }
        if r.get("ok"):
            t["lever_s"] = stage_time(r, stages)
            t["equivalence"] = compare(ref, r, stages)
            t["passes"] = t["equivalence"]["passes"]
            base = min(x for x in (t["reference_s"], t["repeat_s"]) if x)
            t["speedup"] = round(base / t["lever_s"], 3) if t["lever_s"] else None
        else:
            t["error"] = r.get("error")
            t["passes"] = False
        trials.append(t)
        bt.say(f"  lever {lv}: {t.get('lever_s')} s vs {t['reference_s']} s, equivalent: {t['passes']}")
    picked = choose_levers(trials, combine)
    combined = p.run("combined", picked)
    runs.append(combined)
    comb_eq = compare(ref, combined, list(STAGES)) if combined.get("ok") else {"passes": False}
    process.__exit__()
    data["runs"] = [public(r, keep_outputs=args.keep_outputs) for r in runs]
    data["trials"] = trials
    data["combined_levers"] = picked
    data["combined_levers_how"] = (
        "given (--combine), less any this run tried alone and found not equivalent"
        if combine is not None
        else "equivalence.pick_levers: equivalent, at least 3% faster than the faster of the two "
        "reference runs on the stages the lever changes, the fastest of each group"
    )
    data["equivalence"] = {
        "reference_repeat": rep_eq,
        "combined": comb_eq,
        "levers": {t["lever"]: t.get("equivalence") for t in trials},
    }
    data["peak_rss_mib"] = round(process.rss_peak / 2**20)
    data["process_peak_mib"] = None if process.gpu_peak is None else round(process.gpu_peak / 2**20)
    data["process_peak_note"] = (
        "the sweep process's whole-life peak (every configuration, caches kept): not a "
        "setting's peak; see the single-mode runs for that"
    )
    data["ok"] = bool(ref.get("ok") and combined.get("ok"))
    return data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cpu")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--compute-type", default=None)
    p.add_argument("--audio", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=("sweep", "single"), default="sweep")
    p.add_argument("--levers", default="all", help="sweep: levers to try one at a time (all, none, or a comma list)")
    p.add_argument(
        "--combine",
        default=None,
        help="levers for the combined run (sweep: default picked from the trials) or for the single run",
    )
    p.add_argument("--asr-only", action="store_true", help="single: VAD + ASR only")
    p.add_argument("--batch-size", type=int, default=None, help="the ASR batch size (default: the reference's, 16)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument(
        "--opt-in-align", default=None, help="a whisperx/alignment.py with the opt-in trellis patch (from the host)"
    )
    p.add_argument(
        "--num-speakers", type=int, default=None, help="the file's speaker count, given to pyannote (see Pipeline)"
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--keep-outputs", action="store_true", help="write each run's transcript, words and turns")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--decoder", choices=("ffmpeg", "pyav"), default="ffmpeg")
    return p


def main(argv: list[str] | None = None) -> int:
    bt.offline_hub()
    args = build_parser().parse_args(argv)
    try:
        data = run(args)
    except bt.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        bt.write_json(args.out, {"schema": SCHEMA, "ok": False, "error": str(exc), "device": args.device})
        return 2
    except Exception as exc:  # noqa: BLE001
        print(f"error: {bt.error_line(exc)}", file=sys.stderr)
        bt.write_json(
            args.out,
            {
                "schema": SCHEMA,
                "ok": False,
                "error": bt.error_line(exc),
                "device": args.device,
                "where": traceback.format_exc().strip().splitlines()[-4:],
            },
        )
        return 1
    bt.write_json(args.out, data)
    return 0 if data.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())

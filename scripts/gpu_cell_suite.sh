#!/usr/bin/env bash
# The matrix's own cell suite (tests/cell), GPU tests included, on the GPU machine, whose preinstalled stack is a
# cu130 cell (torch 2.11.0+cu130). Run twice, as the matrix's two cu130 cells:
#   1. stable-cu130:          our wheels over the preinstalled torch, nothing providing libcublas.so.12
#   2. stable-cu130-cublas12: plus nvidia-cublas-cu12, preloaded by the env's own .pth (as the cell build writes it)
# Needs: wheels/g* (scripts/gpu_wheelhouse.sh) under $WHEELS, the nvidia-cublas-cu12 wheel at $CUBLAS12_WHEEL,
# pyelftools on PYTHONPATH for the audit ($AUDIT_PATH), imageio-ffmpeg's wheel ($FFMPEG_WHEEL) for an ffmpeg
# binary, and $OUT. Writes $OUT/cell-suite-<cell>.json.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${WHEELS:?set WHEELS to the folder holding g1..gN}
OUT=${OUT:?set OUT}
VENV=/tmp/wxm-cell-venv
# shellcheck source=scripts/gpu_venv.sh
source "$ROOT/scripts/gpu_venv.sh"
unset LD_LIBRARY_PATH
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYANNOTE_METRICS_ENABLED=false PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
    make_gpu_venv "$VENV" "$W" "$OUT/.install.log"
    "$VENV/bin/pip" install -q --no-index --no-deps "$W"/g*/builder/*.whl >> "$OUT/.install.log" 2>&1 || true
fi
# WhisperX decodes with the ffmpeg binary, which that machine lacks: take the one imageio-ffmpeg's wheel ships.
if ! command -v ffmpeg >/dev/null && [ -n "${FFMPEG_WHEEL:-}" ]; then
    mkdir -p /tmp/wxm-ffmpeg /tmp/wxm-bin && python3 -m zipfile -e "$FFMPEG_WHEEL" /tmp/wxm-ffmpeg
    bin=$(ls /tmp/wxm-ffmpeg/imageio_ffmpeg/binaries/ffmpeg-* | head -1); chmod +x "$bin"
    ln -sf "$bin" /tmp/wxm-bin/ffmpeg; export PATH=/tmp/wxm-bin:$PATH
fi
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
AUDIO=$(ls -d "$W"/g*/audio | head -1)

run_suite() {  # $1 = the cell this env stands for
    local cell=$1 work=/tmp/wxm-cell-$1
    mkdir -p "$work"
    # The audit, made outside the cell as the matrix makes it (the cell suite reads its summary).
    PYTHONPATH=$ROOT/src:${AUDIT_PATH:-} python3 - "$SITE" "$work/audit-summary.json" "$VENV/bin/python" <<'PYEOF'
import json, sys
from pathlib import Path
from whisperx_matrix.audit import audit_site
r = audit_site(Path(sys.argv[1]), 90, python=Path(sys.argv[3]), progress=False)
json.dump({"reasons": list(r.reasons), "arch_evidence": [],
           "closure_evidence": [m.describe() for m in r.closure.process.missing]}, open(sys.argv[2], "w"))
print("audit:", r.reasons)
PYEOF
    ref=$(ls "$AUDIO"/*.txt | head -1); wav=${ref%.txt}.flac
    WXM_CELL_ID=$cell WXM_TARGET_SM=90 WXM_SPEECH_WAV=$wav WXM_SPEECH_TEXT=$ref \
    WXM_AUDIT_JSON=$work/audit-summary.json WXM_CELL_RESULTS=$OUT/cell-suite-$cell.json \
        timeout 240 "$VENV/bin/python" -m pytest "$ROOT/tests/cell" -q -p no:benchmark 2>&1 | tail -15
}

run_suite stable-cu130
# The cublas12 cell: the add-on installed, and the preload .pth exactly as build.py writes it for that cell.
"$VENV/bin/pip" install -q --no-index --no-deps "$CUBLAS12_WHEEL" >> "$OUT/.install.log" 2>&1
PYTHONPATH=$ROOT/src python3 - "$SITE" <<'PYEOF'
import sys
from pathlib import Path
from whisperx_matrix import build, matrix
cell = matrix.load(Path("matrix.toml")).get("stable-cu130-cublas12")
build._preload_files(Path(sys.argv[1]), cell)
print("preload:", cell.preload)
PYEOF
run_suite stable-cu130-cublas12

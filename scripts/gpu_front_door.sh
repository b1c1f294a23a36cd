#!/usr/bin/env bash
# The GPU job through the product's own front door, on the lent GPU machine standing in for the self-hosted
# runner (issue #12). The workflow's jobs run step by step from .github/workflows/gpu-matrix.yml itself
# (scripts/run_workflow_job.py); this script only does what a runner's set-up does: tools on PATH and a
# package mirror, which here is a carried folder of wheels because that machine has no network.
#
# Needs: $PARTS/p.NNN, the parts of a tar made here (docs/gpu-runner.md says how) holding wh/ (every wheel of
# the chosen cells' locks, plus nox, uv, hatchling, editables, the package's own dependencies and
# imageio-ffmpeg for an ffmpeg binary) and wxm-cache/audio/ (the self-test speech made here: no espeak-ng
# there), and optionally bin/patch (GNU patch, for a machine without it). python3 with PyYAML (the machine's own).
# Usage: OUT=DIR scripts/gpu_front_door.sh cell CELL...   (one `cell` job per CELL)
#        OUT=DIR scripts/gpu_front_door.sh report         (the merge job)
#        OUT=DIR scripts/gpu_front_door.sh bench | bench-large-v3   (the transcription benchmark jobs)
#        OUT=DIR scripts/gpu_front_door.sh pipeline [--steps S1,S2]   (the bench-pipeline job's commands, a part
#            at a time: a lent machine's call is limited to 10 minutes, the whole job takes longer)
# Writes $OUT/steps-<job>.json (each step's exit code and seconds) and, for report, the merged report files.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for results}
PARTS=${PARTS:-/tmp/parts}
STAGE=${STAGE:-/tmp/wxm-runner}
HOST_PY=$(command -v python3)  # the machine's python (PyYAML), before the tools' venv comes first on PATH
T0=$(date +%s)
log() { echo "[front-door $(( $(date +%s) - T0 ))s] $*"; }

if [ ! -d "$STAGE/wh" ]; then
    log "unpacking $(ls "$PARTS" | wc -l) parts"
    mkdir -p "$STAGE" && cat "$PARTS"/p.* | tar xf - -C "$STAGE" || { echo "error: the parts do not make a tar" >&2; exit 2; }
    rm -rf "$PARTS"
fi
if [ ! -x "$STAGE/tools/bin/nox" ]; then
    log "runner tools: nox, uv, ffmpeg (imageio-ffmpeg)"
    python3 -m venv "$STAGE/tools" && "$STAGE/tools/bin/pip" install -q --no-index --find-links "$STAGE/wh" nox uv imageio-ffmpeg || exit 2
    ln -sf "$("$STAGE/tools/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" "$STAGE/tools/bin/ffmpeg"
fi
export PATH="$STAGE/tools/bin:$PATH"
# GNU patch (the series and the opt-in levers apply with it): the machine's own first, else the bundle's bin/.
[ -d "$STAGE/bin" ] && export PATH="$PATH:$STAGE/bin"
# The runner's package mirror, offline: uv and pip read these; nothing reaches a network.
export UV_OFFLINE=1 UV_FIND_LINKS="$STAGE/wh" PIP_NO_INDEX=1 PIP_FIND_LINKS="$STAGE/wh" WXM_CACHE="$STAGE/wxm-cache"
unset LD_LIBRARY_PATH
WF=.github/workflows/gpu-matrix.yml
job=${1:?cell or report}; shift
rc=0
export RUNNER_TEMP="$STAGE/runner-temp"; mkdir -p "$RUNNER_TEMP"
if [ "$job" = bench ] || [ "$job" = bench-large-v3 ]; then
    log "job $job"
    "$HOST_PY" scripts/run_workflow_job.py "$WF" "$job" --artifacts "$STAGE/artifacts" --record "$OUT/steps-$job.json" || rc=1
    for f in "$STAGE"/artifacts/bench-*/*.json; do [ -f "$f" ] && cp "$f" "$OUT/$(basename "$(dirname "$f")")-$(basename "$f")"; done
elif [ "$job" = pipeline ]; then
    # The same commands as the workflow's bench-pipeline job; the envs, the synthetic model and the steps' raw
    # results live in $STAGE, which outlives the carried checkout between calls.
    cell=stable-cu128-py312 model="$STAGE/synthetic-large-v3"
    export WXM_ENVS="$STAGE/envs"
    log "job pipeline: the cell"
    [ -x "$WXM_ENVS/$cell/bin/python" ] || nox -s "env-$cell" || exit 1
    if [ ! -f "$model/model.bin" ]; then
        log "job pipeline: the large-v3-shaped model (random weights)"
        "$WXM_ENVS/$cell/bin/python" src/whisperx_matrix/cellside/make_synthetic_model.py "$model" || exit 1
    fi
    log "job pipeline: bench $*"
    nox -s bench -- pipeline --cell "$cell" --device cuda --large-model "$model" --work "$STAGE/pipeline-work" \
        --fresh-jit-cache "$@" || rc=1
    cp "$STAGE"/pipeline-work/step-*.json "$OUT/" 2>/dev/null
elif [ "$job" = cell ]; then
    for cell in "$@"; do
        log "job cell ($cell)"
        "$HOST_PY" scripts/run_workflow_job.py "$WF" cell --matrix "cell=$cell" --artifacts "$STAGE/artifacts" \
            --record "$OUT/steps-cell-$cell.json" || rc=1
    done
else
    log "job report"
    "$HOST_PY" scripts/run_workflow_job.py "$WF" report --artifacts "$STAGE/artifacts" --record "$OUT/steps-report.json" || rc=1
    cp "$STAGE"/artifacts/matrix-report/matrix.{json,md,html,png} "$OUT/" 2>/dev/null
fi
log "done (exit $rc)"
exit $rc

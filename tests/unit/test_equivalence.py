"""Run-to-run equivalence (issue #15): WER between two transcripts, DER between two sets of speaker turns, word
timing deltas, the pass/fail bar, and which levers are kept. Pure functions: nothing mocked.

equivalence.py runs in a cell's python (standard library only), so it is loaded here from its file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "src" / "whisperx_matrix" / "cellside" / "equivalence.py"


def _load():
    spec = importlib.util.spec_from_file_location("equivalence_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


eq = _load()


def test_wer_between_identical_texts_is_zero_whatever_the_punctuation_and_case() -> None:
    assert eq.wer_between("Hello, world. It's me!", "hello world it's me")["wer"] == 0


@pytest.mark.parametrize(
    ("ref", "hyp", "errors"),
    [
        ("a b c d", "a x c d", 1),  # substitution
        ("a b c d", "a c d", 1),  # deletion
        ("a b c d", "a b y c d", 1),  # insertion
        ("a b c d", "d c b a", 4),
        ("a b c", "", 3),
        ("", "a", 1),
    ],
)
def test_word_errors_is_the_levenshtein_distance(ref: str, hyp: str, errors: int) -> None:
    assert eq.word_errors(ref.split(), hyp.split()) == errors


def test_word_errors_on_long_nearly_equal_transcripts_costs_only_the_differing_part() -> None:
    ref = [f"w{i}" for i in range(20000)]
    hyp = list(ref)
    hyp[10000] = "changed"
    assert eq.word_errors(ref, hyp) == 1  # a full 20000 x 20000 DP would not finish in a unit test


def test_der_between_identical_turns_with_other_labels_is_zero() -> None:
    ref = [(0.0, 5.0, "A"), (5.0, 9.0, "B"), (9.5, 12.0, "A")]
    other = [(0.0, 5.0, "SPEAKER_01"), (5.0, 9.0, "SPEAKER_00"), (9.5, 12.0, "SPEAKER_01")]
    got = eq.der_between(ref, other)
    assert got["der"] == 0 and got["speakers"] == [2, 2] and got["mapping"] == "exhaustive"


def test_der_counts_miss_false_alarm_and_confusion() -> None:
    ref = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]  # 20 s of speech
    other = [(0.0, 9.0, "x"), (10.0, 15.0, "y"), (15.0, 20.0, "x"), (20.0, 21.0, "y")]
    got = eq.der_between(ref, other)
    # x -> A (9 s), y -> B (5 s); missed 1 s (9-10), confusion 5 s (15-20 is x while B speaks), false alarm 1 s
    assert got["missed_s"] == pytest.approx(1.0) and got["confusion_s"] == pytest.approx(5.0)
    assert got["false_alarm_s"] == pytest.approx(1.0)
    assert got["der"] == pytest.approx(7 / 20)


def test_der_scores_overlapping_speech() -> None:
    ref = [(0.0, 10.0, "A"), (5.0, 10.0, "B")]  # 15 s of speaker time
    other = [(0.0, 10.0, "x")]  # overlap missed: 5 s
    assert eq.der_between(ref, other)["der"] == pytest.approx(5 / 15)


def test_der_maps_greedily_above_the_exhaustive_limit() -> None:
    ref = [(float(i), i + 1.0, f"r{i}") for i in range(eq.GREEDY_ABOVE + 3)]
    other = [(float(i), i + 1.0, f"h{i}") for i in range(eq.GREEDY_ABOVE + 3)]
    got = eq.der_between(ref, other)
    assert got["der"] == 0 and got["mapping"] == "greedy"


def test_der_of_nothing_against_nothing_is_zero_and_of_something_against_nothing_is_one() -> None:
    assert eq.der_between([], [])["der"] == 0
    assert eq.der_between([(0.0, 1.0, "A")], [])["der"] == 1
    assert eq.der_between([], [(0.0, 1.0, "A")])["der"] == 1


def test_word_timing_delta_is_the_largest_start_or_end_difference_in_ms() -> None:
    ref = [("Hello,", 1.0, 1.5), ("world", 1.6, 2.0), ("again", None, None)]
    other = [("hello", 1.004, 1.5), ("world", 1.6, 2.019), ("again", None, None)]
    got = eq.word_timing_delta(ref, other)
    assert got["max_delta_ms"] == pytest.approx(19.0) and got["matched_words"] == 3 and got["unmatched_words"] == 0


def test_word_timing_delta_names_unmatched_words_and_a_timestamp_only_one_run_has() -> None:
    ref = [("a", 0.0, 0.1), ("b", 0.2, 0.3), ("c", 0.4, 0.5)]
    other = [("a", 0.0, 0.1), ("c", None, None)]
    got = eq.word_timing_delta(ref, other)
    assert got["unmatched_words"] == 1 and got["timestamp_presence_differs"] == 1


WORDS = "one two three four five six seven eight nine ten eleven twelve".split()
TEXT = " ".join(WORDS)
TIMED = tuple((w, round(i * 0.3, 2), round(i * 0.3 + 0.25, 2)) for i, w in enumerate(WORDS))


def _outputs(
    text: str = TEXT,
    turns=((0.0, 2.0, "A"), (2.0, 4.0, "B")),
    words=TIMED,
    speakers: tuple[str, ...] | None = None,
) -> dict:
    """A pipeline's outputs as bench_pipeline.py records them: twelve words, two speakers (A then B, as the turns)."""
    speakers = speakers or tuple("A" if w[1] < 2.0 else "B" for w in words)
    return {
        "text": text,
        "segments": [text],
        "turns": [list(t) for t in turns],
        "words": [list(w) for w in words],
        "speaker_words": [[*w, s] for w, s in zip(words, speakers, strict=True)],
    }


def _moved(by_s: float) -> tuple:
    """The reference's words with the last word's end moved by ``by_s`` seconds."""
    words = list(_outputs()["words"])
    words[-1] = [*words[-1][:2], words[-1][2] + by_s]
    return tuple(tuple(w) for w in words)


def test_equivalence_passes_for_the_same_outputs() -> None:
    got = eq.equivalence(_outputs(), _outputs())
    assert got["passes"] and got["transcript"]["wer"] == 0 and got["speaker_turns"]["der"] == 0
    assert got["word_timings"]["max_delta_ms"] == 0 and got["word_speakers"]["speaker_differs"] == 0
    assert got["segment_texts"]["differing"] == 0 and got["size"]["reference_words"] == 12


@pytest.mark.parametrize(
    "other",
    [
        _outputs(text=TEXT.replace("three", "four")),  # WER > 0
        _outputs(turns=((0.0, 2.1, "A"), (2.1, 4.0, "B"))),  # DER 2.5%
        _outputs(words=_moved(0.021)),  # 21 ms
    ],
)
def test_equivalence_fails_past_any_bar(other: dict) -> None:
    assert not eq.equivalence(_outputs(), other)["passes"]


def test_equivalence_holds_just_inside_the_bars() -> None:
    other = _outputs(turns=((0.0, 2.03, "A"), (2.03, 4.0, "B")), words=_moved(0.0199))  # DER 0.75%, 20 ms
    got = eq.equivalence(_outputs(), other)
    assert got["speaker_turns"]["der"] == pytest.approx(0.0075) and got["passes"]


def test_empty_against_empty_is_not_equivalence() -> None:
    """#22: the 11-29 large-v3-shaped runs compared 47 words; empty outputs once scored perfect."""
    empty = {"text": "", "segments": [], "turns": [], "words": [], "speaker_words": []}
    got = eq.equivalence(empty, empty)
    assert got["transcript"]["wer"] == 0 and not got["passes"]  # every measure agrees, and still it fails
    assert got["size"]["reference_words"] == 0


def test_an_output_under_nine_tenths_of_the_reference_fails() -> None:
    short = _outputs()
    for key in ("words", "speaker_words"):
        short[key] = short[key][:10]  # 10 of 12 words: 83%
    got = eq.equivalence(_outputs(), short)
    assert got["size"]["other_words"] == 10 and not got["passes"]
    assert eq.size_passes({"reference_words": 12, "other_words": 11}) is True  # 92%


def test_one_word_given_to_the_other_speaker_fails() -> None:
    speakers = ["A" if i < 7 else "B" for i in range(12)]
    swapped = list(speakers)
    swapped[3] = "B"
    got = eq.equivalence(_outputs(speakers=tuple(speakers)), _outputs(speakers=tuple(swapped)))
    assert got["word_speakers"]["speaker_differs"] == 1 and not got["passes"]
    assert got["word_speakers"]["first_difference"] == {"word": "four", "at_s": 0.9, "reference": "A", "other": "B"}


def test_speaker_labels_are_compared_after_a_one_to_one_mapping() -> None:
    speakers = tuple("A" if i < 7 else "B" for i in range(12))
    renamed = tuple({"A": "SPEAKER_01", "B": "SPEAKER_00"}[s] for s in speakers)
    got = eq.equivalence(_outputs(speakers=speakers), _outputs(speakers=renamed))
    assert got["word_speakers"]["speaker_differs"] == 0 and got["passes"]
    merged = tuple("SPEAKER_00" for _ in speakers)  # one speaker for all: B's words cannot map to it too
    assert (
        eq.equivalence(_outputs(speakers=speakers), _outputs(speakers=merged))["word_speakers"]["speaker_differs"] == 5
    )


def test_a_changed_segment_fails_even_when_the_words_agree() -> None:
    other = _outputs()
    other["segments"] = [" ".join(WORDS[:6]), " ".join(WORDS[6:])]
    assert eq.equivalence(_outputs(), other)["segment_texts"]["differing"] == 2
    assert not eq.equivalence(_outputs(), other)["passes"]


def test_equivalence_fails_when_one_run_lacks_an_output_and_when_nothing_is_compared() -> None:
    ref = _outputs()
    other = {k: v for k, v in ref.items() if k != "turns"}
    got = eq.equivalence(ref, other)
    assert not got["passes"] and got["speaker_turns"] == {"missing_in": "other"}
    assert not eq.equivalence({}, {})["passes"]


def test_pick_levers_keeps_equivalent_faster_ones_and_the_fastest_of_a_group() -> None:
    trials = [
        {"lever": "emb64", "group": "emb", "passes": True, "reference_s": 20.0, "lever_s": 15.0},
        {"lever": "emb128", "group": "emb", "passes": True, "reference_s": 20.0, "lever_s": 12.0},
        {"lever": "fp16", "group": "prec", "passes": False, "reference_s": 20.0, "lever_s": 5.0},  # not equivalent
        {"lever": "tf32", "group": "prec", "passes": True, "reference_s": 20.0, "lever_s": 8.0},
        {"lever": "noise", "group": "n", "passes": True, "reference_s": 20.0, "lever_s": 19.8},  # under 3%
        {"lever": "broken", "group": "b", "passes": True, "reference_s": 20.0, "lever_s": None},
    ]
    assert eq.pick_levers(trials) == ["emb128", "tf32"]


def test_wer_zero_can_hide_a_raw_difference_and_says_so() -> None:
    got = eq.wer_between("hello, world", "hello world!")
    assert got["wer"] == 0 and got["identical"] is False
    assert eq.wer_between("same", "same")["identical"] is True


def test_levers_handed_over_lose_those_this_run_found_not_equivalent() -> None:
    trials = [{"lever": "asr_batch_32", "passes": False}, {"lever": "other", "passes": True}]
    assert eq.keep_given(["embedding_fp16", "asr_batch_32", "other"], trials) == ["embedding_fp16", "other"]
    assert eq.keep_given([], trials) == []


def test_a_transcript_with_wer_zero_but_other_punctuation_is_not_the_same_transcript() -> None:
    """What the H200 showed: CTranslate2 at batch 32 changed punctuation (and, with random weights, tokens that
    normalising drops) with WER 0; alignment reads the raw text, so the words moved."""
    got = eq.equivalence(_outputs(text=TEXT.replace("one", "one,")), _outputs(text=TEXT + "."))
    assert got["transcript"]["wer"] == 0 and got["transcript"]["identical"] is False
    assert not got["passes"]


def test_judge_re_reads_a_stored_block_from_its_measured_fields() -> None:
    stored = eq.equivalence(_outputs(), _outputs(text=TEXT + "!"))
    stored["passes"] = True  # what an older bar (WER alone) wrote
    assert eq.judge(stored) is False
    assert eq.judge(eq.equivalence(_outputs(), _outputs())) is True
    assert eq.judge({"thresholds": {}}) is False  # nothing compared
    assert eq.judge({"speaker_turns": {"missing_in": "other"}}) is False
    old = eq.equivalence(_outputs(), _outputs())
    del old["size"]  # a block written before #22 had no size check: nothing shows it was not empty
    assert eq.judge(old) is False

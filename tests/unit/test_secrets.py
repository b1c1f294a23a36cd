"""secrets: token values never leave in text; presence is reported by name only."""

from __future__ import annotations

from whisperx_matrix.secrets import MASK, redact, token_present

ENV = {
    "HF_TOKEN": "hf_abcdefSECRET123",
    "GITHUB_TOKEN": "ghs_0123456789",
    "SHORT_TOKEN": "ab",  # too short to mask safely
    "EMPTY_TOKEN": "",
    "PATH": "/usr/bin",  # not a token: never touched
    "TOKENIZER": "hf_abcdef",  # name does not end in _TOKEN
}


def test_redact_masks_hf_token_and_every_star_token() -> None:
    text = "auth hf_abcdefSECRET123 and ghs_0123456789 in /usr/bin, ab stays"
    out = redact(text, env=ENV)
    assert "SECRET" not in out and "ghs_" not in out
    assert out == f"auth {MASK} and {MASK} in /usr/bin, ab stays"


def test_redact_masks_the_longest_value_first() -> None:
    env = {"A_TOKEN": "abcd", "B_TOKEN": "abcdefgh"}
    assert redact("x abcdefgh y abcd", env=env) == f"x {MASK} y {MASK}"


def test_redact_without_tokens_is_identity() -> None:
    assert redact("nothing secret", env={"PATH": "/bin"}) == "nothing secret"


def test_token_present_names_only() -> None:
    found = token_present(env=ENV)
    assert found == {"EMPTY_TOKEN": False, "GITHUB_TOKEN": True, "HF_TOKEN": True, "SHORT_TOKEN": True}
    assert all(isinstance(v, bool) for v in found.values())
    assert token_present(env={}) == {"HF_TOKEN": False}

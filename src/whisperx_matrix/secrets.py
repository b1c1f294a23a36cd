"""Secrets in logs and reports: redact token values, and say which tokens are set without showing them.

CI gives HF_TOKEN to the one step that needs it; everything written under reports/ passes through
``redact`` first, so a traceback that echoes the environment never publishes a token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

MASK = "***"
# Shorter values would mask ordinary words and digits all over a log ("1", "true") and protect nothing.
MIN_SECRET_LEN = 4


def _is_token_name(name: str) -> bool:
    return name == "HF_TOKEN" or name.endswith("_TOKEN")


def secret_values(env: Mapping[str, str] = os.environ) -> list[str]:
    """The values to hide, longest first (so a token that contains another is masked whole)."""
    values = {v for k, v in env.items() if _is_token_name(k) and v and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(text: str, env: Mapping[str, str] = os.environ) -> str:
    """``text`` with the value of HF_TOKEN and of every ``*_TOKEN`` variable replaced by ``***``."""
    for value in secret_values(env):
        text = text.replace(value, MASK)
    return text


def token_present(env: Mapping[str, str] = os.environ) -> dict[str, bool]:
    """Which token variables are set (non-empty), by name only: safe to print or record."""
    names = {"HF_TOKEN", *(k for k in env if _is_token_name(k))}
    return {name: bool(env.get(name)) for name in sorted(names)}

"""Secrets: the one registry of strings that must never be shown, and the redaction of text.

The configuration registers every secret it reads (the access key secret, Redis credentials),
whether or not the file turns out valid; the log formatters, the reload problems, the debug probe
and the CLI redact through the same registry. A secret is replaced by `<secret>` raw and in the
spellings JSON and `repr` give it, so an escaped quote or backslash cannot hide it.

Redacting a short string would cut through ordinary words (a one-letter secret turns
`api.timeout` into `api.tim<secret>out`), so the configuration refuses secrets shorter than
`MIN_SECRET_LENGTH` instead (see `weak_secret`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

__all__ = [
    "MIN_SECRET_LENGTH",
    "PLACEHOLDER",
    "REGISTRY",
    "Secrets",
    "redact",
    "register_secret",
    "weak_secret",
]

PLACEHOLDER = "<secret>"
# The vendor issues 32-character secrets and Redis passwords are set by people; anything under
# 8 characters is a placeholder or a typo, and redacting it would mangle every message.
MIN_SECRET_LENGTH = 8


class Secrets:
    """A set of secrets and the redaction of text against it (thread-safe)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()
        self._seen: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Never show this string again.

        Strings shorter than MIN_SECRET_LENGTH are ignored: redacting them would mangle
        messages, and the configuration refuses them as secrets.
        """
        if len(secret) < MIN_SECRET_LENGTH:
            return
        forms = {
            secret,
            repr(secret)[1:-1],
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        }
        with self._lock:
            if secret in self._seen:
                return
            self._seen.add(secret)
            # Longest first, so a secret that contains another is replaced whole.
            self._forms = tuple(sorted(set(self._forms) | forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """The text with every known secret replaced by <secret>."""
        for form in self._forms:  # a tuple swapped whole under the lock: safe to read
            if form in text:
                text = text.replace(form, PLACEHOLDER)
        return text

    def redact_all(self, lines: Iterable[str]) -> list[str]:
        """Each line redacted."""
        return [self.redact(line) for line in lines]


REGISTRY = Secrets()


def register_secret(secret: str) -> None:
    """Register a secret with the process-wide registry."""
    REGISTRY.add(secret)


def redact(text: str) -> str:
    """The text with every secret of the process-wide registry replaced by <secret>."""
    return REGISTRY.redact(text)


def weak_secret(secret: str, vocabulary: Iterable[str] = ()) -> str | None:
    """Why a secret is too weak to be real and to be redacted safely, or None if it is fine.

    `vocabulary` holds words the exporter's own messages use (the configuration keys): a secret
    found inside one of them would be redacted out of every message that names that key.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        return (
            f"is shorter than {MIN_SECRET_LENGTH} characters, so it cannot be a real secret "
            "(a placeholder?)"
        )
    if any(secret in word for word in vocabulary):
        return "is a word of the configuration itself, not a real secret (a placeholder?)"
    return None

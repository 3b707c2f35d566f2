"""One dead-letter record for replay (file) and worker (topic): why, where from, and a
bounded excerpt of the raw input with its size and digest.

A dead letter is never bigger than ~12 KB whatever the input was (a 1 KB excerpt and a
500-character detail, at most 6 bytes each once JSON escapes control characters), so it
always fits the dead-letter file line and the broker's message size; the SHA-256 and size identify the
original for whoever must find it in the source.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson

DEAD_LETTER_VERSION = 1
EXCERPT_BYTES = 1024
DETAIL_CHARS = 500
KEY_CHARS = 256


@dataclass(slots=True)
class DeadLetter:
    reason: str                  # reason code (bad_timestamp, too_large, clock_skew, ...)
    detail: str                  # one line, bounded
    source: dict                 # {"line": n} or {"topic", "partition", "offset", "timestamp", "key"}
    size: int                    # bytes of the raw input
    sha256: str | None           # of the raw input; None when it was not held (too long a line)
    excerpt: str | None          # first EXCERPT_BYTES of the raw input, as text ...
    excerpt_b64: str | None      # ... or base64 when it is not UTF-8

    @classmethod
    def of(cls, reason: str, detail: str, source: dict, raw: bytes | None,
           size: int | None = None) -> "DeadLetter":
        """`raw` may be None (not held); `size` then says how big it was."""
        text = b64 = digest = None
        if raw is not None:
            digest = hashlib.sha256(raw).hexdigest()
            text, b64 = _excerpt(raw[:EXCERPT_BYTES])
        src = dict(source)
        if isinstance(src.get("key"), str) and len(src["key"]) > KEY_CHARS:
            src["key"] = src["key"][:KEY_CHARS] + "…"
        return cls(reason, _bounded(detail), src, len(raw) if size is None else size,
                   digest, text, b64)

    def to_dict(self) -> dict:
        out = {"version": DEAD_LETTER_VERSION, "reason": self.reason, "detail": self.detail,
               "source": self.source, "size": self.size, "sha256": self.sha256,
               "truncated": self.size > EXCERPT_BYTES}
        if self.excerpt_b64 is not None:
            out["excerpt_b64"] = self.excerpt_b64
        else:
            out["excerpt"] = self.excerpt
        return out

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())


def _excerpt(head: bytes) -> tuple[str | None, str | None]:
    """(text, None) when the head is UTF-8 (but for a character cut at its end), else
    (None, base64): never an empty text for bytes that are not empty."""
    for cut in range(min(4, len(head))):   # a multi-byte character may straddle the cut
        try:
            return head[:len(head) - cut].decode("utf-8"), None
        except UnicodeDecodeError:
            continue
    if not head:
        return "", None
    return None, base64.b64encode(head).decode()


def _bounded(detail: str) -> str:
    detail = " ".join(str(detail).split())
    return detail if len(detail) <= DETAIL_CHARS else detail[:DETAIL_CHARS] + "…"

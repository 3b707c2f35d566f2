"""The one dead-letter record (detector/deadletter.py): bounded whatever the input."""
from __future__ import annotations

import base64
import hashlib

import orjson

from straycode.detector.deadletter import EXCERPT_BYTES, DeadLetter


def test_a_huge_hostile_value_gives_a_small_record_that_identifies_it():
    raw = b"\x01" * 5_000_000                       # control characters: 6 bytes each in JSON
    letter = DeadLetter.of("too_large", "\n" * 10_000, {"topic": "t", "key": "k" * 100_000}, raw)
    data = letter.to_bytes()
    assert len(data) < 16_384
    record = orjson.loads(data)
    assert record["size"] == len(raw) and record["sha256"] == hashlib.sha256(raw).hexdigest()
    assert record["truncated"] and len(record["excerpt"]) == EXCERPT_BYTES
    assert "\n" not in record["detail"] and len(record["source"]["key"]) <= 257


def test_short_binary_values_keep_their_bytes():
    for raw in (b"\xff\x00", b"\xe2\x82", b"\x80"):
        record = DeadLetter.of("malformed_json", "x", {"line": 1}, raw).to_dict()
        assert base64.b64decode(record["excerpt_b64"]) == raw and "excerpt" not in record


def test_a_character_cut_by_the_excerpt_keeps_the_text():
    raw = b"a" * (EXCERPT_BYTES - 1) + "€".encode() + b"tail"
    record = DeadLetter.of("too_large", "x", {"line": 1}, raw).to_dict()
    assert record["excerpt"] == "a" * (EXCERPT_BYTES - 1)


def test_a_line_not_held_has_its_size_and_no_digest():
    record = DeadLetter.of("too_large", "x", {"line": 7}, None, size=3_000_000).to_dict()
    assert record == {"version": 1, "reason": "too_large", "detail": "x", "source": {"line": 7},
                      "size": 3_000_000, "sha256": None, "truncated": True, "excerpt": None}

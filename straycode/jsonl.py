"""Line-numbered JSONL input that survives anything, and dead-letter output.

A line longer than the limit is skipped without being held in memory whole, so one
corrupt gigabyte line cannot take the process down; it is reported like any bad line.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Iterator

from .detector.deadletter import DeadLetter


def open_input(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def read_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """Yield (line number, line bytes or None when too long, byte length) for non-blank lines."""
    number = 0
    while True:
        line = stream.readline(max_bytes + 2)
        if not line:
            return
        number += 1
        if len(line) >= max_bytes + 2:
            size = len(line)
            while not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
                if not line:
                    break
                size += len(line)
            yield number, None, size
            continue
        body = line.rstrip(b"\r\n")
        if body.strip():
            yield number, body, len(line)


class DeadLetters:
    """Where bad input goes: one :class:`DeadLetter` per line, counted per reason."""

    def __init__(self, path: str | Path | None):
        self.path = path
        self._out = open(path, "wb") if path else None
        self.counts: dict[str, int] = {}

    def put(self, letter: DeadLetter) -> None:
        self.counts[letter.reason] = self.counts.get(letter.reason, 0) + 1
        if self._out is not None:
            self._out.write(letter.to_bytes() + b"\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

"""Event-time watermark per input partition, for topics that are read at different speeds.

Logins and codes may travel on separate topics. The Detector would take the largest event
time it has seen as "now", so a codes partition read ahead of its logins partition would
decide codes as `login_missing` before their logins are read. Here the watermark of input
partition p is the largest event time seen on p's topics, held back to the last event time
read from any of p's topic-partitions that still has unread messages (a caught-up or empty
topic-partition does not hold anything back). Like a Flink watermark, but exact about lag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from straycode.detector.engine import Detector

NEVER = float("-inf")


@dataclass
class _TPClock:
    tp: object                     # the Faust TP (asked for its high watermark)
    last_t: float = NEVER          # largest event time read since assignment
    next_offset: int | None = None  # offset after the last message read


class PartitionClock:
    """Watermarks for the input topic-partitions of one worker.

    `highwater(tp)` -> end offset or None, `committed(tp)` -> next offset to read at
    assignment or None; both come from the Faust consumer."""

    def __init__(self, input_topics: Iterable[str], highwater: Callable, committed: Callable):
        self.input_topics = set(input_topics)
        self.highwater = highwater
        self.committed = committed
        self.tps: dict[tuple[str, int], _TPClock] = {}
        self._by_partition: dict[int, list[_TPClock]] = {}   # watermark() runs per event

    def _add(self, tp) -> _TPClock:
        clock = self.tps.get((tp.topic, tp.partition))
        if clock is None:
            clock = self.tps[(tp.topic, tp.partition)] = _TPClock(tp)
            self._by_partition.setdefault(tp.partition, []).append(clock)
        return clock

    def assign(self, tps: Iterable) -> None:
        for tp in tps:
            if tp.topic in self.input_topics:
                self._add(tp)

    def revoke(self, tps: Iterable) -> None:
        for tp in tps:
            clock = self.tps.pop((tp.topic, tp.partition), None)
            if clock is not None:
                self._by_partition[tp.partition].remove(clock)

    def seen(self, tp, offset: int, t: float | None) -> None:
        clock = self.tps.get((tp.topic, tp.partition)) or self._add(tp)
        clock.next_offset = offset + 1
        if t is not None and t > clock.last_t:
            clock.last_t = t

    def _lagging(self, clock: _TPClock) -> bool:
        end = self.highwater(clock.tp)
        if end is None:
            return True
        position = clock.next_offset
        if position is None:
            position = self.committed(clock.tp)
        return end > (position or 0)

    def watermark(self, partition: int) -> float:
        newest, held = NEVER, float("inf")
        for clock in self._by_partition.get(partition, ()):
            if clock.last_t > newest:
                newest = clock.last_t
            if clock.last_t < held and self._lagging(clock):
                held = clock.last_t
        return min(newest, held)

    def lag(self) -> dict[tuple[str, int], int]:
        out = {}
        for (topic, p), clock in self.tps.items():
            tp = clock.tp
            end = self.highwater(tp)
            position = clock.next_offset if clock.next_offset is not None else self.committed(tp)
            if end is not None:
                out[(topic, p)] = max(0, end - (position or 0))
        return out


class StreamDetector(Detector):
    """A Detector whose event-time clock is moved by the stream (see module doc), not by
    each event, so that decisions wait for lagging topics."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, external_clock=True, **kwargs)

    hold_until = Detector.move_clock

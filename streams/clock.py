"""Event time for topics that are read at different speeds: a watermark per input
partition, and a buffer that hands events to the Detector in event-time order.

Logins, codes and the other events may travel on separate topics. Read as they come, a
codes partition read ahead of its logins partition would have codes decided as
`login_missing`, and a code_verified read before its code_issued would be lost. Here the
watermark of input partition p is the largest event time seen on p's topics, held back to
the last event time read from any of p's topic-partitions that still has unread messages
(a caught-up or empty topic-partition does not hold anything back): like a Flink
watermark, but exact about lag. "Caught up" needs a high watermark learned no earlier than
the fetch of the newest events read on the partition's other topics: a high watermark is
only as fresh as the fetch response that carried it, and a code_verified fetched after an
older look at the codes topic must not pass its code_issued that arrived in between.
Events wait in the ReorderBuffer until the watermark passes them, so the Detector sees
each partition's events in time order, as in replay.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable, Iterable


NEVER = float("-inf")


@dataclass
class _TPClock:
    tp: object                     # the Faust TP (asked for its high watermark)
    last_t: float = NEVER          # largest event time read since assignment
    next_offset: int | None = None  # offset after the last message read
    read_poll: float = NEVER       # when the consumer had last fetched it, as of that read


class PartitionClock:
    """Watermarks for the input topic-partitions of one worker.

    `highwater(tp)` -> end offset or None, `committed(tp)` -> next offset to read at
    assignment or None, `polled(tp)` -> when the high watermark was last learned (ms) or
    None; all come from the Faust consumer."""

    def __init__(self, input_topics: Iterable[str], highwater: Callable, committed: Callable,
                 polled: Callable = lambda tp: None):
        self.input_topics = set(input_topics)
        self.highwater = highwater
        self.committed = committed
        self.polled = polled
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
        polled = self.polled(tp)
        if polled is not None:
            clock.read_poll = polled

    def _unread(self, clock: _TPClock) -> int | None:
        """Messages on it not read yet; None while its end is unknown (never fetched)."""
        end = self.highwater(clock.tp)
        if end is None:
            return None
        position = clock.next_offset
        if position is None:
            position = self.committed(clock.tp)
        return max(0, end - (position or 0))

    def _lagging(self, clock: _TPClock, fresh_since: float) -> bool:
        """Unread messages on it, or no look at its end since `fresh_since`."""
        unread = self._unread(clock)
        if unread is None or unread > 0:
            return True
        polled = self.polled(clock.tp)
        return polled is not None and polled < fresh_since

    def watermark(self, partition: int) -> float:
        clocks = self._by_partition.get(partition, ())
        newest, held = NEVER, float("inf")
        fresh_since = max((clock.read_poll for clock in clocks), default=NEVER)
        for clock in clocks:
            if clock.last_t > newest:
                newest = clock.last_t
            if clock.last_t < held and self._lagging(clock, fresh_since):
                held = clock.last_t
        return min(newest, held)

    def newest(self, partition: int) -> float:
        """The largest event time read on input partition `partition` (any of its topics)
        since assignment: the clock an event's time is checked against
        (detector/timecheck.py); NEVER before anything was read."""
        return max((clock.last_t for clock in self._by_partition.get(partition, ())),
                   default=NEVER)

    def lag(self) -> dict[tuple[str, int], int]:
        out = {}
        for key, clock in self.tps.items():
            unread = self._unread(clock)
            if unread is not None:
                out[key] = unread
        return out


class ReorderBuffer:
    """Per input partition, the events read but not yet handed to the Detector, released in
    event-time order once the partition's watermark has passed them.

    Logins, codes and the rest may travel on topics read at different speeds: a user's
    code_verified can be read before its code_issued, a login days ahead of its codes
    during a backlog. The Detector, like `straycode replay`, expects a user's events in
    time order; the watermark guarantees that nothing earlier than it is still unread (up
    to events a producer writes late, which the core handles as late). `max_events` bounds
    memory: past it the oldest events are released early (counted as forced)."""

    def __init__(self, max_events: int = 50_000):
        self.max_events = max_events
        self.heaps: dict[int, list] = {}
        self.size = 0
        self.forced = 0
        self._seq = 0

    def push(self, partition: int, t: float, item) -> None:
        self._seq += 1
        heapq.heappush(self.heaps.setdefault(partition, []), (t, self._seq, item))
        self.size += 1

    def release(self, partition: int, watermark: float) -> list:
        """Items of `partition` with time <= watermark (and, while the buffer is over its
        bound, the oldest ones beyond it), oldest first."""
        heap = self.heaps.get(partition)
        out = []
        while heap and (heap[0][0] <= watermark or self.size > self.max_events):
            if heap[0][0] > watermark:
                self.forced += 1
            out.append(heapq.heappop(heap)[2])
            self.size -= 1
        return out

    def due(self, partition: int, watermark: float) -> bool:
        heap = self.heaps.get(partition)
        return bool(heap) and heap[0][0] <= watermark

    def drop(self, partition: int) -> int:
        """Forget a revoked partition's items (never acknowledged: its new owner reads
        them again from the committed offset)."""
        n = len(self.heaps.pop(partition, ()))
        self.size -= n
        return n

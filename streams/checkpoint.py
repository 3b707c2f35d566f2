"""Incremental state checkpoints: changed states written a bounded slice at a time, oldest
change first, and the input they reflect acknowledged once every state it changed is
written.

A table write is a changelog record (serialise, RocksDB put, producer, broker; for the
network view also every other worker's standby copy). An agent keeps its changed states
in memory and holds the input messages they reflect (their reference count is raised, so
Faust does not acknowledge them, and the worker's consumer commits nothing past them).

Every state in memory reflects only events whose outputs are already on the broker, so
any batch end is a safe moment to write it. At each batch end the agent writes a slice:
the states changed at least `interval_s` ago (so that repeated changes of a busy key
coalesce into one write per interval), oldest first, as many as spreads the writing of
every unwritten state evenly over one interval (unwritten x time since the last slice /
interval): a steady trickle instead of a burst of every changed key at once, which
would stall the agent (and every event behind it) for as long. States changed more than
two intervals ago are written whatever that bound (the slices keep up under sustained
load), and when `max_held` messages are held, everything is written.

Which messages may be acknowledged is tracked by **generation**: each batch is one; a
changed key remembers the generation of its first unwritten change, and held messages are
grouped by the generation of their batch. The messages of generation g are acknowledged
once no unwritten key has a first change at or before g: every state they changed has
been written since (a later write of a key includes all its earlier changes). Keys are
kept in order of their first unwritten change, so that is the first key's generation.

A crash re-delivers the unacknowledged messages to the written states: outputs are
repeated (same ids), never lost. Kafka Streams does the same (state stores are flushed at
each commit, `commit.interval.ms`, 30 s by default).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, NamedTuple


class Dirty(NamedTuple):
    """One changed, not yet written key of a table partition."""
    partition: int
    key: Hashable


@dataclass(slots=True)
class Change:
    """When a dirty key was first changed since its last write."""
    generation: int
    since: float                 # monotonic seconds


@dataclass(slots=True)
class Generation:
    """The messages held by one batch."""
    started: float
    events: list = field(default_factory=list)


class Checkpoint:
    """Changed keys not yet written, and the held input messages waiting for them."""

    def __init__(self, interval_s: float, max_held: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.max_held = max_held
        self.clock = clock
        self.generation = 0
        self.now = self.sliced = clock()
        self.changes: dict[Dirty, Change] = {}        # oldest first change first
        self.held: dict[int, Generation] = {}         # generation -> its held messages
        self.held_count = 0
        self.anchors: dict[int, object] = {}  # partition -> one of its events (write anchor)

    # ------------------------------------------------------------------ recording
    def next_generation(self) -> None:
        """Start of a batch."""
        self.generation += 1
        self.now = self.clock()

    def changed(self, partition: int, key: Hashable) -> None:
        """`key` of `partition` changed in this batch (write it, in a later slice)."""
        dirty = Dirty(partition, key)
        if dirty not in self.changes:
            self.changes[dirty] = Change(self.generation, self.now)

    def hold(self, event) -> None:
        """`event` was handled (its outputs are on the broker): acknowledge it once every
        state changed up to now is written. Its message's reference count must have been
        raised by the caller."""
        held = self.held.get(self.generation)
        if held is None:
            held = self.held[self.generation] = Generation(self.now)
        held.events.append(event)
        self.held_count += 1
        self.anchors[event.message.partition] = event

    def touch(self, event) -> None:
        """`event` (e.g. a tick) may have changed its partition's state: use it as the
        partition's write anchor (table writes go by the current event's partition)."""
        self.anchors[event.message.partition] = event

    def anchor(self, partition: int):
        return self.anchors.get(partition)

    # ------------------------------------------------------------------ writing
    def slice(self) -> list[Dirty]:
        """The keys to write now, oldest change first (see the module docstring)."""
        if self.interval_s <= 0 or self.held_count >= self.max_held:
            return list(self.changes)
        now = self.clock()
        elapsed, self.sliced = min(now - self.sliced, self.interval_s), now
        bound = math.ceil(len(self.changes) * elapsed / self.interval_s)
        eligible, overdue = now - self.interval_s, now - 2 * self.interval_s
        out = []
        for dirty, change in self.changes.items():
            if change.since > eligible or (len(out) >= bound and change.since > overdue):
                break
            out.append(dirty)
        return out

    def written(self, keys: Iterable[Dirty]) -> list:
        """`keys` are written: the held events that no unwritten key holds back any more
        (to acknowledge now)."""
        for dirty in keys:
            self.changes.pop(dirty, None)
        return self.release()

    def release(self) -> list:
        """Take the held events of the generations before the oldest unwritten change."""
        first = next(iter(self.changes.values()), None)
        limit = self.generation + 1 if first is None else first.generation
        out: list = []
        for generation in list(self.held):
            if generation >= limit:
                break
            out += self.held.pop(generation).events
        self.held_count -= len(out)
        return out

    def overdue(self) -> set[int]:
        """Partitions with a change unwritten for longer than the interval, or holding
        messages that could be acknowledged for as long: the timer wakes them (an agent runs
        only when a message comes)."""
        cutoff = self.clock() - self.interval_s
        out = set()
        for dirty, change in self.changes.items():
            if change.since > cutoff:
                break
            out.add(dirty.partition)
        first = next(iter(self.changes.values()), None)
        for generation, held in self.held.items():
            if held.started > cutoff or (first is not None and generation >= first.generation):
                break
            out.update(event.message.partition for event in held.events)
        return out

    # ------------------------------------------------------------------ partitions
    def drop(self, partitions: Iterable[int]) -> int:
        """Forget the unwritten keys and held events of these partitions (revoked or
        stopped): never acknowledged, so they are read again from the committed offset.
        Returns how many held events were dropped."""
        partitions = set(partitions)
        for dirty in [d for d in self.changes if d.partition in partitions]:
            del self.changes[dirty]
        dropped = 0
        for generation, held in list(self.held.items()):
            kept = [e for e in held.events if e.message.partition not in partitions]
            dropped += len(held.events) - len(kept)
            if kept:
                held.events = kept
            else:
                del self.held[generation]
        self.held_count -= dropped
        for p in partitions:
            self.anchors.pop(p, None)
        return dropped


def by_partition(keys: Iterable[Dirty]) -> dict[int, list]:
    """A slice's keys grouped by partition (writes go by an event of their partition)."""
    out: dict[int, list] = {}
    for dirty in keys:
        out.setdefault(dirty.partition, []).append(dirty.key)
    return out


def checkpoint_of(kcfg) -> Checkpoint:
    """The checkpoint an agent gets from the `kafka` settings."""
    return Checkpoint(float(kcfg["checkpoint_interval_s"]))

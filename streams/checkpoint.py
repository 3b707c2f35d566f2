"""State checkpoints: state written, and the input it reflects acknowledged, together and
at most every `kafka.checkpoint_interval_s` rather than per batch.

A table write is a changelog record (serialise, RocksDB put, producer, broker; for the
network view also every other worker's standby copy). Between checkpoints an agent keeps
its changed states in memory and holds the input messages they reflect (their reference
count is raised, so Faust does not acknowledge them, and the worker's consumer commits
nothing past them). At a checkpoint it writes each changed key once and then acknowledges
the held messages. A crash between checkpoints re-delivers the messages to the state of
the last checkpoint: outputs are repeated (same ids), never lost. Kafka Streams does the
same (state stores are flushed at each commit, `commit.interval.ms`, 30 s by default).
"""
from __future__ import annotations

import time
from typing import Iterable


class Checkpoint:
    """Input messages handled since the last checkpoint, with one of their events per
    partition (a table write goes to the changelog partition of Faust's current event)."""

    def __init__(self, interval_s: float, max_held: int = 100_000):
        self.interval_s = interval_s
        self.max_held = max_held
        self.held: list = []                 # events whose messages wait for the checkpoint
        self.anchors: dict[int, object] = {}  # partition -> one of its held events
        self.last = time.monotonic()

    def hold(self, event) -> None:
        """`event` was handled (its outputs are on the broker): acknowledge it at the next
        checkpoint. Its message's reference count must have been raised by the caller."""
        self.held.append(event)
        self.anchors[event.message.partition] = event

    def touch(self, event) -> None:
        """`event`'s partition has changed state (e.g. codes decided on a tick) even if no
        message of it is held: write it at the next checkpoint, with `event` as anchor."""
        self.anchors.setdefault(event.message.partition, event)

    def anchor(self, partition: int):
        return self.anchors.get(partition)

    def due(self) -> bool:
        return bool(self.anchors) and (time.monotonic() - self.last >= self.interval_s
                                    or len(self.held) >= self.max_held)

    def overdue(self) -> bool:
        """Held for longer than the interval: the agent should be woken to checkpoint."""
        return bool(self.anchors) and time.monotonic() - self.last >= self.interval_s

    def take(self) -> list:
        """The held events (to acknowledge now that their state is written); starts the
        next interval."""
        held, self.held = self.held, []
        self.anchors.clear()
        self.last = time.monotonic()
        return held

    def drop(self, partitions: Iterable[int]) -> int:
        """Forget the held events of these partitions (revoked or stopped): never
        acknowledged, so they are read again from the committed offset."""
        partitions = set(partitions)
        kept = [e for e in self.held if e.message.partition not in partitions]
        dropped = len(self.held) - len(kept)
        self.held = kept
        for p in partitions:
            self.anchors.pop(p, None)
        return dropped

"""The cross-user network view: operations shipped by the user agents (NetworkOpsShipper),
folded by the owner of each network key (NetworkAgent) into the `network-view` GlobalTable.

A key's owner is the worker that owns its network-ops partition: the only writer of that
key, so counts of users handled by different workers add up. The owner keeps the states
of its keys in memory and writes a changed key at most once per checkpoint interval, a slice
at each batch end (streams/checkpoint.py), not once per operation message: every view
write is read by every worker (GlobalTable).
"""
from __future__ import annotations

import logging
import time

import orjson

from straycode.detector.state import NetworkState, network_op_from_wire

from .checkpoint import Checkpoint, by_partition
from .faust_compat import Batching, set_current_event, take_batches
from .metrics import Metrics
from .publisher import Publisher
from .tables import NetworkStore
from .topics import expected_partition

log = logging.getLogger("straycode.streams")


class NetworkOpsShipper:
    """User side: ships the operations the NetworkStore recorded, every ~50 ms (and on the
    timer), one message per network-ops partition holding {key: [ops]} for the keys that
    partition owns, so a busy worker sends a few messages rather than one per event.
    Cross-user counts are an approximation by design (docs/streams.md): operations that
    cannot be sent are counted and logged, and do not stop the stream."""

    EVERY_S = 0.05

    def __init__(self, store: NetworkStore, topic, partitions: int, metrics: Metrics):
        self.store = store
        self.topic = topic
        self.partitions = partitions
        self.metrics = metrics
        self.sent_at = 0.0

    async def maybe_send(self) -> None:
        if time.monotonic() - self.sent_at >= self.EVERY_S:
            await self.send()

    async def send(self) -> None:
        self.sent_at = time.monotonic()
        by_partition: dict[int, dict[str, list]] = {}
        for key, ops in self.store.take_outbox().items():
            p = expected_partition(key.encode(), self.partitions)
            by_partition.setdefault(p, {})[key] = ops
        for p, batch in by_partition.items():
            try:
                await self.topic.send(value=orjson.dumps(batch), partition=p, force=True)
            except Exception as exc:
                self.metrics.publish_errors.labels("network_ops").inc()
                log.error("network operations for network-ops partition %d not sent: %r",
                          p, exc)


class NetworkAgent:
    """Owner of network-ops partitions: folds every worker's operations on the keys of its
    partitions into one NetworkState per key, written to the view by checkpoint slices: a
    message of operations is acknowledged once every key it changed is written."""

    def __init__(self, view, topic, publisher: Publisher, metrics: Metrics, partitions: int,
                 batching: Batching, checkpoint: Checkpoint, max_cached: int = 200_000):
        self.view = view
        self.topic = topic                      # network-ops (woken by an empty message)
        self.publisher = publisher
        self.metrics = metrics
        self.partitions = partitions
        self.batching = batching
        self.checkpoint = checkpoint
        self.states: dict[str, NetworkState] = {}        # owned keys, latest first-read order
        self.max_cached = max_cached

    async def run(self, stream) -> None:
        async for events in take_batches(stream, self.batching):
            self.checkpoint.next_generation()
            for event in events:
                await self.fold(event)
            self.write_checkpoint()

    async def fold(self, event) -> None:
        msg = event.message
        try:
            batch = orjson.loads(msg.value)
            if not isinstance(batch, dict):
                raise ValueError("expected an object {network key: [operations]}")
            decoded = {key: [network_op_from_wire(op) for op in ops]
                       for key, ops in batch.items()}
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            failed = await self.publisher.deliver(
                [self.publisher.dead_letter(msg, "malformed_network_ops", str(exc))])
            if failed:
                # internal operations, not input events: counted and logged, not held
                log.error("the dead letter of network-ops message %s/%d@%d could not be "
                          "sent: %s", msg.topic, msg.partition, msg.offset, failed[0][1])
            return
        for key, ops in decoded.items():          # every operation decoded: none is refused
            state = self.state(key)
            for op in ops:
                state.apply(op)
            self.states[key] = state
            self.checkpoint.changed(msg.partition, key)
        msg.incref()                      # acknowledged when its changes are written
        self.checkpoint.hold(event)

    def state(self, key: str) -> NetworkState:
        """The latest state of an owned key: this agent is its only writer, so its cached
        object is the latest; else the view's."""
        cached = self.states.get(key)
        if cached is not None:
            return cached
        raw = self.view.get(key.encode())
        return NetworkState.from_bytes(raw) if raw is not None else NetworkState()

    def write_checkpoint(self) -> int:
        """Write a slice of the changed keys (oldest change first), then acknowledge the
        messages whose keys are all written."""
        keys = self.checkpoint.slice()
        for p, names in by_partition(keys).items():
            set_current_event(self.checkpoint.anchor(p))     # the view's changelog partition
            for key in names:
                self.view[key.encode()] = self.states[key].to_bytes()
        consumer = self.topic.app.consumer
        for event in self.checkpoint.written(keys):
            event.message.ack(consumer)
        self.metrics.checkpointed("network-view", len(keys), self.checkpoint)
        self._trim()
        return len(keys)

    def _trim(self) -> None:
        """Forget the oldest-read clean states past `max_cached` (an unwritten one stays:
        the view does not have it yet)."""
        excess = len(self.states) - self.max_cached
        if excess <= 0:
            return
        dirty = {d.key for d in self.checkpoint.changes}
        clean = []
        for key in self.states:
            if key not in dirty:
                clean.append(key)
                if len(clean) == excess:
                    break
        for key in clean:
            del self.states[key]

    def overdue_partitions(self) -> list[int]:
        """Partitions holding changes for longer than the checkpoint interval: the timer
        wakes them with an empty message (the agent only runs when a message comes)."""
        return sorted(self.checkpoint.overdue())

    def revoke(self, partitions: set[int]) -> None:
        """Forget owned keys of revoked network-ops partitions (their held messages are
        read again by the new owner, from the committed offset, on the written view)."""
        self.checkpoint.drop(partitions)
        for key in [k for k in self.states
                    if expected_partition(k.encode(), self.partitions) in partitions]:
            del self.states[key]


"""A Faust consumer that never commits an offset past a message still being handled.

faust-streaming (0.15) commits one past the first run of consecutive acknowledged offsets,
and checks that this run starts at the committed position only when something was
committed before (a committed 0 counts as nothing), and then off by one: a single message
still held at the head is skipped. straycode holds messages on purpose (the reorder buffer
waits for the watermark) while later messages of the same topic-partition are acknowledged
(earlier in event time, dead letters, re-keyed), so a worker killed after such a commit
lost the held messages for good. It was seen as a restarted worker that re-read almost
every login and code but only 18 of its code_verified events.

Here the rule is the at-least-once one, kept per topic-partition from what was actually
handed to the streams: commit the smallest offset delivered and not yet acknowledged, or
one past the last delivered when all of them are."""
from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, Message


class ExactCommitConsumer(AIOKafkaConsumer):
    """The aiokafka-driver consumer with a commit position that cannot skip a message, and
    that tells how fresh a partition's high watermark is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight: dict[TP, dict[int, Message]] = {}   # delivered, not yet acked
        self._next_offset: dict[TP, int] = {}                # one past the last delivered
        self._streams_callback = self.callback
        self.callback = self._deliver

    async def _deliver(self, message: Message) -> None:
        """Record the message as in flight, then hand it to the streams (Faust's conductor)."""
        if self.app.topics.acks_enabled_for(message.topic):
            self.track(message)
        await self._streams_callback(message)

    def track(self, message: Message) -> None:
        """Count `message` as handed to the streams and not yet acknowledged."""
        tp = message.tp
        self._in_flight.setdefault(tp, {})[message.offset] = message
        self._next_offset[tp] = message.offset + 1

    def ack(self, message: Message) -> bool:
        done = super().ack(message)
        in_flight = self._in_flight.get(message.tp)
        if in_flight is not None and in_flight.get(message.offset) is message:
            del in_flight[message.offset]
        return done

    def commit_position(self, tp: TP) -> int | None:
        """The offset a commit may name for `tp` now: None until something was delivered."""
        in_flight = self._in_flight.get(tp)
        if in_flight:
            return min(in_flight)
        return self._next_offset.get(tp)

    def _new_offset(self, tp: TP) -> int | None:
        position = self.commit_position(tp)
        if position is not None:   # forget Faust's own bookkeeping below it (it would grow)
            acked = self._acked[tp]
            below = [o for o in acked if o < position]
            if below:
                self._acked_index[tp].difference_update(below)
                acked[:] = [o for o in acked if o >= position]
            gap = self._gap.get(tp)
            if gap:
                gap.chop(0, position)
        return position

    def highwater_polled_at(self, tp: TP) -> int | None:
        """When (ms) the high watermark of `tp` was last learned: it is as old as the fetch
        response that carried it (aiokafka's last poll of the partition)."""
        return self._thread._ensure_consumer().last_poll_timestamp(tp)

    def _forget(self, tps) -> None:
        for tp in tps:
            self._in_flight.pop(tp, None)
            self._next_offset.pop(tp, None)

    async def perform_seek(self) -> None:
        """Every assigned partition goes back to its committed offset: what was in flight
        will be delivered again."""
        self._forget(list(self._in_flight) + list(self._next_offset))
        await super().perform_seek()

    async def seek(self, partition: TP, offset: int) -> None:
        self._forget([partition])
        await super().seek(partition, offset)

    async def on_partitions_revoked(self, revoked) -> None:
        self._forget(revoked)
        await super().on_partitions_revoked(revoked)


class App(faust.App):
    """faust.App whose consumer is the ExactCommitConsumer."""

    def _new_transport(self):
        transport = super()._new_transport()
        transport.Consumer = ExactCommitConsumer
        return transport

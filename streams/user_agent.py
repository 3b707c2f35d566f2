"""The user agent: input messages (key = user_id) -> reorder buffer -> one Detector per
input partition -> alerts / scores; state in the `users` table, written by incremental
checkpoints (streams/checkpoint.py).

No detection logic lives here (detector/), nor any Faust internals (faust_compat.py)."""
from __future__ import annotations

import logging
import time
from typing import Mapping

import orjson

from straycode.detector.alerts import Alert
from straycode.detector.contract import ContractError, Event, decode_line
from straycode.detector.engine import Detector
from straycode.detector.ocsf import render_alert
from straycode.detector.timecheck import SKEW_REASON, TimeBounds

from .checkpoint import by_partition, checkpoint_of
from .clock import PartitionClock, ReorderBuffer
from .faust_compat import Batching, set_current_event, take_batches
from .metrics import Metrics
from .network_agent import NetworkOpsShipper
from .publisher import Outbound, Publisher
from .tables import NetworkStore, UserStore, scan_users
from .topics import Topics, expected_partition

log = logging.getLogger("straycode.streams")


class UserAgent:
    """Scores the input partitions this worker owns."""

    def __init__(self, app, settings: Mapping, topics: Topics, users, networks: NetworkStore,
                 clock: PartitionClock, publisher: Publisher, shipper: NetworkOpsShipper,
                 metrics: Metrics, make_detector):
        kcfg = settings["kafka"]
        self.app = app
        self.topics = topics
        self.ticks_topic = kcfg["topics"]["ticks"]
        self.alert_format = settings["alerts"]["format"]
        self.max_bytes = int(settings["input"]["max_line_bytes"])
        self.emit_scores = bool(kcfg.get("emit_scores"))
        self.partitions = int(kcfg["partitions"])
        self.batching = Batching.from_settings(kcfg)
        self.time_bounds = TimeBounds.from_settings(settings["input"])
        self.users = users
        self.networks = networks
        self.clock = clock
        self.publisher = publisher
        self.shipper = shipper
        self.metrics = metrics
        self.make_detector = make_detector           # (partition, UserStore) -> Detector
        self.reorder = ReorderBuffer(int(kcfg["reorder_max_events"]))
        self.checkpoint = checkpoint_of(kcfg)
        self.detectors: dict[int, Detector] = {}
        self.stopped: dict[int, str] = {}          # input partition -> why it was stopped

    # ------------------------------------------------------------------ the agent
    async def run(self, stream) -> None:
        """Events are handled in batches (up to `kafka.batch_max_events`, or what arrived
        within `kafka.batch_within_s`): one broker acknowledgement wait per batch. A batch
        is acked (made committable) only after this loop body returned, and the loop goes
        on after an error: an unexpected one therefore stops the batch's partitions (their
        messages held, not committed) instead of crashing the agent or committing past
        them."""
        async for events in take_batches(stream, self.batching):
            try:
                await self.handle_batch(events)
            except Exception as exc:
                log.exception("handling a batch of %d messages failed", len(events))
                for p in sorted({e.message.partition for e in events
                                 if e.message.topic != self.ticks_topic}):
                    if p not in self.stopped:
                        self.stop_partition(p, f"handling a batch failed: {exc!r}")
                for event in events:
                    msg = event.message
                    if not msg.acked and msg.topic != self.ticks_topic:
                        msg.incref()               # the batch's ack must not release it

    async def handle_batch(self, events: list) -> None:
        """Admit the batch's messages to the reorder buffer, hand what the watermark has
        passed to the detectors, publish; then write a checkpoint slice and acknowledge
        the held messages whose states are all written.

        A buffered message is acknowledged (made committable) only once it was handled and
        every state it changed written: its reference count is raised when it is buffered,
        so the ack that take_batches gives every message of a batch does not release it.

        Every output (alert, score, dead letter, re-keyed event) must be on the broker
        before the input it stands for is acknowledged. An output that cannot be sent after
        `kafka.publish_attempts` stops its input partition (see stop_partition): its
        messages are held from there on, never acknowledged, so never committed past."""
        self.metrics.batch_size.observe(len(events))
        outbox: list[Outbound] = []
        handled: list = []                         # buffered messages handled in this batch
        at_once: list = []                         # messages acknowledged by this batch alone
        woken: dict[int, object] = {}              # partition -> one of its events (or tick)
        read: dict[str, int] = {}                  # topic -> input messages in the batch
        self.networks.begin_batch()
        self.checkpoint.next_generation()
        for event in events:
            msg = event.message
            if msg.partition in self.stopped:
                if msg.topic != self.ticks_topic:
                    msg.incref()                   # held: its partition is stopped
                continue
            if msg.topic == self.ticks_topic:
                woken[msg.partition] = event
                continue
            read[msg.topic] = read.get(msg.topic, 0) + 1
            ev = self.admit(msg, outbox)
            if ev is None:
                at_once.append(msg)
            else:
                msg.incref()
                self.reorder.push(msg.partition, ev.t, (ev, event))
                woken[msg.partition] = event
        for p in woken:
            self.release(p, handled, outbox)
        for topic, n in read.items():
            self.metrics.events_in.labels(topic).inc(n)
        await self.shipper.maybe_send()
        failed = await self.publisher.publish(outbox)
        for p, error in failed.items():
            self.stop_partition(
                p, f"output not sent after {self.publisher.attempts} attempts: {error}")
        for msg in at_once:
            if msg.partition in failed:
                msg.incref()                       # its dead letter / re-send did not go out
        self.metrics.reorder_size.set(self.reorder.size)
        checkpoint = self.checkpoint
        for p, event in woken.items():             # ticks change state too (codes decided)
            det = self.detectors.get(p)
            if det is not None:
                checkpoint.touch(event)
                for user_id in det.users.take_fresh():
                    checkpoint.changed(p, user_id)
                self.metrics.watermark.labels(str(p)).set(max(det.watermark, 0))
        for event in handled:
            if event.message.partition not in self.stopped:
                checkpoint.hold(event)
        self.write_checkpoint()

    def write_checkpoint(self) -> None:
        """Write a slice of the changed user states (checkpoint.slice(): oldest change
        first, each user once), then acknowledge the messages whose states are all
        written: their outputs are already on the broker."""
        keys = self.checkpoint.slice()
        written = 0
        for p, user_ids in by_partition(keys).items():
            det = self.detectors.get(p)
            if det is not None:
                set_current_event(self.checkpoint.anchor(p))   # table writes go by it
                written += det.users.write(user_ids)
        consumer = self.app.consumer
        for event in self.checkpoint.written(keys):
            event.message.ack(consumer)
        self.metrics.checkpointed("users", written, self.checkpoint)

    def admit(self, msg, outbox: list) -> Event | None:
        """Decode one input message; None when it went elsewhere (dead letter, re-keyed):
        what it must send is added to `outbox`."""
        try:
            ev = decode_line(msg.value if msg.value is not None else b"", self.max_bytes)
        except ContractError as exc:
            self.clock.seen(msg.tp, msg.offset, None)
            outbox.append(self.publisher.dead_letter(msg, exc.reason, exc.detail))
            return None
        key = ev.user_id.encode()
        if msg.key != key or msg.partition != expected_partition(key, self.partitions):
            # keyed wrongly (or by another partitioner): move it to where its user lives
            self.clock.seen(msg.tp, msg.offset, None)
            outbox.append(Outbound(self.topics.events, key, msg.value,
                                   expected_partition(key, self.partitions), msg.partition,
                                   ("rekeyed",)))
            return None
        problem = self.time_bounds.problem(ev.t, self.clock.newest(msg.partition), msg.timestamp)
        if problem is not None:
            # read (its offset counts), but its time must not move the partition's clock
            self.clock.seen(msg.tp, msg.offset, None)
            outbox.append(self.publisher.dead_letter(msg, SKEW_REASON, problem))
            return None
        self.clock.seen(msg.tp, msg.offset, ev.t)
        return ev

    def release(self, partition: int, handled: list, outbox: list) -> None:
        """Process the partition's buffered events that the watermark has passed, in event
        time order, then decide the codes whose window closed by the watermark; their
        outputs go to `outbox`. State changes stay in memory until the next checkpoint."""
        watermark = self.clock.watermark(partition)
        det = self.detector(partition)
        outputs: list = []
        forced = self.reorder.forced
        for ev, event in self.reorder.release(partition, watermark):
            set_current_event(event)               # table reads go by its partition
            handled.append(event)
            started = time.perf_counter()
            out, exc = self.attempt(det, det.process, ev)
            if isinstance(exc, ContractError):     # the core refused it, before any change
                outbox.append(self.publisher.dead_letter(event.message, exc.reason, exc.detail))
                continue
            if exc is not None:
                outbox.append(self.publisher.dead_letter(event.message, "processing_error",
                                                         repr(exc)))
                continue
            outputs += out
            self.metrics.latency.observe(time.perf_counter() - started)
        if self.reorder.forced > forced:
            self.metrics.reorder_forced.inc(self.reorder.forced - forced)
        if watermark > det.watermark:
            out, exc = self.attempt(det, det.advance, watermark)
            if exc is not None:
                log.error("deciding the codes due by the watermark of partition %d failed: %r",
                          partition, exc)
            outputs += out
        for out in outputs:
            message = self.outbound(partition, out)
            if message is None:
                self.metrics.scored.inc()          # decided; scores are not published
            else:
                outbox.append(message)

    def outbound(self, partition: int, out) -> Outbound | None:
        """An Alert or ScoreRecord of input partition `partition` as a message to send
        (None: a score, and scores are not published)."""
        key = out.user_id.encode()
        if isinstance(out, Alert):
            value = orjson.dumps(render_alert(out.to_dict(), self.alert_format))
            return Outbound(self.topics.alerts, key, value, None, partition,
                            ("alerts", out.kind, out.severity))
        if self.emit_scores:
            return Outbound(self.topics.scores, key, orjson.dumps(out.to_dict()), None,
                            partition, ("scored",))
        return None

    def attempt(self, det: Detector, call, arg) -> tuple[list, Exception | None]:
        """(outputs, None), or ([], the error) with the call undone: a core bug must not
        stop the stream. Undone means the states it read are put back and their pending
        codes re-armed (codes it had already decided, of any user, are decided again later
        under the same alert ids, not lost), and its network operations are dropped.
        (The shared Population may keep what the call taught it: it is re-derivable.)"""
        det.users.begin()
        self.networks.begin()
        try:
            return call(arg), None
        except Exception as exc:
            for user_id in det.users.rollback():
                state = det.users.get(user_id)
                if state is not None and state.pending:
                    det.rebuild_index(user_id, state)
            self.networks.rollback()
            return [], exc

    # ------------------------------------------------------------------ partitions
    def detector(self, partition: int) -> Detector:
        det = self.detectors.get(partition)
        if det is None:
            det = self.build({partition})[partition]
        return det

    def build(self, partitions: set[int]) -> dict[int, Detector]:
        """Fresh detectors for these partitions, with their stored pending codes re-armed."""
        for p in partitions:
            self.detectors[p] = self.make_detector(p, UserStore(self.users, p))
        for p, user_id, state in scan_users(self.users, partitions):
            if state.pending:
                self.detectors[p].rebuild_index(user_id, state)
        return self.detectors

    def assign(self, partitions: set[int]) -> None:
        """After recovery: detectors for exactly the owned (and not stopped) partitions."""
        gone = set(self.detectors) - partitions
        self.checkpoint.drop(gone)                 # their unwritten states go with them
        for p in gone:
            del self.detectors[p]
        missing = partitions - set(self.detectors) - set(self.stopped)
        if missing:
            self.build(missing)

    def revoke(self, partitions: set[int]) -> None:
        """Their unwritten state and held messages are forgotten: whoever gets them reads
        them again from the committed offset, on the last checkpoint's state."""
        self.checkpoint.drop(partitions)
        for p in partitions:
            self.detectors.pop(p, None)
            self.reorder.drop(p)
            if self.stopped.pop(p, None) is not None:
                log.warning("stopped input partition %d revoked: it will be read again "
                            "from its committed offset", p)
        self.metrics.stopped.set(len(self.stopped))

    def stop_partition(self, partition: int, reason: str) -> None:
        """Input partition `partition` cannot go on (an output could not be sent): stop it
        instead of skipping its events. Its messages are held from here on (never
        acknowledged, so the committed offset stays before the first one not done), its
        fetching is paused, its detector (ahead of its stored state) is dropped, and
        /healthz says why until the partition is reassigned (a rebalance or a restart
        reads it again from the committed offset)."""
        reason = reason[:500]
        self.stopped[partition] = reason
        self.metrics.partition_stops.inc()
        self.metrics.stopped.set(len(self.stopped))
        self.detectors.pop(partition, None)
        held = self.reorder.drop(partition) + self.checkpoint.drop({partition})
        log.error("input partition %d stopped (%d events held, nothing committed past "
                  "them): %s", partition, held, reason)
        try:
            tps = {tp for tp in self.app.consumer.assignment()
                   if tp.partition == partition and tp.topic in self.clock.input_topics}
            self.app.consumer.pause_partitions(tps)
        except Exception as exc:                    # no consumer (tests) or not assigned
            log.warning("could not pause the fetching of partition %d: %r", partition, exc)

    async def wake(self) -> None:
        """Timer: tick the partitions whose watermark moved without an event (a lagging
        topic caught up) or whose buffered events became due, and those holding state
        changes for longer than the checkpoint interval (the agent runs only on messages)."""
        due = self.checkpoint.overdue()
        for p, det in list(self.detectors.items()):
            watermark = self.clock.watermark(p)
            if p in due or watermark > det.watermark or self.reorder.due(p, watermark):
                try:
                    await self.topics.ticks.send(value=b"tick", partition=p)
                except Exception as exc:            # the next timer tries again
                    self.metrics.publish_errors.labels("ticks").inc()
                    log.error("tick for partition %d not sent: %r", p, exc)

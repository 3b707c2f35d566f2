"""The Faust wiring: decode -> Detector -> publish. No detection logic lives here.

    inputs (logins, codes, events, ticks; key = user_id)
      -> user agent: one Detector per input partition, state in the `users` table
           -> alerts / scores topics
           -> network-ops topic (key = network)  -> network agent -> `network-view`
                                                                     GlobalTable (read by
                                                                     every user agent)
      -> dead-letters topic (undecodable or contract-breaking messages, with reason)
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Mapping

import faust
import orjson
from faust.streams import _current_event
from kafka.partitioner.default import murmur2

from straycode.detector.alerts import Alert
from straycode.detector.contract import ContractError, Event, decode_line
from straycode.detector.deadletter import KEY_CHARS, DeadLetter
from straycode.detector.engine import Detector
from straycode.detector.enrich import Enricher
from straycode.detector.ocsf import render_alert
from straycode.detector.population import Population
from straycode.detector.state import NetworkState
from straycode.detector.timecheck import SKEW_REASON, TimeBounds
from straycode.components import build_enricher, load_learned
from straycode.settings import detector_settings

from .clock import PartitionClock, ReorderBuffer
from .metrics import Metrics, install_pages
from .tables import NetworkStore, UserStore, apply_ops, network_view, scan_users, user_table
from .topics import declare_topics, input_topic_names

log = logging.getLogger("straycode.streams")


def set_current_event(event) -> None:
    """Make `event` Faust's current event: a table picks the changelog partition and the
    RocksDB shard of a read or write from it, and a batch holds several partitions."""
    _current_event.set(weakref.ref(event))


@functools.lru_cache(maxsize=65_536)
def expected_partition(key: bytes, partitions: int) -> int:
    """The Kafka default (murmur2) partition of a key: where all of a user's events and
    state must live for the per-partition table to be complete. (Cached: murmur2 is pure
    Python and runs for every event.)"""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def dead_letter_record(message, reason: str, detail: str) -> DeadLetter:
    """The dead letter of an input message: where it came from (topic, partition, offset,
    timestamp, key) and a bounded excerpt of its value with its size and SHA-256, so that
    it always fits the broker's message size whatever the message was."""
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    source = {"topic": message.topic, "partition": message.partition,
              "offset": message.offset, "timestamp": message.timestamp, "key": key}
    return DeadLetter.of(reason, detail, source, message.value if message.value is not None
                         else b"")


@dataclass(slots=True)
class Outbound:
    """One message a batch must have on the broker before the input it stands for may be
    acknowledged (committed): an alert, a score, a dead letter or a re-keyed event."""
    topic: object                  # the faust Topic to send to
    key: bytes | None
    value: bytes
    partition: int | None          # Kafka partition to send to (None: by key)
    source: int                    # input partition it comes from: stopped if it cannot be sent
    metric: tuple                  # what to count once it is sent: (name, *labels)


class Pipeline:
    """Registers the agents, tables, timer and web pages of one straycode worker."""

    def __init__(self, app: faust.App, settings: Mapping, enricher: Enricher | None = None):
        kcfg = settings["kafka"]
        self.app = app
        self.cfg = detector_settings(settings)
        self.alert_format = settings["alerts"]["format"]
        self.max_bytes = int(settings["input"]["max_line_bytes"])
        self.emit_scores = bool(kcfg.get("emit_scores"))
        self.partitions = int(kcfg["partitions"])
        self.topics = declare_topics(app, kcfg)
        self.ticks_topic = kcfg["topics"]["ticks"]
        self.users = user_table(app, kcfg)
        self.networks = NetworkStore(network_view(app, kcfg))
        self.enricher = enricher or build_enricher(settings)
        self.population = Population()           # re-derivable: shared, not persisted
        self.learned = load_learned(settings)    # optional model blended into scores
        self.detectors: dict[int, Detector] = {}
        self.clock = PartitionClock(input_topic_names(kcfg), self._ask_consumer("highwater"),
                                    self._committed, self._ask_consumer("highwater_polled_at"))
        self.metrics = Metrics()
        self.reorder = ReorderBuffer(int(kcfg["reorder_max_events"]))
        self.batch_max = int(kcfg["batch_max_events"])
        self.batch_within_s = float(kcfg["batch_within_s"])
        self.time_bounds = TimeBounds.from_settings(settings["input"])
        self.publish_attempts = max(1, int(kcfg["publish_attempts"]))
        self.publish_backoff_s = float(kcfg["publish_backoff_s"])
        self.stopped: dict[int, str] = {}          # input partition -> why it was stopped
        self.recovered = False
        self._ops_sent_at = 0.0

        self.user_agent = app.agent(self.topics.inputs, name="straycode-users",
                                    concurrency=1)(self.score_users)
        self.network_agent = app.agent(self.topics.network_ops, name="straycode-networks",
                                       concurrency=1)(self.count_networks)
        app.timer(float(kcfg["advance_interval_s"]))(self.on_timer)
        app.task(self.declare_outputs)
        self.users.on_recover(self.on_recovered)
        app.on_partitions_revoked.connect(self.on_revoked)
        install_pages(app, self.metrics, self.health)

    # ------------------------------------------------------------------ agents
    async def score_users(self, stream):
        """Events are handled in batches (up to `kafka.batch_max_events`, or what arrived
        within `kafka.batch_within_s`): one broker acknowledgement wait and one table
        write per user per batch instead of per event. Faust acks (commits) a batch only
        after this loop body returned, and acks it even when the body raised: an
        unexpected error therefore stops the batch's partitions (their messages held, not
        committed) instead of crashing the agent and committing past them."""
        async for events in stream.take_events(self.batch_max, within=self.batch_within_s):
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
                        msg.incref()               # take_events' ack must not release it

    async def handle_batch(self, events: list) -> None:
        """Admit the batch's messages to the reorder buffer, hand what the watermark has
        passed to the detectors, publish, write state, then acknowledge.

        A buffered message is acknowledged (made committable) only once it was handled and
        its state written: its reference count is raised when it is buffered, so the ack
        that Faust's take_events gives every message of a batch does not release it.

        Every output (alert, score, dead letter, re-keyed event) must be on the broker
        before the input it stands for is acknowledged. An output that cannot be sent after
        `kafka.publish_attempts` stops its input partition (see stop_partition): its
        messages are held from there on, never acknowledged, so never committed past."""
        self.metrics.batch_size.observe(len(events))
        outbox: list[Outbound] = []
        handled: list = []                         # buffered messages handled in this batch
        at_once: list = []                         # messages acknowledged by this batch alone
        flush_with: dict[int, object] = {}         # partition -> one of its events
        read: dict[str, int] = {}                  # topic -> input messages in the batch
        self.networks.begin_batch()
        for event in events:
            msg = event.message
            if msg.partition in self.stopped:
                if msg.topic != self.ticks_topic:
                    msg.incref()                   # held: its partition is stopped
                continue
            if msg.topic == self.ticks_topic:
                flush_with[msg.partition] = event
                continue
            read[msg.topic] = read.get(msg.topic, 0) + 1
            ev = self.admit(msg, outbox)
            if ev is None:
                at_once.append(msg)
            else:
                msg.incref()
                self.reorder.push(msg.partition, ev.t, (ev, event))
                flush_with[msg.partition] = event
        for p in flush_with:
            self.release(p, handled, outbox)
        for topic, n in read.items():
            self.metrics.events_in.labels(topic).inc(n)
        failed = await self.publish(outbox)
        for p, error in failed.items():
            self.stop_partition(
                p, f"output not sent after {self.publish_attempts} attempts: {error}")
        for msg in at_once:
            if msg.partition in failed:
                msg.incref()                       # its dead letter / re-send did not go out
        self.metrics.reorder_size.set(self.reorder.size)
        for p, event in flush_with.items():
            det = self.detectors.get(p)
            if det is not None:
                set_current_event(event)           # table writes go by its partition
                det.users.flush()
                self.metrics.watermark.labels(str(p)).set(max(det.watermark, 0))
        consumer = self.app.consumer
        for event in handled:
            if event.message.partition not in failed:
                event.message.ack(consumer)

    def admit(self, msg, outbox: list) -> Event | None:
        """Decode one input message; None when it went elsewhere (dead letter, re-keyed):
        what it must send is added to `outbox`."""
        try:
            ev = decode_line(msg.value if msg.value is not None else b"", self.max_bytes)
        except ContractError as exc:
            self.clock.seen(msg.tp, msg.offset, None)
            outbox.append(self.dead_letter(msg, exc.reason, exc.detail))
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
            outbox.append(self.dead_letter(msg, SKEW_REASON, problem))
            return None
        self.clock.seen(msg.tp, msg.offset, ev.t)
        return ev

    def release(self, partition: int, handled: list, outbox: list) -> None:
        """Process the partition's buffered events that the watermark has passed, in event
        time order, then decide the codes whose window closed by the watermark; their
        outputs go to `outbox`. State changes stay buffered until the batch is flushed."""
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
                outbox.append(self.dead_letter(event.message, exc.reason, exc.detail))
                continue
            if exc is not None:
                outbox.append(self.dead_letter(event.message, "processing_error", repr(exc)))
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

    async def count_networks(self, stream):
        """Owner of a network-ops partition: folds every worker's operations on the keys of
        that partition into one NetworkState per key (the only writer of those keys)."""
        async for event in stream.events():
            msg = event.message
            try:
                batch = orjson.loads(msg.value)
                if not isinstance(batch, dict):
                    raise ValueError("expected an object {network key: [operations]}")
            except (orjson.JSONDecodeError, ValueError) as exc:
                failed = await self.deliver(
                    [self.dead_letter(msg, "malformed_network_ops", str(exc))])
                if failed:
                    # internal operations, not input events: counted and logged, not held
                    log.error("the dead letter of network-ops message %s/%d@%d could not be "
                              "sent: %s", msg.topic, msg.partition, msg.offset, failed[0][1])
                continue
            view = self.networks.view
            for key, ops in batch.items():
                raw = view.get(key.encode())
                state = NetworkState.from_bytes(raw) if raw is not None else NetworkState()
                view[key.encode()] = apply_ops(state, ops).to_bytes()

    # ------------------------------------------------------------------ helpers
    async def declare_outputs(self) -> None:
        """Create the output topics at start, so readers can subscribe before any output."""
        for topic in (self.topics.alerts, self.topics.scores, self.topics.dead_letters):
            await topic.maybe_declare()

    def detector(self, partition: int) -> Detector:
        det = self.detectors.get(partition)
        if det is None:
            det = self._build({partition})[partition]
        return det

    def _build(self, partitions: set[int]) -> dict[int, Detector]:
        """Fresh detectors for these partitions, with their stored pending codes re-armed."""
        for p in partitions:
            self.detectors[p] = Detector(self.cfg, self.enricher, UserStore(self.users, p),
                                               self.networks, self.population, self.learned)
        for p, user_id, state in scan_users(self.users, partitions):
            if state.pending:
                self.detectors[p].rebuild_index(user_id, state)
        return self.detectors

    async def publish(self, outbox: list[Outbound]) -> dict[int, str]:
        """Send the batch's outputs and wait for the broker to hold every one before the
        caller writes state and acknowledges input, so that a crash can repeat an output
        but never lose it. Returns {input partition: why} for the partitions whose outputs
        could not be sent after every attempt."""
        if time.monotonic() - self._ops_sent_at >= self.OPS_EVERY_S:
            await self.send_network_ops()
        if not outbox:
            return {}
        started = time.perf_counter()
        failed = await self.deliver(outbox)
        self.metrics.ack_wait.observe(time.perf_counter() - started)
        reasons: dict[int, str] = {}
        for out, error in failed:
            reasons.setdefault(out.source, error)
        return reasons

    async def deliver(self, outbox: list[Outbound]) -> list[tuple[Outbound, str]]:
        """Send every message and wait for the broker's acknowledgements; what failed is
        sent again (`kafka.publish_attempts` in all, `kafka.publish_backoff_s` doubling
        between them). Returns (message, last error) for what never got through."""
        pending = outbox
        for attempt in range(1, self.publish_attempts + 1):
            failed: list[tuple[Outbound, str]] = []
            waits: list[tuple[Outbound, object]] = []
            for out in pending:
                try:
                    waits.append((out, await out.topic.send(
                        key=out.key, value=out.value, partition=out.partition, force=True)))
                except Exception as exc:             # refused before it was queued
                    failed.append((out, repr(exc)))
            results = await asyncio.gather(*(wait for _out, wait in waits),
                                           return_exceptions=True)
            for (out, _wait), result in zip(waits, results):
                if isinstance(result, BaseException):
                    failed.append((out, repr(result)))
                else:
                    self.count(out)
            for out, _error in failed:
                self.metrics.publish_errors.labels(out.metric[0]).inc()
            if not failed or attempt == self.publish_attempts:
                return failed
            delay = min(self.publish_backoff_s * 2 ** (attempt - 1), self.PUBLISH_BACKOFF_MAX_S)
            log.warning("%d output(s) not sent (attempt %d of %d, again in %.2f s): %s",
                        len(failed), attempt, self.publish_attempts, delay, failed[0][1])
            await asyncio.sleep(delay)
            pending = [out for out, _error in failed]
        return []

    PUBLISH_BACKOFF_MAX_S = 5.0

    def count(self, out: Outbound) -> None:
        name, *labels = out.metric
        if name == "alerts":
            self.metrics.alerts.labels(*labels).inc()
        elif name == "scored":
            self.metrics.scored.inc()
        elif name == "dead_letters":
            self.metrics.dead_letters.labels(*labels).inc()

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
        held = self.reorder.drop(partition)         # they stay unacknowledged
        log.error("input partition %d stopped (%d buffered events held, nothing committed "
                  "past them): %s", partition, held, reason)
        try:
            tps = {tp for tp in self.app.consumer.assignment()
                   if tp.partition == partition and tp.topic in self.clock.input_topics}
            self.app.consumer.pause_partitions(tps)
        except Exception as exc:                    # no consumer (tests) or not assigned
            log.warning("could not pause the fetching of partition %d: %r", partition, exc)

    OPS_EVERY_S = 0.05

    async def send_network_ops(self) -> None:
        """Ship the recorded network operations every ~50 ms, one message per network-ops
        partition holding {key: [ops]} for the keys that partition owns (cross-user counts
        lag by that much more; a busy worker sends a few messages, not one per event).
        Cross-user counts are an approximation by design (see docs/streams.md): operations
        that cannot be sent are counted and logged, and do not stop the stream."""
        self._ops_sent_at = time.monotonic()
        by_partition: dict[int, dict[str, list]] = {}
        for key, ops in self.networks.take_outbox().items():
            p = expected_partition(key.encode(), self.partitions)
            by_partition.setdefault(p, {})[key] = ops
        for p, batch in by_partition.items():
            try:
                await self.topics.network_ops.send(value=orjson.dumps(batch), partition=p,
                                                   force=True)
            except Exception as exc:
                self.metrics.publish_errors.labels("network_ops").inc()
                log.error("network operations for network-ops partition %d not sent: %r",
                          p, exc)

    def dead_letter(self, msg, reason: str, detail: str) -> Outbound:
        key = msg.key if msg.key is None or len(msg.key) <= KEY_CHARS else msg.key[:KEY_CHARS]
        return Outbound(self.topics.dead_letters, key,
                        dead_letter_record(msg, reason, detail).to_bytes(), None, msg.partition,
                        ("dead_letters", reason))

    async def on_timer(self) -> None:
        """Wake partitions whose watermark moved without an event (a lagging topic caught
        up), and refresh the lag gauges."""
        await self.send_network_ops()
        for p, det in list(self.detectors.items()):
            watermark = self.clock.watermark(p)
            if watermark > det.watermark or self.reorder.due(p, watermark):
                try:
                    await self.topics.ticks.send(value=b"tick", partition=p)
                except Exception as exc:            # the next timer tries again
                    self.metrics.publish_errors.labels("ticks").inc()
                    log.error("tick for partition %d not sent: %r", p, exc)
        for (topic, p), lag in self.clock.lag().items():
            self.metrics.lag.labels(topic, str(p)).set(lag)

    def _assigned_input_tps(self) -> set:
        return {tp for tp in self.app.consumer.assignment() if tp.topic in self.clock.input_topics}

    async def on_recovered(self) -> None:
        tps = self._assigned_input_tps()
        self.clock.assign(tps)
        wanted = {tp.partition for tp in tps}
        for p in set(self.detectors) - wanted:
            del self.detectors[p]
        missing = wanted - set(self.detectors) - set(self.stopped)
        if missing:
            self._build(missing)
        self.recovered = True

    async def on_revoked(self, app, revoked, **kwargs) -> None:
        self.clock.revoke(revoked)
        for tp in revoked:
            if tp.topic in self.clock.input_topics:
                self.detectors.pop(tp.partition, None)
                self.reorder.drop(tp.partition)
                # its held messages are forgotten: whoever gets it reads them again
                if self.stopped.pop(tp.partition, None) is not None:
                    log.warning("stopped input partition %d revoked: it will be read again "
                                "from its committed offset", tp.partition)
        self.metrics.stopped.set(len(self.stopped))

    def _ask_consumer(self, method: str):
        """tp -> consumer.<method>(tp), or None while the consumer cannot tell (not started,
        partition not assigned)."""
        def ask(tp):
            try:
                return getattr(self.app.consumer, method)(tp)
            except Exception:
                return None
        return ask

    def _committed(self, tp) -> int | None:
        # Faust keeps the committed position per partition; no public accessor exists.
        return getattr(self.app.consumer, "_committed_offset", {}).get(tp)

    def health(self) -> dict:
        return {"ok": self.recovered and not self.app.rebalancing and not self.stopped,
                "recovered": self.recovered, "rebalancing": bool(self.app.rebalancing),
                "stopped": {p: why for p, why in sorted(self.stopped.items())},
                "partitions": sorted(self.detectors),
                "buffered": self.reorder.size,
                "watermarks": {p: self.clock.watermark(p) for p in sorted(self.detectors)},
                "uptime_s": round(time.time() - self.metrics.started, 1)}

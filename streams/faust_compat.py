"""Every use of faust-streaming's and aiokafka's private API in straycode, in one place.

straycode needs six things the public API does not offer:

1. the consumer's long-poll wait (`fetch_max_wait_ms`), which Faust hard-codes to 1.5 s:
   on Tansu 0.6 a fetch is answered only when it expires, so every hop would cost that long;
2. a commit position that never skips a message still being handled (ExactCommitConsumer,
   below): Faust's own rule does, and the reorder buffer holds messages on purpose;
3. when a partition's high watermark was learned (aiokafka's `last_poll_timestamp`, behind
   Faust's consumer thread), for the watermark rule of streams/clock.py;
4. setting Faust's "current event" (a table picks the changelog partition of a write from
   it; one batch holds several partitions), and reading the committed offset of a partition;
5. handing a fetched message to the streams without Faust's four tasks per message
   (EagerDelivery, below): the benchmark measures what it saves (docs/streams.md);
6. an agent's input in batches read straight from its channel's queue (take_batches),
   without Faust's stream machinery per message.

These overrides were written against faust-streaming 0.15 and aiokafka 0.14. `check_versions`
runs when an app is built and refuses any other version with one line, instead of letting
an override silently miss (e.g. a renamed `_new_offset` would bring Faust's skipping commit
rule back). The consumer changes are scoped to the app: its transport builds our consumer
class, nothing is patched into the aiokafka or Faust modules.
"""
from __future__ import annotations

import asyncio
import weakref
from importlib import metadata
from typing import Any, Mapping, NamedTuple

import faust
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from mode.services import WaitResults

from straycode.settings import ConfigError

SUPPORTED = {"faust-streaming": "0.15.", "aiokafka": "0.14."}


class IncompatibleVersion(ConfigError):
    """The installed faust-streaming / aiokafka is not the one these overrides were written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Raise IncompatibleVersion (one line) unless the installed versions are supported."""
    for package, prefix in SUPPORTED.items():
        if installed is not None:
            version = installed.get(package)
        else:
            try:
                version = metadata.version(package)
            except metadata.PackageNotFoundError:
                version = None
        if version is None or not version.startswith(prefix):
            raise IncompatibleVersion(
                f"{package} {version or 'is not installed'}: straycode.streams needs "
                f"{package} {prefix}x (streams/faust_compat.py overrides its internals)")


# ------------------------------------------------------------------ 4. small accessors
def set_current_event(event) -> None:
    """Make `event` Faust's current event: a table picks the changelog partition and the
    RocksDB shard of a read or write from it, and a batch holds several partitions."""
    _current_event.set(weakref.ref(event))


def committed_offset(consumer, tp: TP) -> int | None:
    """The offset Faust last committed (or found committed) for `tp`; None when unknown."""
    return getattr(consumer, "_committed_offset", {}).get(tp)


# ------------------------------------------------------------------ 1. fetch wait
class FetchWaitConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the app's fetch wait instead of the hard-coded 1.5 s."""

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait:
            consumer._fetch_max_wait_ms = int(wait)    # read by start(), not yet called
        return consumer


class Consumer(driver.Consumer):
    """Faust's aiokafka consumer with the fetch wait of its app."""

    def _new_consumer_thread(self):
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def highwater_polled_at(self, tp: TP) -> int | None:
        """When (ms) the high watermark of `tp` was last learned: it is as old as the fetch
        response that carried it (aiokafka's last poll of the partition)."""
        return self._thread._ensure_consumer().last_poll_timestamp(tp)


# ------------------------------------------------------------------ 5. eager delivery
_FLOW_WAIT = asyncio.Event.wait.__code__          # faust's Consumer.suspend_flow is one
HELD_POLL_S = 0.05                # fetch poll while a partition's stream buffer is full


class EagerDelivery:
    """Consumer mixin: each fetched message goes to the streams without four new tasks.

    faust-streaming's drain loop (`Consumer._drain_messages`) delivers every message as
    `await self.wait_first(callback(message), self.suspend_flow.wait())`, and mode's
    `wait_first` wraps each of these two, plus the service's `stopped` and `crashed`
    events, in a task, waits on all four and cancels the three losers: per message. A
    delivery almost never has to wait (it puts the message in a stream's buffer), so
    here it runs eagerly: its first step runs at once and, when it finished there, no
    task is made. Only a delivery that must wait (a full stream buffer, a held lock) goes
    on as Faust's own, in a task raced against the flow being suspended (a rebalance), so
    a rebalance never waits behind a full buffer, as before. Flow already suspended, or
    the service stopping: Faust's own path. (Faust's delivery path sets no context
    variable, so running its first step in the drain loop's task changes nothing there.)

    With it, a short fetch poll while a stream buffer is full (`_wait_next_records`).
    Off with `kafka.eager_delivery: false`; bench/streams_bench.py measures the no-op
    reference agent both ways."""

    async def _wait_next_records(self, timeout: float):
        """Faust's fetch step, with a short poll while a partition is held back because its
        stream buffer is over 80% full. The drain loop asks for records of the other
        (active) partitions with a fixed 1 s timeout; when those have none, it waited out
        that second however soon the agents drained the held buffers (eager delivery
        fills them faster than Faust's own did: seen as one-second stalls in a backlog).
        A short poll lets it look again for resumed partitions; nothing is cancelled."""
        if self._buffered_partitions:
            timeout = min(timeout, HELD_POLL_S)
        return await super()._wait_next_records(timeout)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if (len(coros) != 2 or timeout is not None
                or getattr(coros[1], "cr_code", None) is not _FLOW_WAIT
                or not asyncio.iscoroutine(coros[0])
                or self.suspend_flow.is_set() or self.should_stop):
            return await super().wait_first(*coros, timeout=timeout)
        deliver, flow = coros
        try:
            step = deliver.send(None)
        except StopIteration as done:
            flow.close()
            return WaitResults([deliver], [done.value], False)
        except BaseException:
            flow.close()
            raise
        return await super().wait_first(_resume(deliver, step), flow)


async def _resume(coro, step):
    """Go on with coroutine `coro`, which suspended yielding `step` (an asyncio future, or
    None for a bare yield), as the task this runs in, the way an asyncio Task drives a
    coroutine: the coroutine reads a finished future's outcome itself; a cancellation of
    this task cancels the future it waits on or, if there is none, is thrown into it."""
    while True:
        error = None
        try:
            if step is None:
                await asyncio.sleep(0)
            else:
                step._asyncio_future_blocking = False     # as Task.__step: ours to await
                await step
        except BaseException as exc:                       # noqa: B036 - relayed below
            error = exc
        try:
            if error is not None and (step is None or not step.done()):
                step = coro.throw(error)
            else:
                step = coro.send(None)
        except StopIteration as done:
            return done.value


# ------------------------------------------------------------------ 2. exact commits
class ExactCommitConsumer(Consumer):
    """A consumer that never commits an offset past a message still being handled.

    faust-streaming (0.15) commits one past the first run of consecutive acknowledged
    offsets, and checks that this run starts at the committed position only when something
    was committed before (a committed 0 counts as nothing), and then off by one: a single
    message still held at the head is skipped. straycode holds messages on purpose (the
    reorder buffer waits for the watermark, state is written at checkpoints) while later
    messages of the same topic-partition are acknowledged (earlier in event time, dead
    letters, re-keyed), so a worker killed after such a commit lost the held messages for
    good. It was seen as a restarted worker that re-read almost every login and code but
    only 18 of its code_verified events.

    Here the rule is the at-least-once one, kept per topic-partition from what was
    actually handed to the streams: commit the smallest offset delivered and not yet
    acknowledged, or one past the last delivered when all of them are."""

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


class EagerConsumer(EagerDelivery, Consumer):
    """Faust's commit rule, eager delivery (the benchmark's reference agent)."""


class EagerExactCommitConsumer(EagerDelivery, ExactCommitConsumer):
    """The worker's consumer."""


CONSUMERS = {(True, True): EagerExactCommitConsumer, (True, False): ExactCommitConsumer,
             (False, True): EagerConsumer, (False, False): Consumer}


class StreamsApp(faust.App):
    """faust.App whose transport builds our consumer: the ExactCommitConsumer (or, for the
    benchmark's reference agent, Faust's own commit rule) with the app's fetch wait, and
    with eager delivery unless `eager_delivery=False`.

    Checks the installed faust-streaming / aiokafka versions first."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None,
                 exact_commit: bool = True, eager_delivery: bool = True,
                 **kwargs: Any) -> None:
        check_versions()
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer_class = CONSUMERS[exact_commit, eager_delivery]
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        transport = super()._new_transport()
        if not isinstance(transport, driver.Transport):
            raise ConfigError(f"straycode.streams needs the aiokafka transport, not {transport!r}")
        transport.Consumer = self._consumer_class
        return transport


# ------------------------------------------------------------------ 6. batches
class Batching(NamedTuple):
    """How an agent takes its input: up to `max_events` per batch, or what arrived within
    `within_s` of its first event; `direct` (see take_batches) or Faust's take_events."""
    max_events: int
    within_s: float
    direct: bool = True

    @classmethod
    def from_settings(cls, kcfg: Mapping) -> "Batching":
        """`kafka.batch_max_events`, `kafka.batch_within_s`, `kafka.direct_batches`."""
        return cls(int(kcfg["batch_max_events"]), float(kcfg["batch_within_s"]),
                   bool(kcfg["direct_batches"]))


async def take_batches(stream, batching: Batching):
    """An agent's input in batches: lists of up to `batching.max_events` events, or what
    arrived within `batching.within_s` seconds of a batch's first event. The body of the
    `async for` runs between yields; a batch's events are acknowledged (each one's
    reference released, as Faust's `take_events` does) once the body is done with it.

    `direct=False` is Faust's own `stream.take_events(max_events, within=within_s)`.
    Direct (the default, `kafka.direct_batches`) reads the agent's channel queue itself:
    Faust's stream hands over one message at a time (a yield to the event loop, a queue
    get, a processor coroutine and an async-generator step per message, then a
    per-message ack with its sensor calls); the benchmark measures what that costs
    (docs/streams.md, "Direct batches"). What that path does per message and matters here
    is kept: an error thrown into the channel is raised; a message fetched before the
    current consumer generation (a rebalance since) or while the flow is suspended is
    dropped unacknowledged, as Faust's stream iterator drops it (the next owner reads it
    again from the committed offset); a message of an acked topic is counted as
    unacknowledged by the consumer until its ack. Not kept: Faust's stream sensors (its
    monitor's per-stream event counts; straycode's /metrics counts events itself). And
    unlike `take_events`, a batch whose body did not finish (the agent stopped, or the
    body raised out of the loop) is not acknowledged: what it held is read again."""
    max_, within = batching.max_events, batching.within_s
    if not batching.direct:
        async for events in stream.take_events(max_, within=within):
            yield events
        return
    app = stream.app
    queue = aiter(stream.channel).queue       # subscribes, as Stream.__aiter__ does
    acking = app.topics._acking_topics
    flow = app.flow_control
    loop = asyncio.get_running_loop()
    try:
        while not stream.should_stop:
            taken = [await queue.get()]
            deadline = loop.time() + within
            while len(taken) < max_:
                if queue.empty():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        async with asyncio.timeout(left):
                            taken.append(await queue.get())
                    except TimeoutError:
                        break
                else:                  # (not empty with nothing queued: an error, raised)
                    for _ in range(max(1, min(queue.qsize(), max_ - len(taken)))):
                        taken.append(queue.get_nowait())
            events = _admit(app, acking, flow, taken)    # checked as the batch goes out
            if not events:
                continue
            yield events
            consumer = app.consumer
            for event in events:
                event.message.ack(consumer)
    except StopAsyncIteration:        # the channel was closed (the app is stopping)
        return


def _admit(app, acking, flow, events: list) -> list:
    """The events of a batch that Faust's stream iterator would hand to an agent (see
    take_batches), checked when the batch is complete (a rebalance while it was being
    filled drops what came before it); messages of acked topics counted as
    unacknowledged."""
    generation = app.consumer_generation_id
    active = flow.is_active()
    unacked = app.consumer._unacked_messages
    out = []
    for event in events:
        message = event.message
        if not active or message.generation_id != generation:
            continue
        if message.topic in acking and not message.tracked:
            message.tracked = True
            unacked.add(message)
        out.append(event)
    return out

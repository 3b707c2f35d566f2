"""Eager delivery: the worker's consumer hands a fetched message to the streams without
Faust's four tasks per message, and behaves as Faust's own delivery otherwise.

faust-streaming's drain loop delivers each message as
`await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())`;
these tests make that very call on the real consumer object of a worker app, with
`kafka.eager_delivery` on and off (no broker needed: nothing here talks to one), on the
consumer's own event loop, and count the tasks the loop was asked to create."""
from __future__ import annotations

import asyncio
import time

import pytest
from faust.types.tuples import ConsumerMessage

from straycode.settings import load_settings
from straycode.streams.app import create_app
from straycode.streams.faust_compat import EagerDelivery, EagerExactCommitConsumer
from streams_helpers import worker_consumer

TOPIC = "straycode.events"


def make_consumer(tmp_path, eager: bool, streams):
    consumer = worker_consumer(tmp_path, TOPIC, streams,
                               STRAYCODE__KAFKA__EAGER_DELIVERY=str(eager).lower())
    assert isinstance(consumer, EagerDelivery) is eager
    return consumer


def run_on(consumer, coro):
    """Run `coro` on the consumer's own loop (mode's wait_first makes its tasks there)."""
    return consumer.loop.run_until_complete(coro)


def message(offset: int) -> ConsumerMessage:
    return ConsumerMessage(TOPIC, 0, offset, time.time(), 0, None, b"k", b"v", b"")


async def drain_one(consumer, msg):
    """What Consumer._drain_messages does with one message, counting the tasks made."""
    loop = asyncio.get_running_loop()
    made = []

    def factory(loop, coro, **kwargs):
        made.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)
    loop.set_task_factory(factory)
    try:
        result = await consumer.wait_first(consumer.callback(msg), consumer.suspend_flow.wait())
    finally:
        loop.set_task_factory(None)
    return result, made


def test_worker_consumer_is_eager_by_default(tmp_path):
    app = create_app(load_settings(env={"STRAYCODE__KAFKA__STORE": "memory://"}),
                     datadir=str(tmp_path / "d"))
    assert type(app.consumer) is EagerExactCommitConsumer


@pytest.mark.parametrize("eager", [True, False])
def test_a_delivery_that_does_not_wait_is_delivered_and_tracked(tmp_path, eager):
    delivered = []

    async def streams(msg):
        delivered.append(msg.offset)
        return "buffered"
    consumer = make_consumer(tmp_path, eager, streams)
    result, made = run_on(consumer, drain_one(consumer, message(7)))
    assert delivered == [7]
    assert result.results == [None] and not result.stopped    # _deliver returns None
    assert consumer.commit_position(message(7).tp) == 7      # in flight until acked
    if eager:
        assert made == []                                     # no task at all
    else:
        assert len(made) == 4                                 # Faust/mode: four per message


@pytest.mark.parametrize("eager", [True, False])
def test_a_delivery_that_must_wait_completes(tmp_path, eager):
    """A full stream buffer: the delivery waits, then goes on and finishes."""
    steps = []

    async def streams(msg):
        steps.append("start")
        await asyncio.sleep(0.01)                   # a timer future: a real suspension
        steps.append("after sleep")
        await asyncio.sleep(0)                      # a bare yield
        steps.append("done")

    consumer = make_consumer(tmp_path, eager, streams)

    async def run():
        return await drain_one(consumer, message(3))
    result, made = run_on(consumer, run())
    assert steps == ["start", "after sleep", "done"]
    assert not result.stopped
    assert len(made) == 4                            # Faust's own path from the first wait


@pytest.mark.parametrize("eager", [True, False])
def test_suspending_the_flow_aborts_a_waiting_delivery(tmp_path, eager):
    """A rebalance suspends the flow while a delivery waits on a full buffer: the drain
    loop goes on and the delivery is cancelled, with eager delivery as with Faust's."""
    seen = []

    async def streams(msg):
        try:
            await asyncio.get_running_loop().create_future()     # never resolved
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    consumer = make_consumer(tmp_path, eager, streams)

    async def run():
        asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
        result, _ = await drain_one(consumer, message(5))
        await asyncio.sleep(0)                       # let the cancellation land
        return result
    result = run_on(consumer, run())
    assert seen == ["cancelled"]
    assert len(result.done) == 1 and result.results == [True]   # the flow wait won


@pytest.mark.parametrize("eager", [True, False])
def test_an_error_in_delivery_reaches_the_drain_loop(tmp_path, eager):
    async def streams(msg):
        raise ValueError("conductor failed")
    consumer = make_consumer(tmp_path, eager, streams)
    with pytest.raises(ValueError, match="conductor failed"):
        run_on(consumer, drain_one(consumer, message(1)))


def test_a_suspended_flow_takes_fausts_path(tmp_path):
    delivered = []

    async def streams(msg):
        delivered.append(msg.offset)

    consumer = make_consumer(tmp_path, True, streams)

    async def run():
        consumer.suspend_flow.set()
        return await drain_one(consumer, message(2))
    _, made = run_on(consumer, run())
    assert len(made) == 4


@pytest.mark.parametrize("eager", [True, False])
def test_a_held_partition_shortens_the_fetch_poll(tmp_path, eager):
    """While a partition's stream buffer is full (held back from fetching), the drain
    loop's fetch of the other partitions polls briefly instead of Faust's fixed second,
    so a drained buffer is fetched for again at once (eager delivery only)."""
    from faust.types import TP
    from straycode.streams.faust_compat import HELD_POLL_S

    consumer = make_consumer(tmp_path, eager, None)
    asked = []

    async def getmany(active_partitions, timeout):     # stands in for the consumer thread
        asked.append(timeout)
        return {}
    consumer._getmany = getmany
    held, other = TP(TOPIC, 0), TP(TOPIC, 1)
    consumer._set_active_tps({held, other})

    run_on(consumer, consumer._wait_next_records(1.0))
    consumer.on_buffer_full(held)                        # what the conductor calls at 80%
    assert consumer._get_active_partitions() == {other}
    run_on(consumer, consumer._wait_next_records(1.0))
    consumer.on_buffer_drop(held)                        # ... and at 40%
    run_on(consumer, consumer._wait_next_records(1.0))
    assert asked == [1.0, HELD_POLL_S if eager else 1.0, 1.0]

"""The worker's consumer commits at-least-once: never past a message still being handled.

The reorder buffer holds a message while later messages of its topic-partition are
acknowledged (earlier in event time, dead letters, re-keyed). Faust's own commit rule
skipped such a held message when nothing had been committed yet, or when it was the only
one held at the committed position; a crash then lost it. These tests drive the real
consumer object of a worker app (no broker needed: nothing here talks to one)."""
from __future__ import annotations

import asyncio
import time

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from straycode.settings import load_settings
from straycode.streams.app import create_app
from streams_helpers import worker_consumer

TOPIC = "straycode.events"


@pytest.fixture
def consumer(tmp_path):
    delivered = []

    async def streams(message):        # stands in for Faust's conductor
        message.incref()
        delivered.append(message)
    consumer = worker_consumer(tmp_path, TOPIC, streams)
    consumer.delivered = delivered
    return consumer


def deliver(consumer, *offsets, partition=0):
    """Hand messages to the consumer's delivery callback, as its fetch loop does."""
    async def run():
        for offset in offsets:
            await consumer.callback(ConsumerMessage(
                TOPIC, partition, offset, time.time(), 0, None, b"k", b"v", b""))
    asyncio.run(run())
    return {m.offset: m for m in consumer.delivered}


def finish(consumer, messages, *offsets):
    for offset in offsets:
        messages[offset].ack(consumer)


def test_first_commit_stops_at_a_held_message(consumer):
    tp = TP(TOPIC, 0)
    msgs = deliver(consumer, 0, 1, 2)
    assert consumer._new_offset(tp) == 0
    finish(consumer, msgs, 1, 2)               # offset 0 is held (e.g. in the reorder buffer)
    assert consumer._new_offset(tp) == 0       # Faust's own rule said 3 here
    finish(consumer, msgs, 0)
    assert consumer._new_offset(tp) == 3


def test_single_held_message_at_the_committed_offset_is_not_skipped(consumer):
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 10        # as after a commit of 10
    msgs = deliver(consumer, 10, 11, 12)
    finish(consumer, msgs, 11, 12)
    assert consumer._new_offset(tp) == 10      # Faust's own rule said 13 here
    assert not consumer._filter_committable_offsets([tp])
    finish(consumer, msgs, 10)
    assert consumer._filter_committable_offsets([tp]) == {tp: 13}


def test_partitions_are_independent_and_forgotten_when_revoked(consumer):
    tp0, tp1 = TP(TOPIC, 0), TP(TOPIC, 1)
    msgs0 = deliver(consumer, 5, 6, partition=0)
    consumer.delivered.clear()
    msgs1 = deliver(consumer, 7, partition=1)
    finish(consumer, msgs0, 6)
    finish(consumer, msgs1, 7)
    assert (consumer._new_offset(tp0), consumer._new_offset(tp1)) == (5, 8)
    consumer._forget([tp0])                    # what revocation and seeks do
    assert consumer._new_offset(tp0) is None   # nothing delivered since: nothing to commit
    assert consumer._new_offset(tp1) == 8


def test_acknowledged_bookkeeping_does_not_grow(consumer):
    tp = TP(TOPIC, 0)
    msgs = deliver(consumer, *range(1000))
    finish(consumer, msgs, *range(1, 1000))
    assert consumer._new_offset(tp) == 0
    finish(consumer, msgs, 0)
    assert consumer._new_offset(tp) == 1000
    assert not consumer._acked[tp] and not consumer._acked_index[tp]
    assert not consumer._in_flight[tp]


# --------------------------------------------------------------------------- faust_compat
def test_unsupported_faust_or_aiokafka_is_refused_with_one_line():
    from straycode.settings import ConfigError
    from straycode.streams.faust_compat import check_versions

    check_versions({"faust-streaming": "0.15.3", "aiokafka": "0.14.0"})
    for installed in ({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"},
                      {"faust-streaming": "0.15.3", "aiokafka": "0.13.1"},
                      {"faust-streaming": "0.15.3"}):
        with pytest.raises(ConfigError) as err:
            check_versions(installed)
        assert "\n" not in str(err.value) and "needs" in str(err.value)


def test_the_fetch_wait_is_per_app_and_aiokafka_is_not_patched(tmp_path):
    import aiokafka

    apps = []
    for wait in (50, None):
        env = {"STRAYCODE__KAFKA__STORE": "memory://"}
        if wait:
            env["STRAYCODE__KAFKA__FETCH_MAX_WAIT_MS"] = str(wait)
        apps.append(create_app(load_settings(env=env), datadir=str(tmp_path / str(wait))))

    async def waits():
        out = []
        for app in apps:
            thread = app.consumer._thread
            out.append(thread._create_worker_consumer(app.transport)._fetch_max_wait_ms)
        return out
    assert asyncio.run(waits()) == [50, 1500]         # 1500: Faust's own, untouched
    assert aiokafka.AIOKafkaConsumer.__module__.startswith("aiokafka")
    assert aiokafka.AIOKafkaConsumer is __import__(
        "faust.transport.drivers.aiokafka", fromlist=["aiokafka"]).aiokafka.AIOKafkaConsumer

"""Feed the dispatcher from the workers' alert topic.

The dispatcher is a singleton next to its sqlite outbox, so it reads every partition by
assignment (no consumer group to rebalance) and keeps its read positions in the outbox
itself. A position is saved only after the alerts before it are in the outbox: a crash
re-reads a few alerts, and submit() is idempotent per webhook-id, so nothing is lost and
nothing is sent twice.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Mapping

from straycode.detector.ocsf import native_from_record
from straycode.hooks.dispatcher import Dispatcher

log = logging.getLogger("straycode.hooks")


def _offset_key(topic: str, partition: int) -> str:
    return f"offset:{topic}:{partition}"


def submit_value(disp: Dispatcher, value: bytes, where: str) -> int:
    """One alert message -> outbox; a bad one becomes a notice, never an exception."""
    try:
        record = json.loads(value)
        if not isinstance(record, dict):
            raise ValueError("message is not a JSON object")
        return disp.submit(native_from_record(record))
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("hooks: bad alert at %s: %s", where, reason)
        disp.outbox.write_notice({"kind": "bad_alert", "where": where, "reason": reason,
                                  "line": value[:2000].decode("utf-8", "replace")})
        return 0


def follow_topic(disp: Dispatcher, kcfg: Mapping, topic: str, stop: threading.Event,
                 idle_timeout: float = 0.0, poll_ms: int = 500,
                 deadline: float | None = None) -> int:
    """Submit every alert on `topic` from the saved positions on; returns how many queued.

    Runs until `stop` is set, until `deadline` (time.monotonic()) passes, or, with
    `idle_timeout`, until no alert arrived and nothing was due for that many seconds.
    """
    def running() -> bool:
        return not stop.is_set() and (deadline is None or time.monotonic() < deadline)

    from kafka import KafkaConsumer, TopicPartition

    from straycode.streams.connection import client_kwargs

    consumer = KafkaConsumer(**client_kwargs(kcfg), group_id=None, enable_auto_commit=False)
    queued = 0
    try:
        parts = None
        wait_until = time.monotonic() + (idle_timeout or float("inf"))
        while not parts and running() and time.monotonic() < wait_until:
            consumer.topics()                      # the workers create the topic on start
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                stop.wait(0.2)
        if not parts:
            log.error("hooks: alert topic %r does not exist", topic)
            return 0
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            saved = disp.outbox.get_meta(_offset_key(topic, tp.partition))
            if saved is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, int(saved))
        last_activity = time.monotonic()
        while running():
            batch = consumer.poll(timeout_ms=poll_ms)
            for tp, records in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for record in records:
                    queued += submit_value(disp, record.value,
                                           f"{topic}/{tp.partition}@{record.offset}")
                disp.outbox.set_meta(_offset_key(topic, tp.partition), str(records[-1].offset + 1))
                last_activity = time.monotonic()
            stats = disp.run_once()
            if stats.get("delivered") or stats.get("retry"):
                last_activity = time.monotonic()
            idle = time.monotonic() - last_activity
            if idle_timeout and idle > idle_timeout and disp.outbox.next_due_at() is None:
                break
    finally:
        consumer.close()
    return queued

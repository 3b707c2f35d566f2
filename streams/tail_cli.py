"""`straycode tail-alerts`: follow the alert topic and print one JSON line per alert."""
from __future__ import annotations

import argparse
import sys
import time

from .connection import command_settings


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", help="default: kafka.topics.alerts")
    p.add_argument("--broker", help="override kafka.broker")
    p.add_argument("--from-beginning", action="store_true", help="print alerts already published")
    p.add_argument("--max", type=int, default=0, help="stop after this many alerts")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="stop after this many seconds without a new alert (0 = follow forever)")


def follow(kcfg: dict, topic: str, *, from_beginning: bool, limit: int = 0,
           idle_timeout: float = 0.0):
    """Yield raw alert values. Reads every partition without joining a consumer group,
    so it never steals partitions from anybody."""
    from kafka import KafkaConsumer, TopicPartition

    from .connection import client_kwargs

    consumer = KafkaConsumer(**client_kwargs(kcfg), group_id=None, enable_auto_commit=False)
    try:
        # the workers create the alert topic when they start: wait for it
        deadline = time.monotonic() + (idle_timeout or float("inf"))
        parts = consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            consumer.topics()            # refreshes metadata
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise SystemExit(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*tps)
        count, last = 0, time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    yield record.value
                    count += 1
                    last = time.monotonic()
                    if limit and count >= limit:
                        return
            if idle_timeout and time.monotonic() - last > idle_timeout:
                return
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    kcfg = command_settings(args)["kafka"]
    topic = args.topic or kcfg["topics"]["alerts"]
    try:
        for value in follow(kcfg, topic, from_beginning=args.from_beginning, limit=args.max,
                            idle_timeout=args.timeout):
            sys.stdout.write(value.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0

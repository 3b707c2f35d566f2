"""`straycode produce EVENTS`: publish a JSONL event file to the input topics.

Only publishes: every line goes out as-is (key = its user_id when one can be read), and
the worker decides what is valid, dead-lettering the rest with a reason."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Iterator

import orjson

from .connection import command_settings

SPLIT = {"login": "logins", "code_issued": "codes", "code_verified": "codes"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", help="JSONL file of contract-v1 events ('-' = stdin)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--topic", help="one topic for everything (default: kafka.topics.events)")
    where.add_argument("--split", action="store_true",
                       help="logins -> kafka.topics.logins, code_issued/code_verified -> "
                            "kafka.topics.codes, everything else -> kafka.topics.events")
    p.add_argument("--broker", help="override kafka.broker (host:port or kafka://host:port)")
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0 = as fast as possible)")
    p.add_argument("--ordered", action="store_true",
                   help="wait for each message to be stored before the next (file order across "
                        "topics, as a real-time producer; slower)")
    p.add_argument("--no-create-topics", action="store_true",
                   help="do not create missing topics with kafka.partitions partitions")


def route(line: bytes, topics: dict, fixed: str | None, split: bool) -> tuple[str, bytes | None]:
    """(topic, key) for one raw line; unreadable lines keep key None and go to the events topic."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    user = obj.get("user_id") if isinstance(obj, dict) else None
    key = user.encode() if isinstance(user, str) and user else None
    if fixed:
        return fixed, key
    if split and isinstance(obj, dict):
        return topics[SPLIT.get(obj.get("type"), "events")], key
    return topics["events"], key


def _lines(path: str) -> Iterator[bytes]:
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    with stream:
        for raw in stream:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line


def publish(kcfg: dict, path: str, *, topic: str | None = None, split: bool = False,
            rate: float = 0.0, create: bool = True, ordered: bool = False) -> dict[str, int]:
    """Publish every line of `path`; returns messages sent per topic.

    `ordered`: wait for each message to be stored before sending the next, so the broker
    holds them in file order across topics, as a real-time producer would. A bulk load of
    split topics otherwise stores whole topics ahead of one another: a code_verified can be
    stored hours or days (in event time) before its login, later than the detector's
    session window tolerates (detector.session_ttl_s), and the watermark cannot wait for
    records not yet stored."""
    from kafka import KafkaProducer

    from .connection import client_kwargs
    from .topics import ensure_topics, input_topic_names

    topics = kcfg["topics"]
    if create:
        ensure_topics(kcfg, [topic] if topic else input_topic_names(kcfg))
    producer = KafkaProducer(**client_kwargs(kcfg), acks="all", linger_ms=0 if ordered else 5,
                             batch_size=int(kcfg["producer_max_batch_size"]),
                             max_request_size=2 * 1024 * 1024)
    sent: dict[str, int] = {}
    start = time.perf_counter()
    try:
        for i, line in enumerate(_lines(path)):
            name, key = route(line, topics, topic, split)
            future = producer.send(name, key=key, value=line)
            if ordered:
                future.get(timeout=30)
            sent[name] = sent.get(name, 0) + 1
            if rate > 0:
                delay = start + (i + 1) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        producer.flush()
    finally:
        producer.close()
    return sent


def run(args: argparse.Namespace) -> int:
    kcfg = command_settings(args)["kafka"]
    if args.events != "-":
        open(args.events, "rb").close()     # a missing input file is reported before connecting
    sent = publish(kcfg, args.events, topic=args.topic, split=args.split, rate=args.rate,
                   create=not args.no_create_topics, ordered=args.ordered)
    for name, n in sorted(sent.items()):
        print(f"{n} messages -> {name}", file=sys.stderr)
    return 0
